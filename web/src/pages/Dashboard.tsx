// The distro list: state, version, disk and memory at a glance, and every action.
// With none yet, a one-click install of Debian (its progress shown in place),
// the catalog and the import dialog.
import { useEffect, useState } from 'preact/hooks';
import { EXPORT_FORMATS, downloadExport, errorMessage, type CatalogEntry, type Distro, type Operation } from '../api';
import { busy, cloneDistro, compactDisk, makeDefault, moveDistro, renameDistro, resizeDisk, setDefaultUser, startDistro, terminateDistro, unregisterDistro } from '../actions';
import { bytes, percent } from '../format';
import { distroHref, onLinkClick, terminalHref } from '../router';
import { live, sortedDistros, useStore } from '../store';
import { ErrorBox, Icon, Menu, MenuItem, Progress, Spinner, StateBadge, VersionBadge, toast, usePending } from '../ui';
import { catalog, DEFAULT_RELEASE, installs, InstallStatus, loadCatalog, startInstall } from '../install';
import { ImportDialog } from './ImportDialog';

export function Dashboard() {
  const l = useStore(live);
  const quick = useStore(installs).get('quick');
  const [importing, setImporting] = useState<{ file?: File } | null>(null);
  const [dropping, setDropping] = useState(false);
  const distros = sortedDistros(l);

  // Dropping a tarball anywhere on the page opens the import dialog with it.
  useEffect(() => {
    let depth = 0;
    const hasFiles = (e: DragEvent) => [...(e.dataTransfer?.types ?? [])].includes('Files');
    const enter = (e: DragEvent) => {
      if (!hasFiles(e) || document.querySelector('dialog[open]')) return;
      depth++;
      setDropping(true);
    };
    const leave = () => {
      depth = Math.max(0, depth - 1);
      if (depth === 0) setDropping(false);
    };
    const over = (e: DragEvent) => {
      if (hasFiles(e)) e.preventDefault();
    };
    const drop = (e: DragEvent) => {
      if (!hasFiles(e) || document.querySelector('dialog[open]')) return;
      e.preventDefault();
      depth = 0;
      setDropping(false);
      const f = e.dataTransfer?.files[0];
      if (f) setImporting({ file: f });
    };
    window.addEventListener('dragenter', enter);
    window.addEventListener('dragleave', leave);
    window.addEventListener('dragover', over);
    window.addEventListener('drop', drop);
    return () => {
      window.removeEventListener('dragenter', enter);
      window.removeEventListener('dragleave', leave);
      window.removeEventListener('dragover', over);
      window.removeEventListener('drop', drop);
    };
  }, []);

  const running = distros.filter((d) => d.state === 'Running').length;
  return (
    <main class="page" id="main">
      <div class="page-head">
        <div>
          <h1>Distros</h1>
          {l.loaded && (
            <p class="muted">
              {distros.length === 0 ? 'None yet' : `${distros.length} installed, ${running} running`}
            </p>
          )}
        </div>
        <div class="page-actions">
          <a class="btn" href="/install" onClick={onLinkClick}>
            <Icon name="package" />
            Install…
          </a>
          <button type="button" class="btn btn-primary" onClick={() => setImporting({})}>
            <Icon name="upload" />
            Import…
          </button>
        </div>
      </div>

      {/* The one-click install, shown in place, stays while it runs or until dismissed. */}
      {l.loaded && (distros.length === 0 || quick) && <QuickInstall empty={distros.length === 0} onImport={() => setImporting({})} />}

      <Activity ops={[...l.operations.values()].filter((o) => o.id !== quick?.op.id)} />

      {!l.loaded ? (
        <div class="card empty">
          <Spinner label="Loading distros" /> Loading…
        </div>
      ) : distros.length === 0 ? null : (
        <div class="card table-card">
          <table class="distros">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">State</th>
                <th scope="col" class="num">Disk</th>
                <th scope="col" class="num">Memory</th>
                <th scope="col" class="num">CPU</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {distros.map((d) => (
                <DistroRow key={d.id} d={d} />
              ))}
            </tbody>
          </table>
        </div>
      )}

      {dropping && (
        <div class="drop-overlay" aria-hidden="true">
          <div>
            <Icon name="upload" size={40} />
            <p>Drop the tarball to import it</p>
          </div>
        </div>
      )}
      {importing && <ImportDialog initialFile={importing.file} onClose={() => setImporting(null)} />}
    </main>
  );
}

/**
 * With no distros: Debian in one click (debian:bookworm with the server's
 * defaults), or the catalog, or an import. The install's progress shows here,
 * and stays (above the list, once its distro is in it) until dismissed.
 */
function QuickInstall({ empty, onImport }: { empty: boolean; onImport: () => void }) {
  const list = useStore(catalog);
  const tracked = useStore(installs).get('quick');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');

  useEffect(() => {
    if (empty && list === null) loadCatalog().catch(() => {});
  }, [empty]);

  // Without the catalog (not loaded, or failed) the button still tries: the server says what it lacks.
  const entry: CatalogEntry | undefined = list?.find((e) => e.source === DEFAULT_RELEASE);
  const title = entry?.title || 'Debian 12 (bookworm)';
  const unavailable = entry && !entry.available;

  const install = async () => {
    if (busy) return;
    setBusy(true);
    setError('');
    try {
      await startInstall('quick', { source: DEFAULT_RELEASE }, title);
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setBusy(false);
    }
  };

  if (!empty) {
    return (
      <section class="card quick-install" aria-label={title}>
        <InstallStatus origin="quick" />
      </section>
    );
  }
  return (
    <section class="card empty" aria-labelledby="empty-h">
      <div class="empty-art" aria-hidden="true">
        <Icon name="terminal" size={40} />
      </div>
      <h2 id="empty-h">No distros yet</h2>
      {tracked ? (
        <div class="quick-status">
          <InstallStatus origin="quick" />
        </div>
      ) : (
        <>
          <p>
            Install {title}: the server builds it from Debian’s mirror{entry ? `, about ${bytes(entry.approx_bytes)}` : ''}, in a few
            minutes. Then open a terminal in it.
          </p>
          <button
            type="button"
            class="btn btn-primary btn-lg"
            disabled={busy || !!unavailable}
            aria-describedby={unavailable ? 'quick-why' : undefined}
            onClick={install}
          >
            {busy ? <Spinner /> : <Icon name="download" />}
            Install Debian
          </button>
          {unavailable && (
            <p id="quick-why" class="warn-text small">
              {entry.why || 'This server cannot build it.'}
            </p>
          )}
          <ErrorBox error={error} />
        </>
      )}
      <p class="muted empty-more">
        Or{' '}
        <a href="/install" onClick={onLinkClick}>
          choose another release or a tarball URL
        </a>
        , or{' '}
        <button type="button" class="btn-link" onClick={onImport}>
          import a tarball from this computer
        </button>{' '}
        (drop it on this page).
      </p>
      <p class="muted small">
        From the command line: <code>subsys install</code> or <code>subsys import debian debian.tar.zst</code>
      </p>
    </section>
  );
}

function DistroRow({ d }: { d: Distro }) {
  const [pending, run] = usePending();
  const isBusy = busy(d);
  return (
    <tr data-distro={d.name} aria-busy={isBusy || pending ? true : undefined}>
      <td data-label="Name">
        <div class="name-cell">
          <a href={distroHref(d.name)} onClick={onLinkClick} class="distro-name">
            {d.name}
          </a>
          <VersionBadge version={d.version} />
          {d.default && (
            <span class="badge badge-default" title="The default distro: subsys run and shell use it">
              <Icon name="star" size={12} />
              default
            </span>
          )}
        </div>
      </td>
      <td data-label="State">
        <StateBadge state={d.state} />
        {d.agent_outdated && (
          <span class="badge badge-warn" title={d.message}>
            agent outdated
          </span>
        )}
      </td>
      <td data-label="Disk" class="num">
        {d.disk_bytes ? bytes(d.disk_bytes) : '—'}
      </td>
      <td data-label="Memory" class="num">
        {d.state === 'Running' ? bytes(d.memory_bytes ?? 0) : '—'}
      </td>
      <td data-label="CPU" class="num">
        {d.state === 'Running' ? percent(d.cpu_percent ?? 0) : '—'}
      </td>
      <td class="row-actions">
        {d.state === 'Running' ? (
          <button type="button" class="btn btn-sm" disabled={pending} onClick={run(() => terminateDistro(d))} aria-label={`Terminate ${d.name}`}>
            <Icon name="stop" />
            <span class="btn-text">Terminate</span>
          </button>
        ) : (
          <button type="button" class="btn btn-sm" disabled={pending || isBusy} onClick={run(() => startDistro(d))} aria-label={`Start ${d.name}`}>
            {pending ? <Spinner /> : <Icon name="play" />}
            <span class="btn-text">Start</span>
          </button>
        )}
        <a
          class={`btn btn-sm${isBusy ? ' disabled' : ''}`}
          href={terminalHref(d.name)}
          onClick={onLinkClick}
          aria-label={`Open a terminal in ${d.name}`}
          aria-disabled={isBusy ? true : undefined}
        >
          <Icon name="terminal" />
          <span class="btn-text">Terminal</span>
        </a>
        <Menu label={`More actions for ${d.name}`}>
          <DistroMenuItems d={d} />
        </Menu>
      </td>
    </tr>
  );
}

/** Starts the download of an export; a failure shows as a toast. */
function exportDistro(d: Distro, format: string) {
  downloadExport(d.name, format, () =>
    toast('error', `The export of ${d.name} did not start: is it busy, or gone? Try again when its state is Stopped or Running.`),
  ).catch((e) => toast('error', `Export of ${d.name}: ${errorMessage(e)}`));
}

/** The secondary actions, as menu items: in the list's row menu and on the distro page. */
export function DistroMenuItems({ d, onRenamed }: { d: Distro; onRenamed?: (r: Distro) => void }) {
  const isBusy = busy(d);
  return (
    <>
      <div class="menu-label">Export (download)</div>
      {EXPORT_FORMATS.map((f) => (
        <MenuItem key={f} icon="download" disabled={isBusy} onClick={() => exportDistro(d, f)}>
          {d.name}.{f}
        </MenuItem>
      ))}
      {d.version === 2 && (
        // The raw disk image, which another server imports as it is; only
        // of a stopped distro (the server refuses a running one).
        <MenuItem icon="download" disabled={isBusy || d.state !== 'Stopped'} onClick={() => exportDistro(d, 'img')}>
          {d.name}.img (disk image)
        </MenuItem>
      )}
      <hr />
      <MenuItem icon="clone" disabled={isBusy} onClick={() => cloneDistro(d)}>
        Clone…
      </MenuItem>
      <MenuItem icon="edit" disabled={isBusy} onClick={() => renameDistro(d, onRenamed)}>
        Rename…
      </MenuItem>
      <MenuItem icon="star" disabled={d.default} onClick={() => makeDefault(d)}>
        Set as default
      </MenuItem>
      <MenuItem icon="edit" onClick={() => setDefaultUser(d)}>
        Default user…
      </MenuItem>
      <hr />
      <div class="menu-label">Disk</div>
      {d.version === 2 && (
        <>
          <MenuItem icon="resize" disabled={isBusy} onClick={() => resizeDisk(d)}>
            Resize disk…
          </MenuItem>
          <MenuItem icon="compact" disabled={isBusy} onClick={() => compactDisk(d)}>
            Compact disk
          </MenuItem>
        </>
      )}
      <MenuItem icon="move" disabled={isBusy} onClick={() => moveDistro(d)}>
        Move…
      </MenuItem>
      <hr />
      <MenuItem icon="trash" danger disabled={d.state === 'Uninstalling'} onClick={() => unregisterDistro(d)}>
        Unregister…
      </MenuItem>
    </>
  );
}

const KIND: Record<string, string> = {
  import: 'Importing',
  clone: 'Cloning',
  export: 'Exporting',
  unregister: 'Unregistering',
  'set-version': 'Converting',
  resize: 'Resizing the disk of',
  compact: 'Compacting the disk of',
  move: 'Moving',
  install: 'Installing',
};

/** Kinds whose progress counts steps, not bytes. */
export const STEPS = new Set(['resize', 'compact']);

/** Long work in progress (from any tab or the CLI), and what ended a moment ago. */
function Activity({ ops }: { ops: Operation[] }) {
  const shown = ops.filter((o) => o.kind !== 'unregister' || o.status !== 'success');
  if (shown.length === 0) return null;
  return (
    <section class="card activity" aria-label="Activity">
      <ul>
        {shown.map((o) => {
          const pct = o.progress.total > 0 ? o.progress.done / o.progress.total : 0;
          return (
            <li key={o.id} class={`op op-${o.status}`}>
              <span class="op-title">
                {o.status === 'running' ? <Spinner /> : <Icon name={o.status === 'success' ? 'check' : 'close'} size={14} />}
                {KIND[o.kind] ?? o.kind} {o.distro}
              </span>
              {o.status === 'running' ? (
                <>
                  <Progress value={o.progress.done} max={o.progress.total} indeterminate={o.progress.total === 0} label={`${KIND[o.kind] ?? o.kind} ${o.distro}`} />
                  <span class="muted small num">
                    {STEPS.has(o.kind)
                      ? o.progress.total > 0
                        ? `${Math.floor(pct * 100)}%`
                        : ''
                      : o.progress.total > 0
                        ? `${Math.floor(pct * 100)}% · ${bytes(o.progress.done)} of ${bytes(o.progress.total)}`
                        : bytes(o.progress.done)}
                  </span>
                </>
              ) : o.status === 'success' ? (
                <span class="muted small">done</span>
              ) : (
                <span class="error-text small">{o.error || 'failed'}</span>
              )}
            </li>
          );
        })}
      </ul>
    </section>
  );
}
