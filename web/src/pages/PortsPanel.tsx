// The distro page's Ports panel: every socket a program in the distro listens
// on, with live counters (from the `ports` event), a LAN toggle and the source
// ranges allowed to connect from the LAN; for a version 2 distro also a
// "This computer" toggle (the port's `localhost` setting: forwarded to this
// computer's 127.0.0.1 and ::1 or not).
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, errorMessage, type Distro, type Port } from '../api';
import { bytes } from '../format';
import { formatCidrs, isWildcard, parseCidrs } from '../net';
import { onLinkClick } from '../router';
import { applyPort, isLive, live, loadPorts, ports, useStore } from '../store';
import { ErrorBox, Icon, Spinner, confirmAction } from '../ui';

const portKey = (p: Port) => `${p.proto}/${p.port}`;

export function PortsPanel({ d }: { d: Distro }) {
  const all = useStore(ports);
  const connLive = useStore(live).conn.state === 'live';
  const [error, setError] = useState('');
  const running = d.state === 'Running';
  const list = running ? all.get(d.id) : undefined;

  // Load the list when the panel opens, the distro starts, or the event stream
  // (re)connects; events keep it current after that. Without the stream, or
  // after a failure, look again every 5 s.
  useEffect(() => {
    if (!running) return;
    let stop = false;
    let timer = 0;
    const load = async () => {
      let failed = false;
      try {
        if (!document.hidden) await loadPorts(d);
        if (!stop) setError('');
      } catch (e) {
        failed = true;
        if (!stop) setError(errorMessage(e));
      }
      if (!stop && (failed || !isLive())) timer = window.setTimeout(load, 5000);
    };
    load();
    return () => {
      stop = true;
      clearTimeout(timer);
    };
    // d changes with every distro event; only these matter here.
  }, [d.id, d.name, running, connLive]);

  const sorted = [...(list ?? [])].sort((a, b) => a.port - b.port || a.proto.localeCompare(b.proto) || a.address.localeCompare(b.address));
  const onLan = new Set(sorted.filter((p) => p.lan).map(portKey)).size;

  return (
    // With rows the table needs the page's whole width; a message fits in a grid cell.
    <section class={`card ports-card${running && sorted.length > 0 ? ' wide' : ''}`} aria-labelledby="ports-h">
      <div class="card-head">
        <div>
          <h2 id="ports-h">Ports</h2>
          {running && list && list.length > 0 && (
            <p class="muted small" data-testid="ports-summary">
              {sorted.length} listening{onLan > 0 ? ` · ${onLan} open to the LAN` : ''}
            </p>
          )}
        </div>
        <a class="btn btn-sm" href="/portproxy" onClick={onLinkClick}>
          <Icon name="proxy" />
          Port proxy rules
        </a>
      </div>
      <p class="muted small">
        {d.version === 2
          ? 'Ports are forwarded to this computer’s localhost automatically. Turn off “This computer” for a port to stop forwarding it to this computer’s localhost (127.0.0.1 and ::1). Turn on LAN to let other computers on your network connect.'
          : 'A version 1 distro shares this computer’s network: its ports are this computer’s ports. Turn on LAN to let other computers on your network connect to one that listens on localhost only.'}
      </p>
      <ErrorBox error={error} />
      {!running ? (
        <p class="ports-empty">
          {d.name} must be running to show its ports. LAN settings stay saved and apply again when a program listens on the port.
        </p>
      ) : list === undefined ? (
        !error && (
          <p class="ports-empty">
            <Spinner label="Loading ports" /> Loading…
          </p>
        )
      ) : sorted.length === 0 ? (
        <p class="ports-empty">No program in this distro is listening on a port.</p>
      ) : (
        <div class="table-scroll">
          <table class="data ports">
            <thead>
              <tr>
                <th scope="col">Port</th>
                <th scope="col">Address</th>
                <th scope="col">Process</th>
                <th scope="col">State</th>
                <th scope="col" class="num">Traffic</th>
                {d.version === 2 && <th scope="col">This computer</th>}
                <th scope="col">LAN</th>
                <th scope="col">Allowed from the LAN</th>
              </tr>
            </thead>
            <tbody>
              {sorted.map((p) => (
                <PortRow key={`${p.proto}/${p.address}/${p.port}`} d={d} p={p} />
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function PortRow({ d, p }: { d: Distro; p: Port }) {
  const what = `${p.proto} port ${p.port}`;
  return (
    <tr data-port={portKey(p)} data-address={p.address}>
      <td data-label="Port">
        <span class="proto">{p.proto}</span> <strong class="mono port-num">{p.port}</strong>
      </td>
      <td data-label="Address">
        <span class="mono">{p.address || '*'}</span>
        <span class="muted small block">{addressNote(p.address)}</span>
      </td>
      <td data-label="Process">
        <span class="mono">{p.process || '—'}</span>
        {p.pid > 0 && <span class="muted small block">pid {p.pid}</span>}
      </td>
      <td data-label="State">
        <PortState p={p} v2={d.version === 2} />
      </td>
      <td data-label="Traffic" class="num">
        <span title="Connections open now through subsys">{count(p.connections, 'connection')}</span>
        <span class="muted small block" title="Bytes received from and sent to clients">
          in {bytes(p.bytes_in)} · out {bytes(p.bytes_out)}
        </span>
      </td>
      {d.version === 2 && (
        <td data-label="This computer" class="localhost-cell">
          <LocalhostToggle d={d} p={p} what={what} />
        </td>
      )}
      <td data-label="LAN" class="lan-cell">
        <LanToggle d={d} p={p} what={what} />
      </td>
      <td data-label="Allowed from the LAN" class="allow-cell">
        <AllowField d={d} p={p} what={what} />
      </td>
    </tr>
  );
}

function addressNote(a: string): string {
  if (isWildcard(a)) return 'every address';
  if (a === '127.0.0.1' || a === '::1' || a.startsWith('127.')) return 'loopback';
  return '';
}

export const count = (n: number, what: string) => `${(n ?? 0).toLocaleString()} ${what}${n === 1 ? '' : 's'}`;

/**
 * local = "This computer only", lan = "LAN", conflict and error show the
 * server's text. For a version 2 port (v2) whose localhost forwarding is off,
 * local means nothing forwards it: "Not forwarded".
 */
export function PortState({ p, v2 = false }: { p: Pick<Port, 'state' | 'error'> & Partial<Pick<Port, 'localhost'>>; v2?: boolean }) {
  const unforwarded = v2 && p.localhost === false && p.state === 'local';
  const text =
    p.state === 'local'
      ? unforwarded
        ? 'Not forwarded'
        : 'This computer only'
      : p.state === 'lan'
        ? 'LAN'
        : p.state === 'closed'
          ? 'Not listening'
          : p.error || (p.state === 'conflict' ? 'Conflict' : 'Error');
  return (
    <span class={`pstate pstate-${unforwarded ? 'closed' : p.state}`} data-state={p.state}>
      <span class="state-dot" aria-hidden="true" />
      <span>{text}</span>
    </span>
  );
}

/** The plain warning while a port is open to the LAN (or about to be). */
function lanWarning(p: Port, allow: string[] = p.allow ?? []): string {
  const who = allow.length === 0 ? 'Anyone on your network' : `Any computer in ${allow.join(', ')}`;
  const where = p.lan_address ? ` at ${p.lan_address}` : '';
  return `${who} who can reach this computer${where} can connect to port ${p.port}.`;
}

function LanToggle({ d, p, what }: { d: Distro; p: Port; what: string }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const put = async (lan: boolean) => {
    const r = await api.putPort(d.name, p.proto, p.port, { lan });
    applyPort(d.id, r);
  };
  const toggle = async () => {
    if (busy) return;
    setError('');
    if (!p.lan) {
      // Turning on asks first, with the warning; an error shows in the dialog.
      await confirmAction({
        title: `Open port ${p.port} to your network?`,
        message: (
          <>
            <p>
              <strong>{lanWarning(p)}</strong>
            </p>
            <p>
              It is served by <span class="mono">{p.process || 'an unknown program'}</span> in {d.name} ({p.proto}).{' '}
              {(p.allow ?? []).length === 0 && 'To let only some computers in, fill in “Allowed from the LAN” first.'}
            </p>
          </>
        ),
        confirmLabel: 'Open to the LAN',
        danger: true,
        action: () => put(true),
      });
      return;
    }
    setBusy(true);
    try {
      await put(false);
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="lan">
      <label class="switch-label">
        <input type="checkbox" role="switch" class="switch" checked={p.lan} disabled={busy} aria-label={`LAN access for ${what}`} onClick={(e) => {
          // The box follows the server's answer, not the click.
          e.preventDefault();
          toggle();
        }} />
        <span aria-hidden="true">{p.lan ? 'On' : 'Off'}</span>
        {busy && <Spinner />}
      </label>
      {p.lan && (
        <p class="lan-warning small" data-testid="lan-warning">
          <Icon name="warn" size={14} />
          <span>{lanWarning(p)}</span>
        </p>
      )}
      {error && (
        <p class="field-hint" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}

/**
 * Version 2: whether the port is forwarded to this computer's localhost
 * (127.0.0.1 and ::1). Neither direction asks: off exposes less, and on is
 * the default every new port gets.
 */
function LocalhostToggle({ d, p, what }: { d: Distro; p: Port; what: string }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  // What a screen reader hears after a change (the switch itself says on/off).
  const [note, setNote] = useState('');
  const box = useRef<HTMLInputElement>(null);
  const toggle = async () => {
    if (busy) return;
    const want = !p.localhost;
    // Disabling the focused switch drops the keyboard focus: give it back after.
    const hadFocus = document.activeElement === box.current;
    setError('');
    setNote('');
    setBusy(true);
    try {
      const r = await api.putPort(d.name, p.proto, p.port, { localhost: want });
      applyPort(d.id, r);
      setNote(
        want
          ? `Port ${p.port} is forwarded to this computer’s localhost.`
          : `Port ${p.port} is no longer forwarded to this computer’s localhost.`,
      );
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setBusy(false);
      if (hadFocus)
        requestAnimationFrame(() => {
          const at = document.activeElement;
          if (!at || at === document.body) box.current?.focus();
        });
    }
  };
  return (
    <div class="lan">
      <label class="switch-label">
        <input
          ref={box}
          type="checkbox"
          role="switch"
          class="switch"
          checked={p.localhost}
          disabled={busy}
          aria-label={`Forward ${what} to this computer`}
          aria-describedby={error ? `localhost-err-${p.proto}-${p.port}-${p.address}` : undefined}
          onClick={(e) => {
            // The box follows the server's answer, not the click.
            e.preventDefault();
            toggle();
          }}
        />
        <span aria-hidden="true">{p.localhost ? 'On' : 'Off'}</span>
        {busy && <Spinner />}
      </label>
      <span class="sr-only" aria-live="polite" data-testid="localhost-note">
        {note}
      </span>
      {error && (
        <p class="field-hint" role="alert" id={`localhost-err-${p.proto}-${p.port}-${p.address}`}>
          {error}
        </p>
      )}
    </div>
  );
}

function AllowField({ d, p, what }: { d: Distro; p: Port; what: string }) {
  const saved = formatCidrs(p.allow);
  /** What the user typed; null shows the saved value (which events keep current). */
  const [draft, setDraftState] = useState<string | null>(null);
  // The latest draft, for a save that finishes after more typing: it must
  // not throw away what was typed while it ran.
  const draftRef = useRef<string | null>(null);
  const setDraft = (v: string | null) => {
    draftRef.current = v;
    setDraftState(v);
  };
  const [error, setError] = useState('');
  const [note, setNote] = useState('');
  const [busy, setBusy] = useState(false);
  const inflight = useRef(false);
  // A save asked for while one runs: it runs after, with the draft of then.
  const again = useRef(false);
  const value = draft ?? saved;
  const parsed = parseCidrs(value);

  useEffect(() => {
    if (!note) return;
    const t = setTimeout(() => setNote(''), 3000);
    return () => clearTimeout(t);
  }, [note]);

  const save = async () => {
    if (inflight.current) {
      again.current = true;
      return;
    }
    const text = draftRef.current;
    if (text === null) return;
    const want = parseCidrs(text);
    if (want.cidrs === null) {
      setError(want.problem);
      return;
    }
    if (want.cidrs.join(', ') === saved) {
      setDraft(null);
      return;
    }
    inflight.current = true;
    setBusy(true);
    setError('');
    // "Saved." speaks of the latest save only: an older one's note goes now.
    setNote('');
    try {
      const r = await api.putPort(d.name, p.proto, p.port, { allow: want.cidrs });
      applyPort(d.id, r);
      if (draftRef.current === text) setDraft(null);
      setNote(want.cidrs.length ? 'Saved.' : 'Saved: any source.');
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      inflight.current = false;
      setBusy(false);
      if (again.current) {
        again.current = false;
        save();
      }
    }
  };

  const hintId = `allow-hint-${p.proto}-${p.port}-${p.address}`;
  const problem = error || (draft !== null && parsed.cidrs === null ? parsed.problem : '');
  return (
    <form
      class="allow"
      onSubmit={(e) => {
        e.preventDefault();
        save();
      }}
    >
      <div class="allow-row">
        <input
          type="text"
          value={value}
          placeholder="any source"
          spellcheck={false}
          autocomplete="off"
          aria-label={`Allowed sources for ${what}`}
          aria-describedby={hintId}
          aria-invalid={problem ? true : undefined}
          onInput={(e) => {
            setDraft((e.target as HTMLInputElement).value);
            setError('');
          }}
          // Leaving the field saves (a click on Save that follows finds it saving).
          onBlur={() => save()}
          onKeyDown={(e) => {
            if (e.key === 'Escape' && draft !== null) {
              e.preventDefault();
              setDraft(null);
              setError('');
            }
          }}
        />
        {/* Never disabled: a focused button that disables itself drops the keyboard focus. */}
        <button type="submit" class="btn btn-sm" aria-busy={busy ? true : undefined} aria-label={`Save allowed sources for ${what}`}>
          {busy ? <Spinner /> : 'Save'}
        </button>
      </div>
      <span id={hintId} class={problem ? 'field-hint' : note ? 'field-hint muted' : 'sr-only'} role={problem ? 'alert' : undefined}>
        {problem || note || 'Comma-separated address ranges, for example 192.168.1.0/24. Empty allows any source.'}
      </span>
    </form>
  );
}
