const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function bytes(n: number | undefined): string {
  if (n === undefined || n === null || !isFinite(n)) return '—';
  let i = 0;
  let v = n;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${UNITS[i]}`;
}

export function percent(n: number | undefined): string {
  if (n === undefined || n === null || !isFinite(n)) return '—';
  return `${n < 10 ? n.toFixed(1) : Math.round(n)}%`;
}

export function ago(iso: string | undefined): string {
  if (!iso) return '—';
  const t = Date.parse(iso);
  if (!isFinite(t)) return '—';
  const s = Math.max(0, (Date.now() - t) / 1000);
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(t).toLocaleDateString();
}

export function dateTime(iso: string | undefined): string {
  if (!iso) return '—';
  const t = Date.parse(iso);
  return isFinite(t) ? new Date(t).toLocaleString() : '—';
}

export function duration(s: number): string {
  if (s < 60) return `${s} s`;
  if (s % 3600 === 0) return `${s / 3600} h`;
  if (s % 60 === 0) return `${s / 60} min`;
  return `${Math.floor(s / 60)} min ${s % 60} s`;
}

/** A distro name from a tarball's file name: "debian-12.tar.zst" → "debian-12". */
export function nameFromFile(file: string): string {
  const base = file.replace(/^.*[\\/]/, '');
  const stem = base.replace(/\.(tar(\.(gz|zst|xz|bz2))?|tgz|tzst|txz|img)$/i, '');
  const clean = stem.replace(/[^a-zA-Z0-9._-]+/g, '-').replace(/^[^a-zA-Z0-9]+/, '');
  return clean.slice(0, 64);
}

/** How long ago iso was, as an uptime: "3 h 12 min", "45 s". */
export function uptime(iso: string | undefined, now = Date.now()): string {
  if (!iso) return '—';
  const t = Date.parse(iso);
  if (!isFinite(t)) return '—';
  let s = Math.max(0, Math.floor((now - t) / 1000));
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${s} s`;
  return `${s} s`;
}

const SIZE_UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/**
 * Bytes from a size as people write it: "256G", "512 MiB", "1.5T", or plain
 * bytes; binary units, as the CLI's --size. NaN when it is not one.
 */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$/i.exec(text);
  if (!m) return NaN;
  const n = Math.floor(parseFloat(m[1]) * SIZE_UNITS[m[2].toUpperCase()]);
  return n > 0 ? n : NaN;
}

/**
 * A size as parseSize reads it, as short as it is exact: 68719476736 → "64G",
 * 536870912 → "512M", 1000 → "1000".
 */
export function sizeText(n: number): string {
  for (const u of ['T', 'G', 'M', 'K']) {
    const m = SIZE_UNITS[u];
    if (n >= m && n % m === 0) return `${n / m}${u}`;
  }
  return String(n);
}

/** The bounds of a version 2 disk (the server's): 64 MiB to 8 TiB. */
export const DISK_MIN_BYTES = 64 * 2 ** 20;
export const DISK_MAX_BYTES = 8 * 2 ** 40;

/**
 * Why text is not a new disk size for a distro whose disk is current bytes,
 * or '' when it is one. A running distro's disk only grows.
 */
export function diskSizeProblem(text: string, current: number, running: boolean, name: string): string {
  if (!text.trim()) return 'A size is required, such as 64G or 512M.';
  const n = parseSize(text);
  if (!(n > 0)) return 'Not a size: write one such as 64G, 512M or 1.5T, or a number of bytes.';
  if (n < DISK_MIN_BYTES) return `Too small: a disk is at least ${bytes(DISK_MIN_BYTES)}.`;
  if (n > DISK_MAX_BYTES) return `Too large: a disk is at most ${bytes(DISK_MAX_BYTES)}.`;
  const rounded = n - (n % 4096);
  if (current > 0 && rounded === current) return `That is its size already (${bytes(current)}).`;
  if (running && current > 0 && rounded < current)
    return `${name} is running, and a running distro's disk can only grow. Stop it first to shrink the disk below ${bytes(current)}.`;
  return '';
}

/** Why text is not a directory to move a distro at current into, or '' when it is one. */
export function locationProblem(text: string, current: string): string {
  const p = text.trim();
  if (!p) return 'A directory is required, such as /srv/subsys/name.';
  if (!p.startsWith('/')) return 'Give an absolute path, starting with / (such as /srv/subsys/name).';
  if (/[\u0000-\u001f\u007f]/.test(p)) return 'The path holds a control character.';
  const clean = p.replace(/\/+$/, '') || '/';
  if (clean === '/') return 'Not / itself: give a directory for this distro alone.';
  const cur = current.replace(/\/+$/, '');
  if (clean === cur) return 'The distro is there already.';
  if (cur && clean.startsWith(cur + '/')) return 'Not inside its own directory: give one outside it.';
  return '';
}

/**
 * The utility VM's console bytes as text that shows every byte and drives
 * nothing: invalid UTF-8 becomes U+FFFD; control characters (but newline and
 * tab), DEL, C1 and the bidi and line-separator characters become visible
 * escapes (\x1b, \u202e), as the CLI prints them; CR LF becomes LF. The
 * result is meant for textContent (a <pre>), never for markup, so "<img …>"
 * stays text.
 */
export function consoleText(b: Uint8Array): string {
  return visibleText(new TextDecoder('utf-8', { fatal: false }).decode(b));
}

/** What escapeChar turns into a visible escape: controls, DEL, C1, bidi and line separators. */
const INVISIBLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** One invisible character as the CLI prints it: \x1b, \u202e. */
function escapeChar(c: string): string {
  const n = c.charCodeAt(0);
  return n < 0xa0 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
}

/**
 * Text from a distro (a file's contents, the console) with every invisible
 * character but newline and tab shown as an escape, CR LF as LF; for
 * textContent, never markup.
 */
export function visibleText(text: string): string {
  return text.replace(/\r\n/g, '\n').replace(INVISIBLE, (c) => (c === '\n' || c === '\t' ? c : escapeChar(c)));
}

/**
 * A name from a distro (a file name, a user) on one line: every invisible
 * character, newline and tab included, shown as an escape, so a name cannot
 * fake another line, reorder what follows it or drive a terminal.
 */
export function visibleName(name: string): string {
  return name.replace(INVISIBLE, escapeChar);
}
