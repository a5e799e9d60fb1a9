// The catalog (/install): a card per release the server knows (GET /catalog)
// and per image it suggests, each with an Install button that asks for the
// options (name, version, extra packages for a release) in a dialog, or says
// why this server cannot build it; and a form that installs a root file system
// tarball from a URL (https://, or http:// pinned by its SHA-256) or any OCI
// image reference. How each install goes shows where it was started:
// on its card, under the form (InstallStatus). Import of a file from this
// computer is one button away.
import { useEffect, useState } from 'preact/hooks';
import { errorMessage, nameProblem, type CatalogEntry, type InstallRequest } from '../api';
import { bytes } from '../format';
import {
  catalog,
  installs,
  InstallStatus,
  loadCatalog,
  isTarballSource,
  nameFromSource,
  normalizeSha256,
  parsePackages,
  sha256Problem,
  sourceProblem,
  startInstall,
} from '../install';
import { live, settings, useStore, type Live } from '../store';
import { ErrorBox, Icon, Modal, Spinner } from '../ui';
import { ImportDialog } from './ImportDialog';

const taken = (l: Live, name: string) => !!name && [...l.distros.values()].some((d) => d.name === name);

export function InstallPage() {
  const list = useStore(catalog);
  const [error, setError] = useState('');
  const [chosen, setChosen] = useState<CatalogEntry | null>(null);
  const [importing, setImporting] = useState(false);

  useEffect(() => {
    loadCatalog().then(
      () => setError(''),
      (e) => setError(errorMessage(e)),
    );
  }, []);

  return (
    <main class="page" id="main">
      <div class="page-head">
        <div>
          <h1>Install a distro</h1>
          <p class="muted">
            A release built on this server from its distribution’s own mirror, an OCI image the server pulls, or a root file system tarball
            the server downloads.
          </p>
        </div>
        <div class="page-actions">
          <button type="button" class="btn" onClick={() => setImporting(true)}>
            <Icon name="upload" />
            Import a file…
          </button>
        </div>
      </div>

      <section class="install-section" aria-labelledby="releases-h">
        <h2 id="releases-h">Releases</h2>
        <p class="muted small">
          Built with <code>mmdebstrap</code> (minbase: a shell, apt and little else), which takes a few minutes; an image is pulled from its
          registry and its layers unpacked. From the command line: <code>subsys install debian:bookworm</code>,{' '}
          <code>subsys install --from alpine:3.20</code>
        </p>
        <ErrorBox error={error} />
        {list === null ? (
          !error && (
            <p class="card">
              <Spinner label="Loading the catalog" /> Loading…
            </p>
          )
        ) : list.length === 0 ? (
          <p class="card muted">This server’s catalog is empty.</p>
        ) : (
          <ul class="catalog">
            {list.map((e) => (
              <ReleaseCard key={e.source} e={e} onInstall={() => setChosen(e)} />
            ))}
          </ul>
        )}
      </section>

      <UrlInstall />

      {chosen && <ReleaseDialog e={chosen} onClose={() => setChosen(null)} />}
      {importing && <ImportDialog onClose={() => setImporting(false)} />}
    </main>
  );
}

const releaseOrigin = (source: string) => `release:${source}`;

/**
 * A text field whose label names it and whose hint (a problem, in red, or
 * help) describes it, rather than being part of its name.
 */
function TextField({
  id,
  label,
  value,
  set,
  problem,
  help,
  grow,
  ...rest
}: {
  id: string;
  label: string;
  value: string;
  set: (v: string) => void;
  problem?: string;
  help?: string;
  grow?: boolean;
  placeholder?: string;
  name: string;
  autoFocus?: boolean;
  class?: string;
  inputMode?: 'url' | 'text';
}) {
  const hint = problem || help;
  return (
    <label class={`field${grow ? ' grow' : ''}`}>
      <span class="field-label" id={`${id}-l`}>
        {label}
      </span>
      <input
        type="text"
        id={id}
        value={value}
        spellcheck={false}
        autocomplete="off"
        aria-labelledby={`${id}-l`}
        aria-describedby={hint ? `${id}-h` : undefined}
        aria-invalid={problem ? true : undefined}
        onInput={(e) => set((e.target as HTMLInputElement).value)}
        {...rest}
      />
      {hint && (
        <span id={`${id}-h`} class={problem ? 'field-hint' : 'field-hint muted'}>
          {hint}
        </span>
      )}
    </label>
  );
}

function ReleaseCard({ e, onInstall }: { e: CatalogEntry; onInstall: () => void }) {
  const m = useStore(installs);
  const l = useStore(live);
  const t = m.get(releaseOrigin(e.source));
  const running = !!t && (l.operations.get(t.op.id) ?? t.op).status === 'running';
  const id = `rel-${e.source.replace(/[^a-zA-Z0-9_-]/g, '-')}`;
  return (
    <li class={`card release${e.available ? '' : ' release-unavailable'}`} data-source={e.source} aria-labelledby={`${id}-t`}>
      <div class="release-head">
        <div class="empty-art release-art" aria-hidden="true">
          <Icon name="package" size={22} />
        </div>
        <div>
          <h3 id={`${id}-t`}>{e.title}</h3>
          <p class="muted small">
            <span class="mono">{e.source}</span> · {e.kind === 'oci' ? 'OCI image' : `about ${bytes(e.approx_bytes)}`}
          </p>
        </div>
      </div>
      {!e.available && (
        <p id={`${id}-why`} class="warn-text small release-why">
          {e.why || 'This server cannot build it.'}
        </p>
      )}
      <div class="release-actions">
        <button
          type="button"
          class={`btn${e.available ? ' btn-primary' : ''}`}
          disabled={!e.available || running}
          aria-label={`Install ${e.title}…`}
          aria-describedby={e.available ? undefined : `${id}-why`}
          onClick={onInstall}
        >
          {running ? <Spinner /> : <Icon name="download" />}
          Install…
        </button>
      </div>
      <InstallStatus origin={releaseOrigin(e.source)} />
    </li>
  );
}

/** The version radios, defaulting to the server's default_version. */
function VersionField({ version, setVersion, disabled }: { version: number; setVersion: (v: number) => void; disabled?: boolean }) {
  return (
    <fieldset class="field" disabled={disabled}>
      <legend class="field-label">Version</legend>
      <div class="segmented">
        {[1, 2].map((v) => (
          <label key={v}>
            <input type="radio" name="version" value={v} checked={version === v} onChange={() => setVersion(v)} />
            <span>v{v}</span>
          </label>
        ))}
      </div>
    </fieldset>
  );
}

const versionNote = (v: number) =>
  v === 1
    ? 'Version 1 shares the host kernel; its files are a plain directory on the host.'
    : 'Version 2 runs in the utility VM with its own kernel and a sparse virtual disk.';

/** The options of a release's install, then POST /distros/install; a refusal stays in the dialog. */
function ReleaseDialog({ e, onClose }: { e: CatalogEntry; onClose: () => void }) {
  const st = useStore(settings);
  const l = useStore(live);
  const [name, setName] = useState(e.distribution);
  const [version, setVersion] = useState(st?.default_version ?? 1);
  const [extra, setExtra] = useState('');
  const [tried, setTried] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');

  const image = e.kind === 'oci';
  const nameErr = nameProblem(name.trim());
  const pk = image ? parsePackages('') : parsePackages(extra);
  const isTaken = !nameErr && taken(l, name.trim());

  const submit = async (ev: Event) => {
    ev.preventDefault();
    if (busy) return;
    setTried(true);
    if (nameErr || pk.packages === null) return;
    const req: InstallRequest = { source: e.source, name: name.trim(), version };
    if (pk.packages.length) req.include = pk.packages;
    setBusy(true);
    setError('');
    try {
      await startInstall(releaseOrigin(e.source), req, e.title);
      onClose();
    } catch (err) {
      setError(errorMessage(err));
      setBusy(false);
    }
  };

  return (
    <Modal title={`Install ${e.title}`} onClose={onClose} wide>
      <form class="modal-body" onSubmit={submit} noValidate>
        <p class="muted small">
          {image ? (
            <>
              Pulled by the server from its registry (<span class="mono">{e.source}</span>), its layers unpacked in order.
            </>
          ) : (
            <>
              Built on the server with <code>mmdebstrap</code> from the distribution’s mirror: about {bytes(e.approx_bytes)}, in a few minutes.
            </>
          )}
        </p>
        <div class="form-row">
          <TextField
            id="rel-name"
            name="name"
            label="Name"
            value={name}
            grow
            autoFocus
            set={(v) => {
              setName(v);
              setError('');
            }}
            problem={
              (tried || name) && nameErr ? nameErr : isTaken ? `A distro named ${name.trim()} exists already: give this one another name.` : ''
            }
          />
          <VersionField version={version} setVersion={setVersion} disabled={busy} />
        </div>
{!image && (
        <TextField
          id="rel-include"
          name="include"
          label="Extra packages"
          value={extra}
          placeholder="none"
          set={(v) => {
            setExtra(v);
            setError('');
          }}
          problem={pk.problem}
          help="Comma-separated Debian package names, such as curl, git, ca-certificates: installed into it as it is built."
        />
)}
        <p class="muted small">{versionNote(version)}</p>
        <ErrorBox error={error} />
        <div class="modal-actions">
          <button type="button" class="btn" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" class="btn btn-primary" disabled={busy}>
            {busy ? <Spinner /> : <Icon name="download" />}
            Install
          </button>
        </div>
      </form>
    </Modal>
  );
}

/**
 * Install from a tarball's URL or an image reference: checked in the page,
 * then POST /distros/install; the server's refusal shows above the button.
 */
function UrlInstall() {
  const st = useStore(settings);
  const l = useStore(live);
  const m = useStore(installs);
  const [url, setUrl] = useState('');
  const [sha, setSha] = useState('');
  const [name, setName] = useState('');
  const [version, setVersion] = useState<number | null>(null);
  const [tried, setTried] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');

  const v = version ?? st?.default_version ?? 1;
  const t = m.get('url');
  const tStatus = t && (l.operations.get(t.op.id) ?? t.op).status;
  const running = tStatus === 'running';
  // Once what it started is installed, the form is clear for the next one
  // (a failure keeps it, to mend and try again).
  const [started, setStarted] = useState('');
  useEffect(() => {
    if (!t || t.op.id !== started || tStatus !== 'success') return;
    setStarted('');
    setUrl('');
    setSha('');
    setName('');
  }, [t?.op.id, tStatus, started]);
  const derived = nameFromSource(url);
  const image = !!url.trim() && !isTarballSource(url);
  const effName = name.trim() || derived;
  const problems = {
    url: sourceProblem(url, sha),
    sha: sha256Problem(sha),
    name: name.trim() ? nameProblem(name.trim()) : url.trim() && !sourceProblem(url, sha) && !derived ? 'The address has no file name to take a name from: give one.' : '',
  };
  const isTaken = !problems.name && taken(l, effName);
  const show = (k: keyof typeof problems) => (tried || (k === 'sha' && sha.trim()) || (k === 'name' && name.trim()) ? problems[k] : '');

  const set = (f: (s: string) => void) => (value: string) => {
    f(value);
    setError('');
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    if (busy || running) return;
    setTried(true);
    if (problems.url || problems.sha || problems.name || !effName) return;
    const req: InstallRequest = { source: url.trim(), name: effName, version: v };
    const sum = normalizeSha256(sha);
    if (sum) req.sha256 = sum;
    setBusy(true);
    setError('');
    try {
      const op = await startInstall('url', req, url.trim());
      setStarted(op.id);
      setTried(false);
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="card install-section url-install" aria-labelledby="url-h">
      <h2 id="url-h">From a tarball URL or an image</h2>
      <p class="muted small">
        The server downloads a root file system tarball (tar, tar.gz, tar.zst, tar.xz, …) and unpacks it as an import would. Use an{' '}
        <code>https://</code> address; a plain <code>http://</code> one only with the tarball’s SHA-256, which the server checks before the
        distro can be used. Anything else is an OCI image reference (<code>alpine:3.20</code>, <code>HOST/org/image:tag</code>,{' '}
        <code>IMAGE@sha256:…</code>): the server pulls it for its own platform, with the credentials of its{' '}
        <code>~/.docker/config.json</code>, and unpacks its layers in order. A name the catalog lists as a release (
        <code>debian:bookworm</code>) is built instead; write <code>oci:debian:bookworm</code> for the image.
      </p>
      <form class="url-form" onSubmit={submit} noValidate>
        <TextField
          id="url-url"
          name="url"
          label="Tarball URL or image"
          inputMode="url"
          value={url}
          placeholder="https://example.org/rootfs.tar.xz or alpine:3.20"
          set={set(setUrl)}
          problem={show('url')}
          help="https://, or http:// with the SHA-256 below; or an image reference."
        />
        <TextField
          id="url-sha"
          name="sha256"
          label="SHA-256 (optional for https)"
          class="mono"
          value={sha}
          placeholder="64 hexadecimal digits, as sha256sum prints them"
          set={set(setSha)}
          problem={show('sha')}
          help="A tarball that does not match it is refused, and nothing is left behind."
        />
        <div class="form-row">
          <TextField
            id="url-name"
            name="name"
            label="Name"
            value={name}
            grow
            placeholder={derived || 'from the file name'}
            set={set(setName)}
            problem={show('name') || (isTaken ? `A distro named ${effName} exists already: give this one another name.` : '')}
            help={
              derived && !name.trim()
                ? `Empty: ${derived}, from the ${image ? 'image’s name' : 'file name'}.`
                : 'Letters, digits, dots, dashes and underscores.'
            }
          />
          <VersionField version={v} setVersion={setVersion} disabled={busy} />
        </div>
        <p class="muted small">{versionNote(v)}</p>
        <ErrorBox error={error} />
        <div class="form-actions">
          <button type="submit" class="btn btn-primary" disabled={busy || running}>
            {busy || running ? <Spinner /> : <Icon name="download" />}
            Install from URL or image
          </button>
        </div>
      </form>
      <InstallStatus origin="url" />
    </section>
  );
}
