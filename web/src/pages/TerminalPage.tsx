// The terminal view: the terminals open in this browser tab as tabs, the chosen
// one shown (with WebGL), the others parked without a GL context.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { api } from '../api';
import { distroHref, navigate, onLinkClick, terminalHref } from '../router';
import { distroByName, live, useStore } from '../store';
import { closeTerminal, findTerminal, openTerminal, terminals, type TermSession } from '../terminal';
import { Icon, Spinner, toast, withToast } from '../ui';

/** Terminals this page created for a route without ?session=, by history entry. */
const created = new Map<string, TermSession>();

export function TerminalPage({ name, session }: { name: string; session: string }) {
  const list = useStore(terminals);
  const l = useStore(live);
  const host = useRef<HTMLDivElement>(null);

  // Which terminal this URL means: the one with that session id (reattaching
  // after a reload if we do not have it), or a new one for a URL without one.
  const entry = (history.state as { term?: string } | null)?.term;
  const t = useMemo(() => {
    if (session) return findTerminal(name, session) ?? openTerminal({ distro: name, session });
    const again = entry ? created.get(entry) : undefined;
    if (again && terminals.get().includes(again)) return again;
    const fresh = openTerminal({ distro: name });
    created.set(fresh.key, fresh);
    history.replaceState({ term: fresh.key }, '');
    return fresh;
  }, [name, session]);

  // Show it (and hide it when leaving); connect if it is not yet.
  useEffect(() => {
    if (!host.current) return;
    t.show(host.current);
    if (t.status === 'idle') t.connect();
    return () => t.hide();
  }, [t]);

  // Once the server named the session, put it in the URL so a reload reattaches.
  const [, force] = useState(0);
  useEffect(
    () =>
      t.subscribe(() => {
        force((n) => n + 1);
        if (t.sessionId && t.sessionId !== session && terminals.get().includes(t)) {
          const p = new URLSearchParams(location.search).get('session');
          if (p !== t.sessionId && location.pathname === new URL(terminalHref(t.distro), location.href).pathname) {
            navigate(terminalHref(t.distro, t.sessionId), { replace: true });
          }
        }
      }),
    [t, session],
  );

  const d = distroByName(l, name);
  const closeTab = (x: TermSession) => {
    const rest = terminals.get().filter((y) => y !== x);
    closeTerminal(x);
    if (x === t) {
      const next = rest.find((y) => y.sessionId) ?? null;
      navigate(next ? terminalHref(next.distro, next.sessionId) : distroHref(name), { replace: true });
    }
  };
  const kill = () =>
    withToast(async () => {
      if (t.sessionId && t.status !== 'exited' && t.status !== 'ended') await api.killTerminal(t.distro, t.sessionId);
      toast('info', 'Session ended.');
      closeTab(t);
    });
  const newSession = () => navigate(terminalHref(t.distro));

  return (
    <main class="term-page" id="main">
      <div class="term-bar">
        <a class="btn btn-sm btn-ghost" href={distroHref(name)} onClick={onLinkClick} aria-label={`Back to ${name}`}>
          <Icon name="back" />
          <span class="btn-text">{name}</span>
        </a>
        <div class="term-tabs" role="tablist" aria-label="Open terminals">
          {list.map((x) => (
            <div key={x.key} class={`term-tab${x === t ? ' active' : ''}`} data-status={x.status}>
              <button
                type="button"
                role="tab"
                aria-selected={x === t}
                disabled={!x.sessionId && x !== t}
                title={x.title || `${x.distro} ${x.sessionId}`}
                onClick={() => x !== t && x.sessionId && navigate(terminalHref(x.distro, x.sessionId))}
              >
                <span class={`dot dot-${x.status}`} aria-hidden="true" />
                {x.distro}
                <span class="muted mono small">{x.sessionId ? x.sessionId.slice(0, 6) : '…'}</span>
              </button>
              <button type="button" class="term-tab-close" aria-label={`Close tab ${x.distro} ${x.sessionId.slice(0, 6)}`} title="Close tab (the session keeps running until it times out)" onClick={() => closeTab(x)}>
                <Icon name="close" size={12} />
              </button>
            </div>
          ))}
          <button type="button" class="btn btn-sm btn-ghost" onClick={newSession} aria-label={`New terminal in ${name}`} title="New terminal">
            <Icon name="plus" />
          </button>
        </div>
        <div class="term-tools">
          <button type="button" class="btn btn-sm" onClick={() => t.input('\x03')} title="Send Ctrl-C (interrupt)" aria-label="Send Ctrl-C" disabled={t.status !== 'open'}>
            ^C
          </button>
          <button
            type="button"
            class="btn btn-sm"
            title="Copy the selection (Ctrl-Shift-C)"
            aria-label="Copy"
            onClick={() => {
              if (!t.copy()) toast('info', 'Select text in the terminal first.');
              t.focus();
            }}
          >
            <Icon name="copy" />
            <span class="btn-text">Copy</span>
          </button>
          <button
            type="button"
            class="btn btn-sm"
            title="Paste (Ctrl-Shift-V)"
            aria-label="Paste"
            disabled={t.status !== 'open'}
            onClick={async () => {
              try {
                t.paste(await navigator.clipboard.readText());
              } catch {
                toast('error', 'The browser did not allow reading the clipboard; use Ctrl-Shift-V.');
              }
            }}
          >
            <Icon name="paste" />
            <span class="btn-text">Paste</span>
          </button>
          <button type="button" class="btn btn-sm btn-danger-ghost" onClick={kill} title="End this session (kills its programs)" aria-label="End session">
            <Icon name="trash" />
            <span class="btn-text">End</span>
          </button>
        </div>
      </div>
      <div class="term-stage">
        <div class="term-frame" ref={host} />
        <StatusOverlay t={t} onNew={newSession} onClose={() => closeTab(t)} distroState={d?.state} />
      </div>
      <div class="term-status" aria-live="polite">
        <span class={`dot dot-${t.status}`} aria-hidden="true" />
        <span data-testid="term-status">{statusText(t)}</span>
        <span class="muted small term-meta">
          {t.term.cols}×{t.term.rows} · {t.renderer === 'webgl' ? 'WebGL' : 'DOM renderer'}
        </span>
      </div>
    </main>
  );
}

function statusText(t: TermSession): string {
  switch (t.status) {
    case 'idle':
    case 'connecting':
      return t.sessionId ? 'Reattaching…' : 'Starting a shell…';
    case 'open':
      return t.title ? `Connected — ${t.title}` : 'Connected';
    case 'reconnecting':
      return t.message || 'Reconnecting…';
    case 'exited':
      return `Exited with code ${t.exitCode}`;
    default:
      return t.message || t.status;
  }
}

function StatusOverlay({ t, onNew, onClose, distroState }: { t: TermSession; onNew: () => void; onClose: () => void; distroState?: string }) {
  if (t.status === 'open') return null;
  if (t.status === 'idle' || t.status === 'connecting' || t.status === 'reconnecting') {
    return (
      <div class="term-overlay subtle" role="status">
        <Spinner />
        {statusText(t)}
        {distroState === 'Stopped' && !t.sessionId && <span class="muted small"> (starting the distro)</span>}
      </div>
    );
  }
  return (
    <div class={`term-overlay ${t.status === 'error' ? 'is-error' : ''}`} role={t.status === 'error' ? 'alert' : 'status'}>
      <p class="term-overlay-text">
        {t.status === 'exited' ? (
          <>
            The shell exited with code <strong data-testid="exit-code">{t.exitCode}</strong>.
          </>
        ) : (
          t.message
        )}
      </p>
      <div class="term-overlay-actions">
        {t.status === 'detached' && (
          <button type="button" class="btn btn-primary" onClick={() => t.connect()}>
            Take it back here
          </button>
        )}
        {t.status === 'error' && t.sessionId && (
          <button type="button" class="btn" onClick={() => t.connect()}>
            <Icon name="refresh" />
            Retry
          </button>
        )}
        <button type="button" class={`btn ${t.status === 'detached' ? '' : 'btn-primary'}`} onClick={onNew}>
          <Icon name="plus" />
          New session
        </button>
        <button type="button" class="btn" onClick={onClose}>
          Close tab
        </button>
      </div>
    </div>
  );
}
