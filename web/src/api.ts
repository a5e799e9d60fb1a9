// The REST API under /api/v1 (server/openapi.yaml).
//
// The browser holds no ambient credential: no cookie authorizes anything, since
// cookies reach every localhost port, including a dev server inside a distro.
// The login URL carries the API token in its fragment (#token=…, never sent to a
// server); the page trades it once for a session secret of its own, kept in
// localStorage (scoped to this scheme+host+port) and sent as a header. A
// websocket or event stream cannot send headers, so those take a single-use
// ticket fetched with the header just before they open.

export type State = 'Installing' | 'Stopped' | 'Running' | 'Exporting' | 'Converting' | 'Uninstalling';

export interface Distro {
  name: string;
  id: string;
  version: number;
  state: State;
  default: boolean;
  location: string;
  default_user: string;
  /** It boots with its own systemd as PID 1 (a change applies from its next start). */
  systemd?: boolean;
  created_at: string;
  /** What its files take on the host (version 2: the image's allocated blocks). */
  disk_bytes?: number;
  /** Version 2: the disk's size, which its file system fills; absent or 0 for version 1. */
  disk_max_bytes?: number;
  /** Version 2: free space inside its file system (the guest's df); absent when unknown. */
  disk_free_bytes?: number;
  memory_bytes?: number;
  cpu_percent?: number;
  /** Limits (absent: none): memory in bytes, CPU in cores, processes and threads. */
  memory_max?: number;
  cpu_max?: number;
  pids_max?: number;
  /** A running distro's processes and threads (its cgroup's pids.current). */
  pids?: number;
  /** Processes the OOM killer ended since it started, and when the latest was seen. */
  oom_kills?: number;
  last_oom_at?: string;
  /** The running agent speaks another protocol version (from before an upgrade). */
  agent_outdated?: boolean;
  /** What the server has to say about this distro (e.g. how to get the new agent). */
  message?: string;
}

/** The data of a `distro-oom` event: the OOM killer ended a process of a running distro. */
export interface OOMEvent {
  distro: string;
  id: string;
  oom_kills: number;
  at: string;
}

export interface Operation {
  id: string;
  kind: string;
  distro?: string;
  status: 'running' | 'success' | 'failure';
  progress: { done: number; total: number };
  error: string;
  created_at?: string;
  /** What an import or clone made; for a compact, `bytes` is how much the image gave back. */
  result?: { bytes?: number; entries?: number; warnings?: string[] };
  /** What it is doing when progress alone does not say ("layer 2 of 5"): the server's text. */
  message?: string;
}

/** A release the server can build (GET /catalog). Every string is the server's: text, never markup. */
export interface CatalogEntry {
  /** What to install: "debian:bookworm". */
  source: string;
  /** "distribution": built on the server; "oci": a suggested image, pulled from its registry. */
  kind?: 'distribution' | 'oci';
  distribution: string;
  suite: string;
  title: string;
  /** About how large its root file system is; 0 when unknown (an image). */
  approx_bytes: number;
  /** Whether this server can build it; why says what it lacks when not. */
  available: boolean;
  why?: string;
}

/** POST /distros/install: a catalog release, an http(s) tarball URL or a server path. */
export interface InstallRequest {
  name?: string;
  source?: string;
  version?: number;
  location?: string;
  size_bytes?: number;
  variant?: string;
  include?: string[];
  mirror?: string;
  sha256?: string;
}

export interface Metrics {
  interval_s: number;
  samples: { t: string; cpu_percent: number; memory_bytes: number }[];
}

export interface Settings {
  default_version: number;
  default_user: string;
  scrollback_bytes: number;
  session_timeout_s: number;
  v1_lan_default: 'off' | 'follow-bind';
  /** The utility VM's memory, processors and idle timeout (a server with version 2 has them). */
  vm_memory_mib?: number;
  vm_processors?: number;
  vm_idle_timeout_s?: number;
  /** The VM's kernel on the server; empty: the one installed with subsys. */
  kernel?: string;
  /** How the idle VM gives its page cache back: gradual, dropcache or disabled. */
  memory_reclaim?: 'gradual' | 'dropcache' | 'disabled';
  /** The Debian mirror `subsys install` builds from: an http(s):// or file:/// URL; empty: the server's apt sources' mirror. */
  install_mirror?: string;
}

/** A copy of a stopped distro's files (GET /distros/{name}/snapshots). */
export interface Snapshot {
  name: string;
  /** The distro's version when it was taken: it restores into that version only. */
  version: number;
  /** What the copy takes on the host. */
  bytes: number;
  created_at: string;
}

export interface VMMemory {
  total_bytes: number;
  used_bytes: number;
  cached_bytes: number;
  available_bytes: number;
  /** Page cache reclaim has dropped since the VM booted. */
  reclaimed_bytes: number;
}

export interface MemorySample {
  t: string;
  /** QEMU's resident memory on the host. */
  rss_bytes: number;
  used_bytes: number;
  cached_bytes: number;
}

/** POST /vm/reclaim's reply. */
export interface VMReclaim {
  dropped_bytes: number;
  memory: VMMemory;
  rss_bytes: number;
}

export type VMState = 'Stopped' | 'Starting' | 'Running' | 'Stopping' | 'Failed';

/**
 * The utility VM of version 2 distros (GET /vm). `error` and `kernel_release`
 * come from the guest: shown as text only, never as markup.
 */
export interface VMStatus {
  available: boolean;
  state: VMState;
  accel?: string;
  accel_note?: string;
  pid?: number;
  started_at?: string;
  memory_mib: number;
  cpus: number;
  rss_bytes?: number;
  kernel?: string;
  kernel_release?: string;
  /** The VM's own addresses, IPv4 and IPv6, as prefixes. */
  addresses?: string[];
  /** The VM's user-mode network: "passt", or "slirp" where passt is missing. */
  network?: string;
  /** How /mnt/host reaches the host: "virtio-fs", or "9p" where virtiofsd is missing or failed. */
  host_files?: string;
  /** Why virtio-fs is not used where it was meant to be. */
  host_files_note?: string;
  /** The guest's memory as its kernel counts it, while it runs. */
  memory?: VMMemory;
  /** The idle reclaim mode in force: gradual, dropcache or disabled. */
  memory_reclaim?: string;
  /** The VM's memory every 10 s while it runs, oldest first (15 minutes). */
  memory_history?: MemorySample[];
  /** Ids of the version 2 distros running in it. */
  distros?: string[];
  /** Negative: the VM stays up. */
  idle_timeout_s: number;
  error?: string;
}

export interface TerminalInfo {
  id: string;
  argv: string[] | null;
  user: string;
  pid: number;
  cols: number;
  rows: number;
  attached: boolean;
  created_at: string;
  exited: boolean;
  exit_code: number;
}

export type Proto = 'tcp' | 'udp';

/** A listening socket in a distro, with its forwarding settings (GET /distros/{name}/ports). */
export interface Port {
  proto: Proto;
  port: number;
  /** Bind address; 0.0.0.0 or :: means every address. */
  address: string;
  process: string;
  pid: number;
  lan: boolean;
  /** Source CIDRs allowed to connect from the LAN; empty means any. */
  allow: string[] | null;
  /** Host address the LAN listener uses; empty means every host address. */
  lan_address: string;
  localhost: boolean;
  /** closed: nothing listens there now (a saved setting waiting for it). */
  state: 'local' | 'lan' | 'conflict' | 'error' | 'closed';
  error?: string;
  connections: number;
  bytes_in: number;
  bytes_out: number;
}

export interface PortSettings {
  lan?: boolean;
  allow?: string[];
  lan_address?: string;
  localhost?: boolean;
}

/** The `ports` event of the event stream. */
export interface PortsEvent {
  distro: string;
  id: string;
  ports: Port[] | null;
}

export interface NewRule {
  proto: Proto;
  listen_address: string;
  listen_port: number;
  connect_address: string;
  connect_port: number;
  allow: string[];
}

/** A portproxy rule and how it is doing (GET /portproxy). */
export interface RuleStatus extends NewRule {
  id: string;
  state: 'active' | 'conflict' | 'error';
  error?: string;
  connections: number;
  total: number;
  refused: number;
  failed: number;
  bytes_in: number;
  bytes_out: number;
}

export const EXPORT_FORMATS = ['tar', 'tar.gz', 'tar.zst', 'tar.xz'] as const;

/** The Content-Type of an import whose body is a raw ext4 image (a version 2 distro's). */
export const RAW_IMAGE_TYPE = 'application/x-raw-disk-image';

/** An error the server explained ({"error":{"code","message"}}) or a network failure. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

const BASE = '/api/v1';

export const distroPath = (name: string) => `${BASE}/distros/${encodeURIComponent(name)}`;

/** Turns a failed response into an ApiError carrying the server's message. */
async function errorFrom(res: Response): Promise<ApiError> {
  const text = await res.text().catch(() => '');
  return parseError(res.status, res.statusText, text);
}

export function parseError(status: number, statusText: string, body: string): ApiError {
  try {
    const j = JSON.parse(body);
    if (j?.error?.message) return new ApiError(status, String(j.error.code ?? ''), String(j.error.message));
  } catch {
    // not JSON: fall through
  }
  const detail = body.trim().slice(0, 200) || statusText || 'request failed';
  return new ApiError(status, 'http_' + status, `${status} ${detail}`);
}

const SESSION_KEY = 'subsys.session';

/** The session secret, or '' when signed out. */
export function sessionSecret(): string {
  try {
    return localStorage.getItem(SESSION_KEY) ?? '';
  } catch {
    return '';
  }
}

function setSession(secret: string) {
  try {
    if (secret) localStorage.setItem(SESSION_KEY, secret);
    else localStorage.removeItem(SESSION_KEY);
  } catch {
    // storage disabled: the session lasts as long as this page
  }
  memorySession = secret;
}

let memorySession = '';

/** The session header for a request the page makes itself (fetch, XHR). */
export function authHeaders(): Record<string, string> {
  const s = sessionSecret() || memorySession;
  return s ? { Authorization: `Bearer ${s}` } : {};
}

/** Trades the API token for a session of this browser's own. */
export async function login(token: string): Promise<void> {
  let res: Response;
  try {
    res = await fetch(`${BASE}/login`, {
      method: 'POST',
      credentials: 'omit',
      headers: { Authorization: `Bearer ${token.trim()}` },
    });
  } catch (e) {
    throw new ApiError(0, 'network', `Cannot reach the subsys server (${(e as Error).message}).`);
  }
  if (!res.ok) {
    const err = await errorFrom(res);
    if (res.status === 401) throw new ApiError(401, err.code, 'That token is not right: copy it again from the data directory, or run `subsys dashboard`.');
    throw err;
  }
  const j = (await res.json()) as { session: string };
  setSession(j.session);
}

/**
 * Signs in with a token found in the address (#token=…), and removes it from the
 * address bar and history at once. Returns whether there was one.
 */
export async function loginFromURL(): Promise<boolean> {
  const hash = new URLSearchParams(location.hash.replace(/^#/, ''));
  const token = hash.get('token');
  if (!token) return false;
  history.replaceState(history.state, '', location.pathname === '/login' ? '/' : location.pathname + location.search);
  try {
    await login(token);
  } catch {
    // the sign-in page says so: the stored session (if any) stays as it was
  }
  return true;
}

/** Ends this browser's session on the server and here. */
export async function logout(): Promise<void> {
  try {
    await request<void>('POST', `${BASE}/logout`);
  } finally {
    setSession('');
  }
}

/** Forgets a session the server no longer accepts. */
export function dropSession() {
  setSession('');
}

/** A single-use ticket for one websocket, event stream or download. */
export async function ticket(): Promise<string> {
  const t = await request<{ ticket: string }>('POST', `${BASE}/tickets`);
  return t.ticket;
}

export async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      credentials: 'omit',
      headers: { ...authHeaders(), ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, 'network', `Cannot reach the subsys server (${(e as Error).message}).`);
  }
  if (!res.ok) throw await errorFrom(res);
  if (res.status === 204) return undefined as T;
  const ct = res.headers.get('Content-Type') ?? '';
  return (ct.includes('json') ? res.json() : res.text()) as Promise<T>;
}

export const api = {
  listDistros: () => request<Distro[]>('GET', `${BASE}/distros`),
  getDistro: (name: string) => request<Distro>('GET', distroPath(name)),
  start: (name: string) => request<Distro>('POST', `${distroPath(name)}/start`),
  terminate: (name: string) => request<Distro>('POST', `${distroPath(name)}/terminate`),
  clone: (name: string, to: string) => request<Operation>('POST', `${distroPath(name)}/clone`, { name: to }),
  update: (
    name: string,
    u: { name?: string; default?: true; default_user?: string; memory_max?: number; cpu_max?: number; pids_max?: number; systemd?: boolean },
  ) =>
    request<Distro>('PATCH', distroPath(name), u),
  unregister: (name: string) => request<void>('DELETE', distroPath(name)),
  metrics: (name: string) => request<Metrics>('GET', `${distroPath(name)}/metrics`),
  terminals: (name: string) => request<TerminalInfo[]>('GET', `${distroPath(name)}/terminals`),
  killTerminal: (name: string, id: string) =>
    request<void>('DELETE', `${distroPath(name)}/terminals/${encodeURIComponent(id)}`),
  operation: (id: string, waitS = 0) =>
    request<Operation>('GET', `${BASE}/operations/${encodeURIComponent(id)}${waitS ? `?wait=${waitS}` : ''}`),
  cancelOperation: (id: string) => request<Operation>('DELETE', `${BASE}/operations/${encodeURIComponent(id)}`),
  ports: (name: string) => request<Port[] | null>('GET', `${distroPath(name)}/ports`),
  putPort: (name: string, proto: Proto, port: number, s: PortSettings) =>
    request<Port>('PUT', `${distroPath(name)}/ports/${proto}/${port}`, s),
  rules: () => request<RuleStatus[] | null>('GET', `${BASE}/portproxy`),
  addRule: (r: NewRule) => request<RuleStatus>('POST', `${BASE}/portproxy`, r),
  deleteRule: (id: string) => request<void>('DELETE', `${BASE}/portproxy/${encodeURIComponent(id)}`),
  settings: () => request<Settings>('GET', `${BASE}/settings`),
  catalog: () => request<CatalogEntry[] | null>('GET', `${BASE}/catalog`),
  install: (r: InstallRequest) => request<Operation>('POST', `${BASE}/distros/install`, r),
  putSettings: (s: Partial<Settings>) => request<Settings>('PUT', `${BASE}/settings`, s),
  version: () => request<{ version: string }>('GET', `${BASE}/version`),
  setVersion: (name: string, version: number) => request<Operation>('POST', `${distroPath(name)}/set-version`, { version }),
  /** A version 2 distro's new disk size in bytes: a running one only grows. */
  resize: (name: string, size: number) => request<Operation>('POST', `${distroPath(name)}/resize`, { size }),
  /** Gives a version 2 distro's free disk blocks back to the host. */
  compact: (name: string) => request<Operation>('POST', `${distroPath(name)}/compact`, {}),
  /** Moves a stopped distro's files to location: absolute, empty or absent. */
  move: (name: string, location: string) => request<Operation>('POST', `${distroPath(name)}/move`, { location }),
  /** A distro's snapshots, the oldest first. */
  snapshots: async (name: string) => (await request<Snapshot[] | null>('GET', `${distroPath(name)}/snapshots`)) ?? [],
  /** Takes a snapshot of a stopped distro; without a name the server makes one up. */
  takeSnapshot: (name: string, snap?: string) => request<Operation>('POST', `${distroPath(name)}/snapshots`, snap ? { name: snap } : {}),
  /** Puts a snapshot's files in place of a stopped distro's. */
  restoreSnapshot: (name: string, snap: string) =>
    request<Operation>('POST', `${distroPath(name)}/snapshots/${encodeURIComponent(snap)}/restore`),
  deleteSnapshot: (name: string, snap: string) => request<void>('DELETE', `${distroPath(name)}/snapshots/${encodeURIComponent(snap)}`),
  vm: () => request<VMStatus>('GET', `${BASE}/vm`),
  reclaimVM: () => request<VMReclaim>('POST', `${BASE}/vm/reclaim`),
  vmConsole,
};

/**
 * The utility VM's serial console: the guest's raw bytes (octet-stream), never
 * rendered by the browser. Callers show them through consoleText, as text.
 */
async function vmConsole(): Promise<Uint8Array> {
  let res: Response;
  try {
    res = await fetch(`${BASE}/vm/console`, { credentials: 'omit', headers: authHeaders() });
  } catch (e) {
    throw new ApiError(0, 'network', `Cannot reach the subsys server (${(e as Error).message}).`);
  }
  if (!res.ok) throw await errorFrom(res);
  return new Uint8Array(await res.arrayBuffer());
}

/**
 * Downloads an export: a form POST with a single-use ticket, so the browser
 * streams the archive to disk itself (a fetch would hold it all in memory).
 */
export async function downloadExport(name: string, format: string, onFailed: () => void): Promise<void> {
  const t = await ticket();
  // The reply is an attachment, so the browser saves it and no frame loads; an
  // error reply instead loads into the hidden frame (its JSON unreadable there,
  // by our own frame-ancestors policy), which is how a failure shows.
  const frame = document.createElement('iframe');
  frame.name = `export-${t.slice(-12)}`;
  frame.style.display = 'none';
  frame.onload = () => {
    onFailed();
    frame.remove();
  };
  const form = document.createElement('form');
  form.method = 'POST';
  form.target = frame.name;
  form.action = `${distroPath(name)}/export?${new URLSearchParams({ format, ticket: t })}`;
  form.style.display = 'none';
  document.body.append(frame, form);
  form.submit();
  form.remove();
  // A download leaves the frame empty: take it away after a while.
  setTimeout(() => frame.remove(), 120_000);
}

export interface Upload {
  /** Resolves with the operation the server started, or rejects with an ApiError. */
  done: Promise<Operation>;
  abort(): void;
}

/**
 * Uploads a tarball to POST /distros with XMLHttpRequest, which (unlike fetch)
 * reports upload progress: onProgress(sent, total) while the bytes go out.
 */
export function uploadDistro(
  file: File,
  name: string,
  version: number,
  onProgress: (sent: number, total: number) => void,
  opts: { sizeBytes?: number; rawImage?: boolean } = {},
): Upload {
  const xhr = new XMLHttpRequest();
  const done = new Promise<Operation>((resolve, reject) => {
    const q = new URLSearchParams({ name, version: String(version) });
    if (opts.sizeBytes) q.set('size', String(opts.sizeBytes));
    xhr.open('POST', `${BASE}/distros?${q}`);
    xhr.setRequestHeader('Content-Type', opts.rawImage ? RAW_IMAGE_TYPE : 'application/octet-stream');
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.upload.onload = () => onProgress(file.size, file.size);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve(JSON.parse(xhr.responseText) as Operation);
        } catch {
          reject(new ApiError(xhr.status, 'bad_reply', 'The server answered with something that is not an operation.'));
        }
      } else {
        reject(parseError(xhr.status, xhr.statusText, xhr.responseText));
      }
    };
    xhr.onerror = () => reject(new ApiError(0, 'network', 'The upload failed: the connection to the server broke.'));
    xhr.onabort = () => reject(new ApiError(0, 'aborted', 'Upload cancelled.'));
    xhr.send(file);
  });
  return { done, abort: () => xhr.abort() };
}

export const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$/;

/** Why name is not a valid distro name, or '' when it is. */
export function nameProblem(name: string): string {
  if (!name) return 'A name is required.';
  if (!NAME_RE.test(name))
    return 'Use 1–64 letters, digits, dots, dashes or underscores, starting with a letter or digit.';
  return '';
}

export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
