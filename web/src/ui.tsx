// Small shared pieces: icons, badges, progress bars, the menu, modal dialogs
// (native <dialog>, so focus and Escape work as the platform does) and toasts.
import type { ButtonHTMLAttributes, ComponentChildren } from 'preact';
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { errorMessage, type State } from './api';
import { Store, useStore } from './store';

const PATHS: Record<string, string> = {
  play: 'M7 5v14l11-7z',
  stop: 'M7 7h10v10H7z',
  terminal: 'M4 6l6 6-6 6M12 19h8',
  download: 'M12 4v11m0 0l-4-4m4 4l4-4M5 20h14',
  upload: 'M12 20V9m0 0l-4 4m4-4l4 4M5 4h14',
  copy: 'M9 9h10v10H9zM5 15V5h10',
  clone: 'M9 9h10v10H9zM5 15V5h10',
  edit: 'M4 20h4L19 9l-4-4L4 16zM13 7l4 4',
  star: 'M12 4l2.5 5 5.5.8-4 3.9.9 5.5-4.9-2.6-4.9 2.6.9-5.5-4-3.9 5.5-.8z',
  trash: 'M5 7h14M10 7V4h4v3M7 7l1 13h8l1-13',
  more: 'M5 12h.01M12 12h.01M19 12h.01',
  plus: 'M12 5v14M5 12h14',
  back: 'M15 5l-7 7 7 7',
  close: 'M6 6l12 12M18 6L6 18',
  settings: 'M4 7h9m4 0h3M4 17h3m4 0h9M15 5v4M9 15v4',
  list: 'M4 6h16M4 12h16M4 18h16',
  paste: 'M9 4h6v3H9zM7 5H5v15h14V5h-2',
  link: 'M10 14a4 4 0 005.7 0l3-3a4 4 0 00-5.7-5.7l-1 1M14 10a4 4 0 00-5.7 0l-3 3a4 4 0 005.7 5.7l1-1',
  refresh: 'M20 11a8 8 0 10-2.3 5.7M20 5v6h-6',
  signal: 'M12 3v9M6.3 7.3a8 8 0 1011.4 0',
  check: 'M5 12l5 5L20 7',
  proxy: 'M4 8h12m0 0l-3-3m3 3l-3 3M20 16H8m0 0l3-3m-3 3l3 3',
  warn: 'M12 4l9 16H3zM12 10v4M12 17h.01',
  vm: 'M4 5h16v11H4zM9 20h6M12 16v4',
  resize: 'M4 20l6-6M4 20v-5M4 20h5M20 4l-6 6M20 4v5M20 4h-5',
  compact: 'M4 4l6 6M10 10V5M10 10H5M20 20l-6-6M14 14v5M14 14h5',
  move: 'M4 7h6l2 2h8v10H4zM10 14h6m0 0l-2-2m2 2l-2 2',
  package: 'M4 7.5l8-4 8 4v9l-8 4-8-4zM4 7.5l8 4 8-4M12 11.5v9',
  folder: 'M3 6h6l2 2h10v11H3z',
  file: 'M6 3h8l4 4v14H6zM14 3v4h4',
  up: 'M12 19V6m0 0l-5 5m5-5l5 5',
};

export function Icon({ name, size = 16 }: { name: keyof typeof PATHS | string; size?: number }) {
  const fill = name === 'play' || name === 'stop';
  return (
    <svg class="icon" width={size} height={size} viewBox="0 0 24 24" aria-hidden="true" focusable="false">
      <path
        d={PATHS[name] ?? ''}
        fill={fill ? 'currentColor' : 'none'}
        stroke={fill ? 'none' : 'currentColor'}
        stroke-width={name === 'more' ? 3.2 : 2}
        stroke-linecap="round"
        stroke-linejoin="round"
      />
    </svg>
  );
}

export function StateBadge({ state }: { state: State | string }) {
  return (
    <span class={`state state-${state.toLowerCase()}`} data-state={state}>
      <span class="state-dot" aria-hidden="true" />
      {state}
    </span>
  );
}

export function VersionBadge({ version }: { version: number }) {
  return (
    <span class={`badge badge-v${version}`} title={version === 2 ? 'Version 2: own kernel in the utility VM' : 'Version 1: shares the host kernel'}>
      v{version}
    </span>
  );
}

export function Progress({ value, max, label, indeterminate }: { value: number; max: number; label: string; indeterminate?: boolean }) {
  const pct = max > 0 ? Math.max(0, Math.min(100, (value / max) * 100)) : 0;
  return (
    <div
      class={`progress${indeterminate ? ' progress-indeterminate' : ''}`}
      role="progressbar"
      aria-label={label}
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={indeterminate ? undefined : Math.round(pct)}
    >
      <div class="progress-bar" style={{ width: indeterminate ? undefined : `${pct}%` }} />
    </div>
  );
}

export function Spinner({ label }: { label?: string }) {
  return <span class="spinner" role={label ? 'status' : undefined} aria-label={label} />;
}

// ---- menu ---------------------------------------------------------------------

let menuSeq = 0;

/** A button that opens a popover menu (light dismiss, Escape, arrow keys). */
export function Menu({ label, children, icon = 'more', text }: { label: string; children: ComponentChildren; icon?: string; text?: string }) {
  const [id] = useState(() => `menu-${++menuSeq}`);
  const btn = useRef<HTMLButtonElement>(null);
  const pop = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const p = pop.current;
    if (!p) return;
    const onToggle = (e: Event) => {
      if ((e as ToggleEvent).newState !== 'open' || !btn.current) return;
      const r = btn.current.getBoundingClientRect();
      const w = p.offsetWidth;
      const h = p.offsetHeight;
      const left = Math.max(8, Math.min(r.right - w, window.innerWidth - w - 8));
      const below = r.bottom + 4 + h <= window.innerHeight - 8;
      p.style.left = `${left}px`;
      p.style.top = `${below ? r.bottom + 4 : Math.max(8, r.top - 4 - h)}px`;
      p.querySelector<HTMLElement>('[role=menuitem]:not([disabled])')?.focus();
    };
    p.addEventListener('toggle', onToggle);
    return () => p.removeEventListener('toggle', onToggle);
  }, []);
  const onKey = (e: KeyboardEvent) => {
    const items = [...(pop.current?.querySelectorAll<HTMLElement>('[role=menuitem]:not([disabled])') ?? [])];
    const i = items.indexOf(document.activeElement as HTMLElement);
    let next = -1;
    if (e.key === 'ArrowDown') next = (i + 1) % items.length;
    else if (e.key === 'ArrowUp') next = (i - 1 + items.length) % items.length;
    else if (e.key === 'Home') next = 0;
    else if (e.key === 'End') next = items.length - 1;
    else return;
    e.preventDefault();
    items[next]?.focus();
  };
  const onClick = (e: MouseEvent) => {
    if ((e.target as HTMLElement).closest('[role=menuitem]')) pop.current?.hidePopover();
  };
  return (
    <>
      <button
        ref={btn}
        type="button"
        class={text ? 'btn' : 'btn btn-icon'}
        popovertarget={id}
        aria-haspopup="menu"
        aria-label={text ? undefined : label}
        title={label}
      >
        <Icon name={icon} />
        {text}
      </button>
      <div ref={pop} id={id} popover="auto" class="menu" role="menu" aria-label={label} onKeyDown={onKey} onClick={onClick}>
        {children}
      </div>
    </>
  );
}

export function MenuItem({ icon, children, danger, ...rest }: { icon?: string; danger?: boolean; children: ComponentChildren } & ButtonHTMLAttributes<HTMLButtonElement>) {
  return (
    <button type="button" role="menuitem" class={`menu-item${danger ? ' danger' : ''}`} {...rest}>
      {icon && <Icon name={icon} />}
      <span>{children}</span>
    </button>
  );
}

export function MenuLink({ icon, children, href, download }: { icon?: string; children: ComponentChildren; href: string; download?: string | boolean }) {
  return (
    <a role="menuitem" class="menu-item" href={href} download={download === true ? '' : download}>
      {icon && <Icon name={icon} />}
      <span>{children}</span>
    </a>
  );
}

// ---- modal dialogs ------------------------------------------------------------

/**
 * A native modal <dialog>: focus moves in, Escape closes, the page behind is inert.
 * It opens when it mounts and closes when it unmounts, never in between: a
 * re-render (every server event re-renders the page behind it) that closed and
 * reopened it would move focus back to its autofocus element — from Cancel to
 * a destructive confirm button, say — under the user's fingers.
 */
export function Modal({ title, onClose, children, wide, labelId }: { title: string; onClose: () => void; children: ComponentChildren; wide?: boolean; labelId?: string }) {
  const ref = useRef<HTMLDialogElement>(null);
  const [id] = useState(() => labelId ?? `dlg-${++menuSeq}`);
  // The latest onClose, for Escape: callers pass a new function every render.
  const closeRef = useRef(onClose);
  closeRef.current = onClose;
  useLayoutEffect(() => {
    const d = ref.current!;
    if (!d.open) d.showModal();
    const onCancel = (e: Event) => {
      e.preventDefault();
      closeRef.current();
    };
    d.addEventListener('cancel', onCancel);
    return () => {
      d.removeEventListener('cancel', onCancel);
      if (d.open) d.close();
    };
  }, []);
  return (
    <dialog ref={ref} class={`modal${wide ? ' modal-wide' : ''}`} aria-labelledby={id}>
      <header class="modal-head">
        <h2 id={id}>{title}</h2>
        <button type="button" class="btn btn-icon btn-ghost" aria-label="Close" onClick={onClose}>
          <Icon name="close" />
        </button>
      </header>
      {children}
    </dialog>
  );
}

export function ErrorBox({ error }: { error: string }) {
  if (!error) return null;
  return (
    <p class="error-box" role="alert">
      {error}
    </p>
  );
}

type Ask =
  | {
      kind: 'confirm';
      title: string;
      message: ComponentChildren;
      confirmLabel: string;
      danger?: boolean;
      action: () => Promise<unknown>;
      resolve: (ok: boolean) => void;
      /** Tells one question from the next (see AskHost). */
      id: number;
    }
  | {
      kind: 'prompt';
      title: string;
      message?: ComponentChildren;
      label: string;
      initial: string;
      confirmLabel: string;
      validate?: (v: string) => string;
      /** What a valid value means (e.g. a size in bytes), shown under the field. */
      hint?: (v: string) => string;
      placeholder?: string;
      action: (v: string) => Promise<unknown>;
      resolve: (ok: boolean) => void;
      id: number;
    };

const asks = new Store<Ask | null>(null);
let askSeq = 0;

type Without<T, K extends keyof any> = T extends any ? Omit<T, K> : never;

function ask(a: Without<Ask, 'resolve' | 'id'>): Promise<boolean> {
  return new Promise((resolve) => asks.set({ ...a, resolve, id: ++askSeq } as Ask));
}

/** Asks, then runs action; an error from action shows in the dialog, which stays open. */
export const confirmAction = (a: Without<Extract<Ask, { kind: 'confirm' }>, 'resolve' | 'kind' | 'id'>) => ask({ kind: 'confirm', ...a });
export const promptAction = (a: Without<Extract<Ask, { kind: 'prompt' }>, 'resolve' | 'kind' | 'id'>) => ask({ kind: 'prompt', ...a });

/**
 * Shows the current question. Each question gets a dialog of its own (keyed by
 * its id) whose state starts from the question at the render that opens it.
 * Seeding one long-lived dialog's state in an effect left a frame in which the
 * input showed the previous question's value, and the effect, running after
 * that frame, overwrote or appended to what had been typed in it.
 */
export function AskHost() {
  const a = useStore(asks);
  return a ? <AskDialog key={a.id} a={a} /> : null;
}

function AskDialog({ a }: { a: Ask }) {
  const [value, setValue] = useState(a.kind === 'prompt' ? a.initial : '');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const [hintId] = useState(() => `ask-hint-${a.id}`);
  const close = (ok: boolean) => {
    asks.set(null);
    a.resolve(ok);
  };
  const problem = a.kind === 'prompt' && a.validate ? a.validate(value) : '';
  const hint = a.kind === 'prompt' ? (problem && value !== a.initial ? problem : !problem && a.hint ? a.hint(value) : '') : '';
  const submit = async (e: Event) => {
    e.preventDefault();
    if (busy) return;
    if (problem) {
      setError(problem);
      return;
    }
    setBusy(true);
    setError('');
    try {
      await (a.kind === 'prompt' ? a.action(value) : a.action());
      close(true);
    } catch (err) {
      setError(errorMessage(err));
      setBusy(false);
    }
  };
  return (
    <Modal title={a.title} onClose={() => close(false)}>
      <form class="modal-body" onSubmit={submit}>
        {a.message && <div class="modal-message">{a.message}</div>}
        {a.kind === 'prompt' && (
          <label class="field">
            <span class="field-label">{a.label}</span>
            <input
              type="text"
              value={value}
              autoFocus
              spellcheck={false}
              autocomplete="off"
              placeholder={a.placeholder}
              aria-invalid={problem && value !== a.initial ? true : undefined}
              aria-describedby={hint ? hintId : undefined}
              onInput={(e) => {
                setValue((e.target as HTMLInputElement).value);
                // What the last try said was about the value before this edit.
                setError('');
              }}
            />
            {hint && (
              <span id={hintId} class={`field-hint${problem ? '' : ' muted'}`}>
                {hint}
              </span>
            )}
          </label>
        )}
        <ErrorBox error={error} />
        <div class="modal-actions">
          <button type="button" class="btn" onClick={() => close(false)}>
            Cancel
          </button>
          <button type="submit" class={`btn ${a.kind === 'confirm' && a.danger ? 'btn-danger' : 'btn-primary'}`} disabled={busy} autoFocus={a.kind === 'confirm'}>
            {busy && <Spinner />}
            {a.confirmLabel}
          </button>
        </div>
      </form>
    </Modal>
  );
}

// ---- toasts -------------------------------------------------------------------

interface Toast {
  id: number;
  kind: 'error' | 'info';
  text: string;
}

const toasts = new Store<Toast[]>([]);
let toastSeq = 0;

export function toast(kind: Toast['kind'], text: string) {
  const t = { id: ++toastSeq, kind, text };
  toasts.update((l) => [...l.slice(-4), t]);
  setTimeout(() => dismiss(t.id), kind === 'error' ? 12_000 : 5_000);
}

function dismiss(id: number) {
  toasts.update((l) => l.filter((t) => t.id !== id));
}

/** Runs f and shows its error, if any, as a toast: for actions without a dialog. */
export async function withToast<T>(f: () => Promise<T>): Promise<T | undefined> {
  try {
    return await f();
  } catch (e) {
    toast('error', errorMessage(e));
    return undefined;
  }
}

export function ToastHost() {
  const list = useStore(toasts);
  return (
    <div class="toasts" aria-live="polite">
      {list.map((t) => (
        <div key={t.id} class={`toast toast-${t.kind}`} role={t.kind === 'error' ? 'alert' : 'status'}>
          <span>{t.text}</span>
          <button type="button" class="btn btn-icon btn-ghost" aria-label="Dismiss" onClick={() => dismiss(t.id)}>
            <Icon name="close" size={14} />
          </button>
        </div>
      ))}
    </div>
  );
}

/**
 * A pending flag for a row of action buttons: run(f) makes a click handler that
 * sets it while f runs, so the buttons disable themselves until the API answers.
 */
export function usePending(): [boolean, (f: () => Promise<unknown>) => () => Promise<void>] {
  const [pending, setPending] = useState(false);
  const run = (f: () => Promise<unknown>) => async () => {
    setPending(true);
    try {
      await f();
    } finally {
      setPending(false);
    }
  };
  return [pending, run];
}
