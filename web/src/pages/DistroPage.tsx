// One distro: details, CPU and memory over the last ten minutes, its terminal
// sessions, and its ports.
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { api, errorMessage, type Distro, type Metrics, type Operation, type TerminalInfo } from '../api';
import { busy, convertDistro, renameDistro, setDefaultUser, startDistro, terminateDistro } from '../actions';
import { ago, bytes, dateTime, percent } from '../format';
import { distroHref, navigate, onLinkClick, terminalHref } from '../router';
import { distroByName, live, useStore } from '../store';
import { closeTerminal, findTerminal, terminals } from '../terminal';
import { ErrorBox, Icon, Menu, Progress, Spinner, StateBadge, VersionBadge, usePending, withToast } from '../ui';
import { Chart } from './Chart';
import { DistroMenuItems } from './Dashboard';
import { PortsPanel } from './PortsPanel';

export function DistroPage({ name }: { name: string }) {
  const l = useStore(live);
  const d = distroByName(l, name);
  const lastId = useRef('');

  // Renamed (here or in another tab): follow the id to the new name.
  useEffect(() => {
    if (d) lastId.current = d.id;
    else if (lastId.current) {
      const moved = l.distros.get(lastId.current);
      if (moved) navigate(distroHref(moved.name), { replace: true });
    }
  }, [d, l]);

  if (!d) {
    return (
      <main class="page" id="main">
        <Crumbs name={name} />
        {l.loaded ? (
          <div class="card empty">
            <h1>No distro named {name}</h1>
            <p class="muted">It may have been unregistered or renamed.</p>
            <a class="btn" href="/" onClick={onLinkClick}>
              <Icon name="back" />
              All distros
            </a>
          </div>
        ) : (
          <div class="card empty">
            <Spinner label="Loading" /> Loading…
          </div>
        )}
      </main>
    );
  }
  return <DistroView d={d} />;
}

function Crumbs({ name }: { name: string }) {
  return (
    <nav class="crumbs" aria-label="Breadcrumb">
      <a href="/" onClick={onLinkClick}>
        Distros
      </a>
      <span aria-hidden="true">/</span>
      <span aria-current="page">{name}</span>
    </nav>
  );
}

function DistroView({ d }: { d: Distro }) {
  const [pending, run] = usePending();
  const isBusy = busy(d);
  const onRenamed = (r: Distro) => navigate(distroHref(r.name), { replace: true });

  return (
    <main class="page" id="main">
      <Crumbs name={d.name} />
      <div class="page-head">
        <div class="title-row">
          <h1>{d.name}</h1>
          <VersionBadge version={d.version} />
          <StateBadge state={d.state} />
          {d.agent_outdated && <span class="badge badge-warn">agent outdated</span>}
          {d.default && (
            <span class="badge badge-default">
              <Icon name="star" size={12} />
              default
            </span>
          )}
        </div>
        {d.message && (
          <p class="notice" role="status">
            {d.message}
          </p>
        )}
        <div class="page-actions">
          {d.state === 'Running' ? (
            <button type="button" class="btn" disabled={pending} onClick={run(() => terminateDistro(d))}>
              <Icon name="stop" />
              Terminate
            </button>
          ) : (
            <button type="button" class="btn" disabled={pending || isBusy} onClick={run(() => startDistro(d))}>
              {pending ? <Spinner /> : <Icon name="play" />}
              Start
            </button>
          )}
          <a class={`btn btn-primary${isBusy ? ' disabled' : ''}`} href={terminalHref(d.name)} onClick={onLinkClick} aria-disabled={isBusy ? true : undefined}>
            <Icon name="terminal" />
            New terminal
          </a>
          <button type="button" class="btn" disabled={isBusy} onClick={() => convertDistro(d)}>
            <Icon name="vm" />
            Convert to version {d.version === 2 ? 1 : 2}
          </button>
          <Menu label={`More actions for ${d.name}`} text="More">
            <DistroMenuItems d={d} onRenamed={onRenamed} />
          </Menu>
        </div>
        <Conversion d={d} />
      </div>

      <div class="grid">
        <section class="card" aria-labelledby="details-h">
          <h2 id="details-h">Details</h2>
          <dl class="details">
            <dt>State</dt>
            <dd>
              <StateBadge state={d.state} />
            </dd>
            <dt>Version</dt>
            <dd>{d.version === 2 ? '2 — own kernel, in the utility VM' : '1 — shares the host kernel'}</dd>
            <dt>Default user</dt>
            <dd>
              <span class="mono">{d.default_user}</span>{' '}
              <button type="button" class="btn btn-link" onClick={() => setDefaultUser(d)}>
                change
              </button>
            </dd>
            <dt>Disk use</dt>
            <dd>{d.disk_bytes ? bytes(d.disk_bytes) : '—'}</dd>
            <dt>Memory</dt>
            <dd>{d.state === 'Running' ? bytes(d.memory_bytes ?? 0) : '—'}</dd>
            <dt>CPU</dt>
            <dd>{d.state === 'Running' ? percent(d.cpu_percent ?? 0) : '—'}</dd>
            <dt>Location</dt>
            <dd class="mono break">{d.location}</dd>
            <dt>Created</dt>
            <dd title={dateTime(d.created_at)}>{dateTime(d.created_at)}</dd>
            <dt>ID</dt>
            <dd class="mono small break">{d.id}</dd>
          </dl>
          <p class="small">
            <button type="button" class="btn btn-link" disabled={isBusy} onClick={() => renameDistro(d, onRenamed)}>
              Rename…
            </button>
          </p>
        </section>

        <Usage d={d} />
        <Sessions d={d} />

        <PortsPanel d={d} />
      </div>
    </main>
  );
}

/**
 * The distro's latest conversion between versions, from the operation events:
 * a bar while it runs, the server's reason when it failed (the store keeps
 * ended operations for half a minute; the toast says it too).
 */
function Conversion({ d }: { d: Distro }) {
  const l = useStore(live);
  let op: Operation | undefined;
  for (const o of l.operations.values()) {
    if (o.kind === 'set-version' && o.distro === d.name && (!op || (o.created_at ?? '') >= (op.created_at ?? ''))) op = o;
  }
  if (!op || op.status === 'success') return null;
  if (op.status === 'failure') {
    return (
      <div class="convert-progress" data-testid="convert-status">
        <ErrorBox error={`The conversion failed: ${op.error || 'no reason given'}`} />
      </div>
    );
  }
  const { done, total } = op.progress;
  return (
    <div class="convert-progress" data-testid="convert-status">
      <Progress value={done} max={total} label="Conversion progress" indeterminate={total <= 0} />
      <p class="small" role="status">
        <Spinner /> Converting {d.name}
        {total > 0 ? `: ${bytes(done)} of ${bytes(total)}` : '…'}
      </p>
    </div>
  );
}

/** CPU and memory charts; refreshed every sampling interval while shown. */
function Usage({ d }: { d: Distro }) {
  const [m, setM] = useState<Metrics | null>(null);
  const [error, setError] = useState('');
  const name = d.name;
  useEffect(() => {
    let timer = 0;
    let stop = false;
    const load = async () => {
      let interval = 5;
      try {
        if (!document.hidden) {
          const r = await api.metrics(name);
          if (stop) return;
          setM(r);
          setError('');
          interval = r.interval_s || 5;
        }
      } catch (e) {
        if (!stop) setError(errorMessage(e));
        interval = 15;
      }
      if (!stop) timer = window.setTimeout(load, interval * 1000);
    };
    load();
    return () => {
      stop = true;
      clearTimeout(timer);
    };
  }, [name]);
  return (
    <section class="card" aria-labelledby="usage-h">
      <h2 id="usage-h">Usage, last 10 minutes</h2>
      <ErrorBox error={error} />
      <div class="charts">
        <Chart title="CPU" cls="chart-cpu" metrics={m} pick={(s) => s.cpu_percent} format={percent} minMax={5} />
        <Chart title="Memory" cls="chart-mem" metrics={m} pick={(s) => s.memory_bytes} format={bytes} minMax={1 << 20} />
      </div>
      {d.state !== 'Running' && <p class="muted small">{d.name} is stopped; samples resume when it runs.</p>}
    </section>
  );
}

/** The distro's terminal sessions, from the server: attach, kill, or open a new one. */
function Sessions({ d }: { d: Distro }) {
  const [list, setList] = useState<TerminalInfo[] | null>(null);
  const [error, setError] = useState('');
  useStore(terminals); // re-render when this tab's terminals change
  const name = d.name;
  const load = useCallback(async () => {
    try {
      setList(await api.terminals(name));
      setError('');
    } catch (e) {
      setError(errorMessage(e));
    }
  }, [name]);
  useEffect(() => {
    load();
    const t = window.setInterval(() => !document.hidden && load(), 5000);
    const onVis = () => !document.hidden && load();
    document.addEventListener('visibilitychange', onVis);
    return () => {
      clearInterval(t);
      document.removeEventListener('visibilitychange', onVis);
    };
  }, [load, d.state]);

  const kill = (s: TerminalInfo) =>
    withToast(async () => {
      await api.killTerminal(name, s.id);
      const mine = findTerminal(name, s.id);
      if (mine) closeTerminal(mine);
      await load();
    });

  return (
    <section class="card" aria-labelledby="sessions-h">
      <div class="card-head">
        <h2 id="sessions-h">Terminal sessions</h2>
        <a class="btn btn-sm" href={terminalHref(name)} onClick={onLinkClick}>
          <Icon name="plus" />
          New terminal
        </a>
      </div>
      <ErrorBox error={error} />
      {list === null ? (
        !error && <Spinner label="Loading sessions" />
      ) : list.length === 0 ? (
        <p class="muted">
          {d.state === 'Running' ? 'No terminal sessions.' : `None: ${name} is not running. A new terminal starts it.`}
        </p>
      ) : (
        <ul class="sessions">
          {list.map((s) => {
            const mine = findTerminal(name, s.id);
            return (
              <li key={s.id} class="session">
                <div class="session-main">
                  <span class="mono">{(s.argv ?? []).join(' ') || 'login shell'}</span>
                  <span class="muted small">
                    {s.user} · {s.cols}×{s.rows} · started {ago(s.created_at)} ·{' '}
                    {s.exited ? `exited (${s.exit_code})` : s.attached ? (mine ? 'open in this tab' : 'attached') : 'detached'}
                  </span>
                </div>
                <div class="session-actions">
                  {!s.exited && (
                    <a class="btn btn-sm" href={terminalHref(name, s.id)} onClick={onLinkClick} aria-label={`Attach to session ${s.id}`}>
                      <Icon name="link" />
                      Attach
                    </a>
                  )}
                  <button type="button" class="btn btn-sm btn-danger-ghost" onClick={() => kill(s)} aria-label={`Kill session ${s.id}`}>
                    <Icon name="close" />
                    Kill
                  </button>
                </div>
              </li>
            );
          })}
        </ul>
      )}
    </section>
  );
}
