// Installing a distro (POST /distros/install), as `subsys install` does: a
// release of the server's catalog, built there with mmdebstrap, an OCI image
// the server pulls from a registry, or a root file system tarball the server
// downloads from a URL. The checks of what a person types (package names, URL
// or image reference, SHA-256, the name taken from a URL or image), the installs
// this tab started, and how one is going (InstallStatus): the `operation`
// events' bytes, then links to the new distro. Everything the server says
// (titles, why, errors, names) is shown as text, never markup.
import { useLayoutEffect, useRef } from 'preact/hooks';
import { api, type CatalogEntry, type InstallRequest, type Operation } from './api';
import { bytes } from './format';
import { distroHref, onLinkClick, terminalHref } from './router';
import { applyOperation, live, refreshIfNotLive, Store, useStore, waitOperation } from './store';
import { Icon, Progress, Spinner, toast } from './ui';

/** The release the dashboard's one-click button installs. */
export const DEFAULT_RELEASE = 'debian:bookworm';

// ---- checks ---------------------------------------------------------------------

/** A Debian package name (Policy 5.6.1); the server allows at most 100 characters. */
export const PACKAGE_RE = /^[a-z0-9][a-z0-9+.-]+$/;

/**
 * The packages of a comma-separated list ("curl, git"; spaces also separate),
 * or the problem with one of them. Empty is no extra packages.
 */
export function parsePackages(text: string): { packages: string[]; problem: '' } | { packages: null; problem: string } {
  const packages = text
    .split(/[\s,]+/)
    .map((p) => p.trim())
    .filter(Boolean);
  for (const p of packages) {
    if (!PACKAGE_RE.test(p) || p.length > 100)
      return {
        packages: null,
        problem: `“${p.length > 40 ? p.slice(0, 40) + '…' : p}” is not a Debian package name: lowercase letters, digits, + . and -, at least two, starting with a letter or digit.`,
      };
  }
  return { packages: [...new Set(packages)], problem: '' };
}

/** A SHA-256 as sha256sum prints it, in the lowercase the server wants; '' for none. */
export const normalizeSha256 = (text: string) => text.trim().toLowerCase();

/** Why text is not a SHA-256, or '' when it is one (or is empty). */
export function sha256Problem(text: string): string {
  const s = normalizeSha256(text);
  if (!s) return '';
  if (!/^[0-9a-f]{64}$/.test(s)) return `A SHA-256 is 64 hexadecimal digits, as sha256sum prints it (this has ${s.length} characters).`;
  return '';
}

/**
 * Why url is not a tarball address the server takes, or '' when it is one:
 * https://, or plain http:// only with the SHA-256 that pins what it sends.
 */
export function urlProblem(url: string, sha256: string): string {
  const u = url.trim();
  if (!u) return 'The tarball’s address is required, such as https://example.org/rootfs.tar.xz.';
  if (/[\s\u0000-\u001f\u007f]/.test(u)) return 'An address has no spaces or control characters.';
  let parsed: URL;
  try {
    parsed = new URL(u);
  } catch {
    return 'Not an address: write one such as https://example.org/rootfs.tar.xz.';
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') return 'Use an https:// address (or http:// with the tarball’s SHA-256).';
  if (!parsed.hostname) return 'The address has no host.';
  if (parsed.protocol === 'http:' && !normalizeSha256(sha256))
    return 'A plain http:// download can be changed by anyone on the way: use https://, or give the tarball’s SHA-256 below.';
  return '';
}

/**
 * Whether a free-form source is a tarball's address (a URL of any scheme but
 * docker://, which urlProblem then checks, or a server path) rather than an
 * image reference.
 */
export const isTarballSource = (source: string) => {
  const s = source.trim();
  return s.startsWith('/') || (/^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(s) && !s.startsWith('docker://'));
};

/**
 * Why ref is not an OCI image reference the server could take, or '' when it
 * may be one (the server parses it, and says what is wrong): "alpine:3.20",
 * "HOST[:PORT]/org/image:tag", "IMAGE@sha256:…", "oci:debian:bookworm". A
 * SHA-256 does not apply: an image is pinned by its digest.
 */
export function imageProblem(ref: string, sha256: string): string {
  const r = ref.trim().replace(/^(oci:|docker:\/\/)/, '');
  if (!r) return 'Write an image reference, such as alpine:3.20 or registry.example.org/team/image:tag.';
  if (/[\s\u0000-\u001f\u007f]/.test(r)) return 'An image reference has no spaces or control characters.';
  if (!/^[a-zA-Z0-9][a-zA-Z0-9._:\/@\[\]-]*$/.test(r)) return 'Not an image reference: write one such as alpine:3.20 or HOST/org/image:tag.';
  if (normalizeSha256(sha256)) return 'An image is pinned by its digest (IMAGE@sha256:…), not by a SHA-256 here: leave that field empty.';
  return '';
}

/** Why source (a tarball's address or an image reference) cannot be installed, or ''. */
export function sourceProblem(source: string, sha256: string): string {
  if (!source.trim()) return 'A tarball’s address or an image reference is required, such as https://example.org/rootfs.tar.xz or alpine:3.20.';
  return isTarballSource(source) ? urlProblem(source, sha256) : imageProblem(source, sha256);
}

/**
 * The name an install of an image takes when none is given, as the server
 * makes it: the repository's last part ("alpine" of alpine:3.20, "img" of
 * HOST:PORT/test/img:tag).
 */
export function nameFromImage(ref: string): string {
  let r = ref.trim().replace(/^(oci:|docker:\/\/)/, '');
  r = r.split('@')[0];
  const last = r.split('/').pop() ?? '';
  const base = last.split(':')[0];
  return [...base.replace(/[^a-zA-Z0-9_.-]/gu, '-').replace(/^[-._]+/, '')].slice(0, 64).join('');
}

/** The name an install of a free-form source takes when none is given. */
export const nameFromSource = (source: string) => (isTarballSource(source) ? nameFromURL(source) : nameFromImage(source));

/**
 * The name an install from url takes when none is given, as the server makes
 * it: the file name without its archive extensions, every other character
 * than letters, digits, - _ and . made a dash. '' when there is none.
 */
export function nameFromURL(url: string): string {
  let path: string;
  try {
    path = new URL(url.trim()).pathname;
  } catch {
    return '';
  }
  let base = path.replace(/\/+$/, '').split('/').pop() ?? '';
  try {
    base = decodeURIComponent(base);
  } catch {
    // leave it encoded
  }
  for (const ext of ['.gz', '.xz', '.zst', '.bz2', '.tgz', '.tar']) if (base.endsWith(ext)) base = base.slice(0, -ext.length);
  return [...base.replace(/[^a-zA-Z0-9_.-]/gu, '-').replace(/^[-._]+/, '')].slice(0, 64).join('');
}

// ---- the catalog ------------------------------------------------------------------

/** GET /catalog, loaded when a page needs it; null until then. */
export const catalog = new Store<CatalogEntry[] | null>(null);

export async function loadCatalog(): Promise<CatalogEntry[]> {
  const list = (await api.catalog()) ?? [];
  catalog.set(list);
  return list;
}

// ---- installs this tab started ---------------------------------------------------

/** An install started here, by where it was started from (see startInstall). */
export interface Tracked {
  /** The 202 reply, then the operation's end. */
  op: Operation;
  /** What was installed, for people: a release's title or the URL. */
  what: string;
  /** A build (size unknown until its end) rather than a download. */
  build: boolean;
  /** An image pull: progress is its layers' compressed bytes, the operation's message the layer. */
  pull?: boolean;
}

export const installs = new Store<Map<string, Tracked>>(new Map());

/** How many InstallStatus components show each origin now. */
const shown = new Map<string, number>();

function setTracked(origin: string, t: Tracked | null) {
  installs.update((m) => {
    const n = new Map(m);
    if (t) n.set(origin, t);
    else n.delete(origin);
    return n;
  });
}

/** Forgets an install that has ended (its Dismiss button). */
export const dismissInstall = (origin: string) => setTracked(origin, null);

/**
 * Posts the install and follows its operation under origin (where the page
 * shows it: "quick", "release:debian:bookworm", "url"). A refusal (409 name
 * taken, 400 invalid, 501 unsupported) rejects with the server's ApiError.
 * When it ends where no InstallStatus shows it, a toast says so.
 */
export async function startInstall(origin: string, req: InstallRequest, what: string): Promise<Operation> {
  const op = await api.install(req);
  // A catalog entry says what it is; any other source that is not a
  // tarball's address is an image.
  const entry = req.source ? catalog.get()?.find((e) => e.source === req.source) : undefined;
  const pull = !!req.source && !isTarballSource(req.source) && (entry ? entry.kind === 'oci' : true);
  const build = !!req.source && !isTarballSource(req.source) && !pull;
  applyOperation(op);
  setTracked(origin, { op, what, build, pull });
  waitOperation(op.id).then((end) => {
    const cur = installs.get().get(origin);
    if (cur?.op.id === end.id) setTracked(origin, { ...cur, op: end });
    // After the page has rendered what it tracks now.
    setTimeout(() => {
      if (shown.get(origin)) return;
      if (end.status === 'failure') toast('error', `Installing ${end.distro || what} failed: ${end.error || 'no reason given'}`);
      else toast('info', `Installed ${end.distro || what}.`);
    }, 0);
    refreshIfNotLive();
  });
  return op;
}

// ---- how one is going ------------------------------------------------------------------

/**
 * The install started from origin: a bar (indeterminate while the size is
 * unknown, as for a build) with the bytes received so far, then "Installed
 * NAME" with links to it and to a terminal in it, or the server's reason it
 * failed. Nothing when there is none.
 */
export function InstallStatus({ origin }: { origin: string }) {
  const m = useStore(installs);
  const l = useStore(live);
  const t = m.get(origin);
  // The bar never goes back: a 202 reply read after the first events is older news.
  const most = useRef<{ id: string; done: number }>({ id: '', done: 0 });
  useLayoutEffect(() => {
    shown.set(origin, (shown.get(origin) ?? 0) + 1);
    return () => {
      shown.set(origin, (shown.get(origin) ?? 1) - 1);
    };
  }, [origin]);
  if (!t) return null;
  const op = l.operations.get(t.op.id) ?? t.op;
  if (most.current.id !== op.id) most.current = { id: op.id, done: 0 };
  const done = (most.current.done = Math.max(most.current.done, op.progress.done));
  const total = op.progress.total;
  const name = op.distro ?? '';

  if (op.status === 'running') {
    const verb = t.build ? `Building ${name || t.what} with mmdebstrap` : t.pull ? `Pulling ${name || t.what}` : `Downloading ${name || t.what}`;
    const text =
      (total > 0
        ? `${verb}: ${bytes(done)} of ${bytes(total)} (${Math.floor((Math.min(done, total) / total) * 100)}%)`
        : done > 0
          ? `${verb}: ${bytes(done)} received`
          : `${verb}…`) + (op.message ? ` · ${op.message}` : '');
    return (
      <div class="install-status" data-testid="install-status" data-status="running" data-op={op.id}>
        <Progress value={done} max={total} indeterminate={total === 0} label={`Installing ${name}`} />
        <p class="small" role="status">
          <Spinner /> {text}
        </p>
        {t.build && total === 0 && <p class="muted small">The size is known only at the end; a build takes a few minutes.</p>}
      </div>
    );
  }

  const dismiss = (
    <button type="button" class="btn btn-icon btn-ghost" aria-label="Dismiss" title="Dismiss" onClick={() => dismissInstall(origin)}>
      <Icon name="close" size={14} />
    </button>
  );
  if (op.status === 'failure') {
    return (
      <div class="install-status install-failed" data-testid="install-status" data-status="failure" data-op={op.id}>
        <p class="error-box" role="alert">
          Installing {name || t.what} failed: {op.error || 'no reason given'}
        </p>
        {dismiss}
      </div>
    );
  }
  const warnings = op.result?.warnings ?? [];
  return (
    <div class="install-status install-done" data-testid="install-status" data-status="success" data-op={op.id}>
      <div class="install-done-head">
        <p role="status">
          <span class="ok-text">
            <Icon name="check" size={14} /> Installed <strong>{name}</strong>.
          </span>
          {done > 0 && <span class="muted small"> {bytes(done)} received.</span>}
        </p>
        {dismiss}
      </div>
      {warnings.length > 0 && (
        <ul class="muted small install-warnings">
          {warnings.map((w, i) => (
            <li key={i}>{w}</li>
          ))}
        </ul>
      )}
      {name && (
        <div class="install-links">
          <a class="btn btn-primary" href={terminalHref(name)} onClick={onLinkClick}>
            <Icon name="terminal" />
            Open a terminal
          </a>
          <a class="btn" href={distroHref(name)} onClick={onLinkClick}>
            Open {name}
          </a>
        </div>
      )}
    </div>
  );
}
