// A distro's files through /api/v1/distros/{name}/files/{path}: list a
// directory, read, download (a file, or a directory as .tar.gz), upload
// (multipart, with XHR for its progress), make a directory, rename, delete;
// and the path and text helpers of the files page. Every name and every byte
// here comes from the distro: untrusted, shown as text only (visibleName).
import { ApiError, authHeaders, distroPath, parseError, request } from './api';

export type FileType = 'file' | 'dir' | 'symlink' | 'other';

/** One file, directory or link (api.FileInfo). */
export interface FileInfo {
  name: string;
  path: string;
  type: FileType;
  size: number;
  /** Permission bits, setuid/setgid/sticky included, in octal: "0644". */
  mode: string;
  mtime: string;
  /** Names from the distro's /etc/passwd and /etc/group, else the numeric ids. */
  user: string;
  group: string;
  /** A symlink's target, as the link holds it. */
  target?: string;
}

/** A directory's entries, sorted by name (api.FileList). */
export interface FileList {
  path: string;
  entries: FileInfo[] | null;
}

/** The largest file the page shows as text; larger ones are offered for download. */
export const VIEW_MAX_BYTES = 1 << 20;
/** How much of a file is looked at for NUL bytes to tell binary from text. */
const SNIFF_BYTES = 8 << 10;

/** A clean absolute path: "/" plus the segments without ".", ".." or empty ones. */
export function cleanPath(p: string): string {
  const out: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  return '/' + out.join('/');
}

/** dir joined with name: joinPath("/", "etc") → "/etc". */
export const joinPath = (dir: string, name: string) => cleanPath(`${dir}/${name}`);

/** The directory holding p; "/" for "/". */
export const parentPath = (p: string) => cleanPath(`${cleanPath(p)}/..`);

/** The last segment of p, or "" for "/". */
export const baseName = (p: string) => cleanPath(p).split('/').pop() ?? '';

/** The breadcrumbs of p: [{label:"/",path:"/"},{label:"etc",path:"/etc"},…]. */
export function crumbs(p: string): { label: string; path: string }[] {
  const out = [{ label: '/', path: '/' }];
  let acc = '';
  for (const seg of cleanPath(p).split('/').filter(Boolean)) {
    acc += `/${seg}`;
    out.push({ label: seg, path: acc });
  }
  return out;
}

/**
 * The API URL of path in distro name: every segment percent-encoded on its own,
 * so "/", "?", "#" and "%" in names reach the server as bytes of the name.
 */
export function filesURL(name: string, path: string, query: Record<string, string | undefined> = {}): string {
  const rest = cleanPath(path).split('/').filter(Boolean).map(encodeURIComponent).join('/');
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v) q.set(k, v);
  const qs = q.toString();
  return `${distroPath(name)}/files/${rest}${qs ? `?${qs}` : ''}`;
}

/** Why a new file or directory name typed in the page is refused, or ''. */
export function fileNameProblem(v: string): string {
  if (v === '') return 'A name is required.';
  if (v.includes('/')) return 'A name cannot hold "/".';
  if (v === '.' || v === '..') return `"${v}" is not a name.`;
  if (v.includes('\u0000')) return 'A name cannot hold a NUL byte.';
  return '';
}

/**
 * Where a rename typed as v goes for the entry at path: an absolute path as it
 * is, else a new name in the same directory. Throws nothing: see renameProblem.
 */
export function renameTarget(path: string, v: string): string {
  return v.startsWith('/') ? cleanPath(v) : joinPath(parentPath(path), v);
}

/** Why v is not a rename target for the entry at path, or ''. */
export function renameProblem(path: string, v: string): string {
  if (v === '') return 'A name is required.';
  if (!v.startsWith('/')) {
    const p = fileNameProblem(v);
    if (p) return `${p} Give a name, or an absolute path starting with /.`;
  } else if (cleanPath(v) === '/') return 'Not / itself.';
  if (renameTarget(path, v) === cleanPath(path)) return 'That is its name already.';
  return '';
}

const TYPE_CHAR: Record<FileType, string> = { file: '-', dir: 'd', symlink: 'l', other: '?' };

/** mode ("0755") as ls shows it: "drwxr-xr-x", with s/S and t/T for the special bits. */
export function modeString(type: FileType, mode: string): string {
  const m = parseInt(mode, 8);
  if (!/^[0-7]{1,5}$/.test(mode) || !isFinite(m)) return mode;
  const rwx = (bits: number, special: boolean, ch: string) =>
    (bits & 4 ? 'r' : '-') + (bits & 2 ? 'w' : '-') + (special ? (bits & 1 ? ch : ch.toUpperCase()) : bits & 1 ? 'x' : '-');
  return (
    TYPE_CHAR[type] +
    rwx((m >> 6) & 7, (m & 0o4000) !== 0, 's') +
    rwx((m >> 3) & 7, (m & 0o2000) !== 0, 's') +
    rwx(m & 7, (m & 0o1000) !== 0, 't')
  );
}

/** Directories first, then the rest, each by name as the server sorted them. */
export function sortEntries(entries: FileInfo[]): FileInfo[] {
  return [...entries].sort((a, b) => Number(b.type === 'dir') - Number(a.type === 'dir') || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Whether b is text the page may show: no NUL byte in its first 8 KiB and
 * valid UTF-8 throughout. Returns the text, or null for binary.
 */
export function asText(b: Uint8Array): string | null {
  if (b.subarray(0, SNIFF_BYTES).includes(0)) return null;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(b);
  } catch {
    return null;
  }
}

async function send(url: string, init: RequestInit = {}): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, { credentials: 'omit', ...init, headers: { ...authHeaders(), ...(init.headers ?? {}) } });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    throw new ApiError(0, 'network', `Cannot reach the subsys server (${(e as Error).message}).`);
  }
  if (!res.ok) throw parseError(res.status, res.statusText, await res.text().catch(() => ''));
  return res;
}

/** What GET of a path gave: a directory's listing, or a file that is not read yet. */
export type Opened = { type: 'dir'; list: FileList } | { type: 'file'; res: Response; size: number; abort: () => void };

/**
 * GETs path (a symlink is followed by the server): a directory's listing, or a
 * file whose body the caller reads or drops (abort) after seeing its size.
 */
export async function open(name: string, path: string, user: string): Promise<Opened> {
  const ctl = new AbortController();
  const res = await send(filesURL(name, path, { user }), { signal: ctl.signal });
  if (res.headers.get('X-Subsys-File-Type') === 'dir') return { type: 'dir', list: (await res.json()) as FileList };
  const size = Number(res.headers.get('Content-Length') ?? NaN);
  return { type: 'file', res, size, abort: () => ctl.abort() };
}

/** A directory's listing. */
export async function listDir(name: string, path: string, user: string): Promise<FileList> {
  const o = await open(name, path, user);
  if (o.type === 'dir') return o.list;
  o.abort();
  throw new ApiError(400, 'not_a_directory', `${cleanPath(path)} is not a directory.`);
}

/** What the viewer shows of a file: its text, or why it is offered for download instead. */
export type Viewed = { text: string; size: number } | { text: null; size: number; why: 'large' | 'binary' };

/** Reads the file at path for the viewer: up to VIEW_MAX_BYTES, and only if it is text. */
export async function view(name: string, path: string, user: string): Promise<Viewed | { dir: true }> {
  const o = await open(name, path, user);
  if (o.type === 'dir') return { dir: true };
  if (o.size > VIEW_MAX_BYTES) {
    o.abort();
    return { text: null, size: o.size, why: 'large' };
  }
  // Read with a cap all the same: the length header may be absent, or wrong.
  const b = await readAtMost(o.res, VIEW_MAX_BYTES);
  if (b === null) {
    o.abort();
    return { text: null, size: o.size, why: 'large' };
  }
  const text = asText(b);
  return text === null ? { text: null, size: b.length, why: 'binary' } : { text, size: b.length };
}

/** The body of res if it is at most max bytes, else null (the rest is not read). */
async function readAtMost(res: Response, max: number): Promise<Uint8Array | null> {
  if (!res.body) return new Uint8Array(await res.arrayBuffer());
  const reader = res.body.getReader();
  const parts: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.length;
    if (n > max) {
      await reader.cancel().catch(() => {});
      return null;
    }
    parts.push(value);
  }
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** A file name safe to save as: no path separators or invisible characters. */
export function saveName(n: string): string {
  return n.replace(/[\u0000-\u001f\u007f-\u009f/\\]/g, '_').replace(/^\.+/, '_') || 'download';
}

/**
 * Downloads path (a file, or with archive a directory as .tar.gz): fetched with
 * the session header, as no cookie authorizes anything, into a Blob saved
 * through an object URL and a temporary <a download>.
 */
export async function download(name: string, path: string, user: string, archive = false): Promise<void> {
  const res = await send(filesURL(name, path, { user, archive: archive ? 'tar.gz' : undefined }));
  const blob = await res.blob();
  const base = baseName(path);
  const file = archive ? `${saveName(base || 'root')}.tar.gz` : saveName(base);
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = file;
  a.style.display = 'none';
  document.body.append(a);
  a.click();
  a.remove();
  // The download has its own copy once it started; a revoke at once can race it.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Makes the directory path (its parent must exist). */
export const mkdir = (name: string, path: string, user: string) =>
  request<FileInfo>('POST', filesURL(name, path, { user }), { action: 'mkdir', parents: false });

/** Renames path to the absolute path to; the server refuses to replace one (409 file_exists). */
export const rename = (name: string, path: string, to: string, user: string) =>
  request<FileInfo>('POST', filesURL(name, path, { user }), { action: 'rename', to });

/** Deletes path; a directory with everything in it when recursive. */
export const remove = (name: string, path: string, user: string, recursive: boolean) =>
  request<void>('DELETE', filesURL(name, path, { user, recursive: recursive ? '1' : undefined }));

export interface FileUpload {
  /** Resolves with what the server wrote, or rejects with an ApiError. */
  done: Promise<FileList>;
  abort(): void;
}

/**
 * Uploads file into the directory dir as a multipart POST with XMLHttpRequest,
 * which (unlike fetch) reports upload progress: onProgress(sent, total).
 */
export function upload(name: string, dir: string, user: string, file: File, onProgress: (sent: number, total: number) => void): FileUpload {
  const xhr = new XMLHttpRequest();
  const done = new Promise<FileList>((resolve, reject) => {
    const form = new FormData();
    form.append('file', file, file.name);
    xhr.open('POST', filesURL(name, dir, { user }));
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    // The multipart body is a little larger than the file: progress is of the body.
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded, e.total);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve(JSON.parse(xhr.responseText) as FileList);
        } catch {
          reject(new ApiError(xhr.status, 'bad_reply', 'The server answered with something that is not a file list.'));
        }
      } else {
        reject(parseError(xhr.status, xhr.statusText, xhr.responseText));
      }
    };
    xhr.onerror = () => reject(new ApiError(0, 'network', 'The upload failed: the connection to the server broke.'));
    xhr.onabort = () => reject(new ApiError(0, 'aborted', 'Upload cancelled.'));
    xhr.send(form);
  });
  return { done, abort: () => xhr.abort() };
}
