// Portproxy rules (GET/POST /api/v1/portproxy, DELETE /portproxy/{id}): a host
// address and port that forwards to another address and port, like Windows'
// `netsh interface portproxy`, for TCP and UDP. Refreshed every 2 s while shown.
import { useCallback, useEffect, useState } from 'preact/hooks';
import { api, errorMessage, type NewRule, type Proto, type RuleStatus } from '../api';
import { bytes } from '../format';
import { hostPort, isIP, isWildcard, parseCidrs, portProblem } from '../net';
import { ErrorBox, Icon, Spinner, confirmAction, toast } from '../ui';
import { count } from './PortsPanel';

const POLL_MS = 2000;

export function PortProxyPage() {
  const [rules, setRules] = useState<RuleStatus[] | null>(null);
  const [error, setError] = useState('');

  const load = useCallback(async () => {
    try {
      const r = await api.rules();
      setRules(r ?? []);
      setError('');
    } catch (e) {
      setError(errorMessage(e));
    }
  }, []);

  useEffect(() => {
    let stop = false;
    let timer = 0;
    const tick = async () => {
      if (!document.hidden) await load();
      if (!stop) timer = window.setTimeout(tick, POLL_MS);
    };
    tick();
    const onVis = () => !document.hidden && load();
    document.addEventListener('visibilitychange', onVis);
    return () => {
      stop = true;
      clearTimeout(timer);
      document.removeEventListener('visibilitychange', onVis);
    };
  }, [load]);

  const sorted = [...(rules ?? [])].sort(
    (a, b) => a.listen_port - b.listen_port || a.proto.localeCompare(b.proto) || a.listen_address.localeCompare(b.listen_address),
  );

  return (
    <main class="page" id="main">
      <div class="page-head">
        <div>
          <h1>Port proxy</h1>
          <p class="muted">
            Rules that listen on an address and port of this computer and forward every connection to another address and
            port, as <code>netsh interface portproxy</code> does on Windows — for TCP and UDP.
          </p>
        </div>
      </div>

      <section class="card table-card rules-card" aria-labelledby="rules-h">
        <div class="card-head card-pad">
          <h2 id="rules-h">Rules</h2>
          {rules && <span class="muted small">{count(rules.length, 'rule')}</span>}
        </div>
        {error && (
          <div class="card-pad">
            <ErrorBox error={error} />
          </div>
        )}
        {rules === null ? (
          !error && (
            <p class="card-pad ports-empty">
              <Spinner label="Loading rules" /> Loading…
            </p>
          )
        ) : sorted.length === 0 ? (
          <p class="card-pad ports-empty">No rules yet. Add one below.</p>
        ) : (
          <div class="table-scroll">
            <table class="data rules">
              <thead>
                <tr>
                  <th scope="col">Listens on</th>
                  <th scope="col">Forwards to</th>
                  <th scope="col">Allowed sources</th>
                  <th scope="col">State</th>
                  <th scope="col" class="num">Connections</th>
                  <th scope="col" class="num">Traffic</th>
                  <th scope="col">
                    <span class="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {sorted.map((r) => (
                  <RuleRow key={r.id} r={r} onDeleted={load} />
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>

      <AddRule onAdded={load} />
    </main>
  );
}

const ruleName = (r: Pick<RuleStatus, 'proto' | 'listen_address' | 'listen_port'>) => `${r.proto} ${hostPort(r.listen_address, r.listen_port)}`;

function RuleRow({ r, onDeleted }: { r: RuleStatus; onDeleted: () => Promise<void> }) {
  const allow = r.allow ?? [];
  const del = () =>
    confirmAction({
      title: `Delete the rule for ${ruleName(r)}?`,
      message: (
        <p>
          subsys stops listening on <span class="mono">{hostPort(r.listen_address, r.listen_port)}</span> ({r.proto}) and closes the{' '}
          {count(r.connections, 'connection')} open through it to <span class="mono">{hostPort(r.connect_address, r.connect_port)}</span>.
        </p>
      ),
      confirmLabel: 'Delete',
      danger: true,
      action: async () => {
        await api.deleteRule(r.id);
        await onDeleted();
      },
    });
  return (
    <tr data-rule={r.id} data-listen={`${r.proto}/${r.listen_port}`}>
      <td data-label="Listens on">
        <span class="proto">{r.proto}</span> <span class="mono">{hostPort(r.listen_address, r.listen_port)}</span>
        {isWildcard(r.listen_address) && <span class="muted small block">every address</span>}
      </td>
      <td data-label="Forwards to">
        <span class="mono">{hostPort(r.connect_address, r.connect_port)}</span>
      </td>
      <td data-label="Allowed sources">{allow.length ? <span class="mono small">{allow.join(', ')}</span> : <span class="muted">any</span>}</td>
      <td data-label="State">
        <span class={`pstate pstate-${r.state}`} data-state={r.state}>
          <span class="state-dot" aria-hidden="true" />
          <span>{r.state === 'active' ? 'Active' : r.error || (r.state === 'conflict' ? 'Conflict' : 'Error')}</span>
        </span>
      </td>
      <td data-label="Connections" class="num">
        <span title="Open now">{r.connections.toLocaleString()} open</span>
        <span class="muted small block">
          {r.total.toLocaleString()} total
          {r.refused > 0 && ` · ${r.refused.toLocaleString()} refused`}
          {r.failed > 0 && ` · ${r.failed.toLocaleString()} failed`}
        </span>
      </td>
      <td data-label="Traffic" class="num">
        <span class="small">in {bytes(r.bytes_in)}</span>
        <span class="small block">out {bytes(r.bytes_out)}</span>
      </td>
      <td class="row-actions">
        <button type="button" class="btn btn-sm btn-danger-ghost" onClick={del} aria-label={`Delete rule ${ruleName(r)}`}>
          <Icon name="trash" />
          <span class="btn-text">Delete</span>
        </button>
      </td>
    </tr>
  );
}

interface Form {
  proto: Proto;
  listen_address: string;
  listen_port: string;
  connect_address: string;
  connect_port: string;
  allow: string;
}

const EMPTY: Form = { proto: 'tcp', listen_address: '0.0.0.0', listen_port: '', connect_address: '127.0.0.1', connect_port: '', allow: '' };

function AddRule({ onAdded }: { onAdded: () => Promise<void> }) {
  const [f, setF] = useState<Form>(EMPTY);
  const [tried, setTried] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');

  const allow = parseCidrs(f.allow);
  const problems: Partial<Record<keyof Form, string>> = {};
  if (!isIP(f.listen_address.trim())) problems.listen_address = 'An IP address of this computer: 0.0.0.0 (every IPv4 address), :: or one address.';
  if (portProblem(f.listen_port)) problems.listen_port = portProblem(f.listen_port);
  if (!f.connect_address.trim()) problems.connect_address = 'An address to forward to, such as 127.0.0.1.';
  else if (/\s/.test(f.connect_address.trim())) problems.connect_address = 'An address has no spaces.';
  if (portProblem(f.connect_port)) problems.connect_port = portProblem(f.connect_port);
  if (allow.cidrs === null) problems.allow = allow.problem;
  const bad = Object.keys(problems).length > 0;
  const show = (k: keyof Form) => (tried || (k === 'allow' && f.allow.trim() !== '') ? problems[k] : undefined);

  const set = (k: keyof Form) => (e: Event) => setF({ ...f, [k]: (e.target as HTMLInputElement).value });

  const submit = async (e: Event) => {
    e.preventDefault();
    if (busy) return;
    setTried(true);
    if (bad || allow.cidrs === null) return;
    const rule: NewRule = {
      proto: f.proto,
      listen_address: f.listen_address.trim(),
      listen_port: +f.listen_port,
      connect_address: f.connect_address.trim(),
      connect_port: +f.connect_port,
      allow: allow.cidrs,
    };
    setBusy(true);
    setError('');
    try {
      const r = await api.addRule(rule);
      toast('info', `Added the rule for ${ruleName(r)}.`);
      setF({ ...f, listen_port: '', connect_port: '' });
      setTried(false);
      await onAdded();
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  };

  const loopback = /^127\.|^::1$/.test(f.listen_address.trim());
  const field = (k: keyof Form, label: string, hint: string, props: Record<string, unknown> = {}) => {
    const problem = show(k);
    return (
      <label class={`field field-${k}`}>
        <span class="field-label">{label}</span>
        <input
          type="text"
          name={k}
          value={f[k]}
          onInput={set(k)}
          spellcheck={false}
          autocomplete="off"
          aria-invalid={problem ? true : undefined}
          {...props}
        />
        <span class={problem ? 'field-hint' : 'field-hint muted'}>{problem || hint}</span>
      </label>
    );
  };

  return (
    <section class="card add-rule" aria-labelledby="add-h">
      <h2 id="add-h">Add a rule</h2>
      <form class="rule-form" onSubmit={submit} noValidate>
        <fieldset class="field">
          <legend class="field-label">Protocol</legend>
          <div class="segmented">
            {(['tcp', 'udp'] as const).map((p) => (
              <label key={p}>
                <input type="radio" name="proto" value={p} checked={f.proto === p} onChange={() => setF({ ...f, proto: p })} />
                <span>{p.toUpperCase()}</span>
              </label>
            ))}
          </div>
        </fieldset>
        <div class="rule-grid">
          {field('listen_address', 'Listen address', '0.0.0.0: every IPv4 address of this computer.')}
          {field('listen_port', 'Listen port', '1–65535', { inputMode: 'numeric' })}
          {field('connect_address', 'Connect address', 'Where connections go, e.g. 127.0.0.1.')}
          {field('connect_port', 'Connect port', '1–65535', { inputMode: 'numeric' })}
        </div>
        {field('allow', 'Allowed sources', 'Comma-separated ranges, e.g. 192.168.1.0/24, 10.0.0.0/8. Empty allows any source.', { placeholder: 'any source' })}
        {!loopback && !problems.listen_port && f.listen_port.trim() && (
          <p class="lan-warning small">
            <Icon name="warn" size={14} />
            <span>
              {(allow.cidrs ?? []).length ? `Any computer in ${(allow.cidrs ?? []).join(', ')}` : 'Anyone on your network'} who can reach this
              computer can connect to port {f.listen_port.trim()}.
            </span>
          </p>
        )}
        <ErrorBox error={error} />
        <div class="form-actions">
          <button type="submit" class="btn btn-primary" disabled={busy}>
            {busy ? <Spinner /> : <Icon name="plus" />}
            Add rule
          </button>
        </div>
      </form>
    </section>
  );
}
