// One distro: a link to its files, details, its disk (size, allocation, free space; resize, compact,
// move), its snapshots, CPU and memory over the last ten minutes, its terminal sessions, and
// its ports.
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { api, errorMessage, type Distro, type Metrics, type Operation, type TerminalInfo } from '../api';
import { busy, compactDisk, compactedText, convertDistro, moveDistro, renameDistro, resizeDisk, setDefaultUser, setSystemd, startDistro, terminateDistro } from '../actions';
import { ago, bytes, dateTime, percent } from '../format';
import { distroHref, filesHref, navigate, onLinkClick, terminalHref } from '../router';
import { distroByName, live, useStore, type Live } from '../store';
import { closeTerminal, findTerminal, terminals } from '../terminal';
import { ErrorBox, Icon, Menu, Progress, Spinner, StateBadge, VersionBadge, usePending, withToast } from '../ui';
import { Chart } from './Chart';
import { DistroMenuItems } from './Dashboard';
import { PortsPanel } from './PortsPanel';
import { LimitsPanel } from './LimitsPanel';
import { SnapshotsPanel } from './SnapshotsPanel';

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
          <a class={`btn${isBusy ? ' disabled' : ''}`} href={filesHref(d.name)} onClick={onLinkClick} aria-disabled={isBusy ? true : undefined}>
            <Icon name="folder" />
            Files
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
            <dt>systemd</dt>
            <dd>
              <span data-testid="systemd-state">{d.systemd ? 'PID 1 at boot' : 'off'}</span>{' '}
              <button type="button" class="btn btn-link" onClick={() => setSystemd(d, !d.systemd)}>
                {d.systemd ? 'turn off' : 'turn on'}
              </button>
            </dd>
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

        <Disk d={d} />
        <SnapshotsPanel d={d} />
        <Usage d={d} />
        <LimitsPanel d={d} />
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
  const op = latestOperation(l, d.name, ['set-version']);
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

/** The newest operation of one of kinds on the distro named name, if the store has one. */
function latestOperation(l: Live, name: string, kinds: string[]): Operation | undefined {
  let op: Operation | undefined;
  for (const o of l.operations.values()) {
    if (kinds.includes(o.kind) && o.distro === name && (!op || (o.created_at ?? '') >= (op.created_at ?? ''))) op = o;
  }
  return op;
}

const DISK_KINDS = ['resize', 'compact', 'move'];

/**
 * The distro's disk: for version 2 its size, what its image takes on the host
 * and the free space inside, with a bar of allocated against size; for
 * version 1 the host space its files use. Resize and compact (version 2) and
 * move, with the latest of those operations followed below them.
 */
function Disk({ d }: { d: Distro }) {
  const l = useStore(live);
  const op = latestOperation(l, d.name, DISK_KINDS);
  const working = op?.status === 'running';
  const off = busy(d) || working;
  const v2 = d.version === 2;
  const size = d.disk_max_bytes ?? 0;
  const alloc = d.disk_bytes ?? 0;
  const free = d.disk_free_bytes;
  const pct = size > 0 ? Math.max(0, Math.min(100, (alloc / size) * 100)) : 0;
  return (
    <section class="card" aria-labelledby="disk-h" data-testid="disk">
      <h2 id="disk-h">Disk</h2>
      {v2 ? (
        <>
          <dl class="disk-figures">
            <dt>Size</dt>
            <dd data-testid="disk-size">{size > 0 ? bytes(size) : '—'}</dd>
            <dt>Allocated on host</dt>
            <dd data-testid="disk-allocated">{alloc > 0 ? bytes(alloc) : '—'}</dd>
            <dt>Free inside</dt>
            <dd data-testid="disk-free">{free !== undefined && free !== null && free > 0 ? bytes(free) : '—'}</dd>
          </dl>
          {size > 0 && (
            <div class="disk-meter">
              <div
                class="disk-bar"
                role="meter"
                aria-label="Allocated on host, of the disk size"
                aria-valuemin={0}
                aria-valuemax={100}
                aria-valuenow={Math.round(pct)}
                aria-valuetext={`${bytes(alloc)} of ${bytes(size)}`}
              >
                <div class="disk-bar-fill" style={{ width: `${pct}%` }} />
              </div>
              <p class="muted small">
                {bytes(alloc)} of {bytes(size)} allocated on the host ({percent(pct)}). The image is sparse: it grows as files fill it, up to its size.
              </p>
            </div>
          )}
        </>
      ) : (
        <>
          <dl class="disk-figures">
            <dt>Host space used</dt>
            <dd data-testid="disk-used">{alloc > 0 ? bytes(alloc) : '—'}</dd>
          </dl>
          <p class="muted small">Version 1 keeps its files in a directory on the host: it has no disk size of its own and uses the host's free space.</p>
        </>
      )}
      <dl class="disk-figures">
        <dt>Location</dt>
        <dd class="mono break" data-testid="disk-location">
          {d.location}
        </dd>
      </dl>
      <div class="disk-actions">
        {v2 && (
          <>
            <button type="button" class="btn btn-sm" disabled={off} aria-label="Resize disk" onClick={() => resizeDisk(d)}>
              <Icon name="resize" />
              Resize…
            </button>
            <button type="button" class="btn btn-sm" disabled={off} aria-label="Compact disk" onClick={() => compactDisk(d)}>
              <Icon name="compact" />
              Compact
            </button>
          </>
        )}
        <button type="button" class="btn btn-sm" disabled={off} aria-label="Move distro" onClick={() => moveDistro(d)}>
          <Icon name="move" />
          Move…
        </button>
      </div>
      {op && <DiskOperation d={d} op={op} />}
    </section>
  );
}

const DISK_WORDS: Record<string, { running: string; failed: string }> = {
  resize: { running: 'Resizing the disk', failed: 'Resizing the disk failed' },
  compact: { running: 'Compacting the disk', failed: 'Compacting the disk failed' },
  move: { running: 'Moving the files', failed: 'The move failed' },
};

/**
 * A resize, compact or move of the distro, from the operation events: a bar
 * while it runs, what it did or the server's reason (as text) when it ended;
 * the store keeps ended operations for half a minute.
 */
function DiskOperation({ d, op }: { d: Distro; op: Operation }) {
  const words = DISK_WORDS[op.kind] ?? { running: op.kind, failed: `${op.kind} failed` };
  if (op.status === 'failure') {
    return (
      <div class="disk-progress" data-testid="disk-status" data-kind={op.kind} data-status={op.status}>
        <ErrorBox error={`${words.failed}: ${op.error || 'no reason given'}`} />
      </div>
    );
  }
  if (op.status === 'success') {
    const text =
      op.kind === 'compact'
        ? compactedText(d.name, op)
        : op.kind === 'resize'
          ? `Resized the disk${d.disk_max_bytes ? ` to ${bytes(d.disk_max_bytes)}` : ''}.`
          : `Moved to ${d.location}.`;
    return (
      <div class="disk-progress" data-testid="disk-status" data-kind={op.kind} data-status={op.status}>
        <p class="small ok-text" role="status">
          <Icon name="check" size={14} /> {text}
        </p>
      </div>
    );
  }
  const { done, total } = op.progress;
  const steps = op.kind !== 'move';
  return (
    <div class="disk-progress" data-testid="disk-status" data-kind={op.kind} data-status={op.status}>
      <Progress value={done} max={total} label={`${words.running} of ${d.name}`} indeterminate={total <= 0} />
      <p class="small" role="status">
        <Spinner /> {words.running}
        {total > 0 ? (steps ? `: ${Math.floor((done / total) * 100)}%` : `: ${bytes(done)} of ${bytes(total)}`) : '…'}
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
