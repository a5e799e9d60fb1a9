// The REST API under /api/v1 (server/openapi.yaml). The browser is logged in by
// the HttpOnly cookie /login sets, so every call is a plain same-origin fetch.

export type State = 'Installing' | 'Stopped' | 'Running' | 'Exporting' | 'Converting' | 'Uninstalling';

export interface Distro {
  name: string;
  id: string;
  version: number;
  state: State;
  default: boolean;
  location: string;
  default_user: string;
  created_at: string;
  disk_bytes?: number;
  memory_bytes?: number;
  cpu_percent?: number;
}

export interface Operation {
  id: string;
  kind: string;
  distro?: string;
  status: 'running' | 'success' | 'failure';
  progress: { done: number; total: number };
  error: string;
  created_at?: string;
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

export async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      credentials: 'same-origin',
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
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
  update: (name: string, u: { name?: string; default?: true; default_user?: string }) =>
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
  putSettings: (s: Partial<Settings>) => request<Settings>('PUT', `${BASE}/settings`, s),
  version: () => request<{ version: string }>('GET', `${BASE}/version`),
};

export const exportURL = (name: string, format: string) =>
  `${distroPath(name)}/export?format=${encodeURIComponent(format)}`;

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
): Upload {
  const xhr = new XMLHttpRequest();
  const done = new Promise<Operation>((resolve, reject) => {
    xhr.open('POST', `${BASE}/distros?name=${encodeURIComponent(name)}&version=${version}`);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
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
