// The utility VM that runs version 2 distros (GET /api/v1/vm): its state,
// accelerator, uptime, memory, CPUs, kernel and distros, and its serial
// console (GET /api/v1/vm/console). The console is the guest's bytes: it is
// shown through consoleText, as the text content of a <pre>, so markup stays
// text and escape sequences show as escapes.
import { useCallback, useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { api, errorMessage, type VMStatus } from '../api';
import { bytes, consoleText, dateTime, duration, uptime } from '../format';
import { distroHref, onLinkClick } from '../router';
import { live, useStore } from '../store';
import { ErrorBox, Icon, Spinner, StateBadge, toast } from '../ui';
import { Chart } from './Chart';

/** How often the status is asked for while the page is shown. */
const REFRESH_MS = 5000;

export function VMPage() {
  return (
    <main class="page" id="main">
      <div class="page-head">
        <div class="title-row">
          <h1>Utility VM</h1>
        </div>
      </div>
      <div class="grid">
        <VMPanel />
        <ConsolePanel />
      </div>
    </main>
  );
}

function VMPanel() {
  const [vm, setVM] = useState<VMStatus | null>(null);
  const [error, setError] = useState('');
  const [loading, setLoading] = useState(false);
  const [now, setNow] = useState(Date.now());
  const l = useStore(live);

  const load = useCallback(async () => {
    setLoading(true);
    try {
      setVM(await api.vm());
      setError('');
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setLoading(false);
      setNow(Date.now());
    }
  }, []);
  useEffect(() => {
    load();
    const t = window.setInterval(() => !document.hidden && load(), REFRESH_MS);
    return () => clearInterval(t);
  }, [load]);

  const names = (vm?.distros ?? []).map((id) => l.distros.get(id)?.name ?? id);
  return (
    <section class="card" aria-labelledby="vm-h" data-testid="vm-panel">
      <div class="card-head">
        <h2 id="vm-h">Status</h2>
        <button type="button" class="btn btn-sm" onClick={load} disabled={loading} aria-label="Refresh the VM's status">
          {loading ? <Spinner /> : <Icon name="refresh" />}
          Refresh
        </button>
      </div>
      <ErrorBox error={error} />
      {!vm ? (
        !error && <Spinner label="Loading the VM's status" />
      ) : !vm.available ? (
        <p class="muted" data-testid="vm-unavailable">
          Version 2 is not available on this server: it has no utility VM. Version 1 distros are not affected.
        </p>
      ) : (
        <>
          <dl class="details">
            <dt>State</dt>
            <dd>
              <StateBadge state={vm.state} />
            </dd>
            <dt>Acceleration</dt>
            <dd>
              {vm.accel ? (vm.accel === 'kvm' ? 'KVM (hardware)' : vm.accel === 'tcg' ? 'TCG (emulated, slow)' : vm.accel) : '—'}
              {vm.accel_note && <span class="muted small block">{vm.accel_note}</span>}
            </dd>
            <dt>Uptime</dt>
            <dd title={vm.started_at ? `since ${dateTime(vm.started_at)}` : undefined}>
              {vm.state === 'Running' && vm.started_at ? uptime(vm.started_at, now) : '—'}
            </dd>
            <dt>Memory</dt>
            <dd>
              {vm.memory_mib} MiB at most
              {vm.state === 'Running' && vm.memory?.total_bytes ? <span class="muted"> · the guest has {bytes(vm.memory.total_bytes)} now</span> : null}
              {vm.rss_bytes ? <span class="muted"> · QEMU uses {bytes(vm.rss_bytes)} on the host</span> : null}
            </dd>
            <dt>CPUs</dt>
            <dd>{vm.cpus}</dd>
            <dt>Kernel</dt>
            <dd class="break">
              {vm.kernel ? <span class="mono">{vm.kernel}</span> : '—'}
              {vm.kernel_release && <span class="muted"> ({vm.kernel_release})</span>}
            </dd>
            <dt>Addresses</dt>
            <dd class="mono">{vm.addresses && vm.addresses.length > 0 ? vm.addresses.join(', ') : '—'}</dd>
            <dt>Network</dt>
            <dd>{vm.network || '—'}</dd>
            <dt>Host files (/mnt/host)</dt>
            <dd class="break">
              {vm.host_files || '—'}
              {vm.host_files_note && <div class="muted">{vm.host_files_note}</div>}
            </dd>
            <dt>Version 2 distros running</dt>
            <dd>
              {names.length === 0
                ? 'none'
                : names.map((n, i) => (
                    <span key={n}>
                      {i > 0 && ', '}
                      <a href={distroHref(n)} onClick={onLinkClick}>
                        {n}
                      </a>
                    </span>
                  ))}
            </dd>
            <dt>Idle timeout</dt>
            <dd>{vm.idle_timeout_s < 0 ? 'none: it stays up' : `stops after ${duration(vm.idle_timeout_s)} with no version 2 distro running`}</dd>
            {vm.pid ? (
              <>
                <dt>QEMU pid</dt>
                <dd class="mono">{vm.pid}</dd>
              </>
            ) : null}
          </dl>
          {vm.error && (
            <p class="error-box" role="alert" data-testid="vm-error">
              {vm.error}
            </p>
          )}
          {vm.state === 'Running' && <MemoryPart vm={vm} onReclaimed={load} />}
        </>
      )}
    </section>
  );
}

/**
 * The running VM's memory: the guest's figures, QEMU's resident memory on the
 * host and the guest's page cache over time, and a button that gives the
 * cache back now (POST /vm/reclaim).
 */
function MemoryPart({ vm, onReclaimed }: { vm: VMStatus; onReclaimed: () => void }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const series = { interval_s: 10, samples: vm.memory_history ?? [] };
  const m = vm.memory;
  const reclaim = async () => {
    setBusy(true);
    setError('');
    try {
      const r = await api.reclaimVM();
      toast('info', `The VM dropped ${bytes(r.dropped_bytes)} of page cache; QEMU's memory on the host falls over the next seconds.`);
      onReclaimed();
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="vm-memory" data-testid="vm-memory">
      <div class="card-head">
        <h3>Memory</h3>
        <button type="button" class="btn btn-sm" onClick={reclaim} disabled={busy}>
          {busy ? <Spinner /> : null}
          Reclaim now
        </button>
      </div>
      <ErrorBox error={error} />
      {m && (
        <p class="muted small">
          The guest uses {bytes(m.used_bytes)} and caches {bytes(m.cached_bytes)} of {bytes(m.total_bytes)}; reclaim (
          {vm.memory_reclaim || '—'}) has given back {bytes(m.reclaimed_bytes)} since it booted. Memory the guest frees goes back to the host.
        </p>
      )}
      <div class="charts">
        <Chart title="QEMU on the host" cls="chart-mem" metrics={series} pick={(s) => s.rss_bytes} format={bytes} minMax={64 << 20} />
        <Chart title="Guest page cache" cls="chart-cpu" metrics={series} pick={(s) => s.cached_bytes} format={bytes} minMax={16 << 20} />
      </div>
    </div>
  );
}

function ConsolePanel() {
  const [text, setText] = useState<string | null>(null);
  const [error, setError] = useState('');
  const [loading, setLoading] = useState(false);
  const pre = useRef<HTMLPreElement>(null);

  const load = useCallback(async () => {
    setLoading(true);
    try {
      setText(consoleText(await api.vmConsole()));
      setError('');
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setLoading(false);
    }
  }, []);
  useEffect(() => {
    load();
  }, [load]);
  // The newest lines are what matter: start at the bottom.
  useLayoutEffect(() => {
    if (pre.current) pre.current.scrollTop = pre.current.scrollHeight;
  }, [text]);

  return (
    <section class="card span-all" aria-labelledby="console-h">
      <div class="card-head">
        <h2 id="console-h">Serial console</h2>
        <button type="button" class="btn btn-sm" onClick={load} disabled={loading} aria-label="Refresh the console">
          {loading ? <Spinner /> : <Icon name="refresh" />}
          Refresh
        </button>
      </div>
      <ErrorBox error={error} />
      {text === null ? (
        !error && <Spinner label="Loading the console" />
      ) : text === '' ? (
        <p class="muted">The console is empty: the VM has not run since the server started.</p>
      ) : (
        <pre ref={pre} class="console" data-testid="vm-console" tabIndex={0} aria-label="The VM's serial console">
          {text}
        </pre>
      )}
      <p class="muted small">What the guest's kernel and init printed (the last 1 MiB); control characters are shown as escapes.</p>
    </section>
  );
}
