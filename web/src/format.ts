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
 * The utility VM's console bytes as text that shows every byte and drives
 * nothing: invalid UTF-8 becomes U+FFFD; control characters (but newline and
 * tab), DEL, C1 and the bidi and line-separator characters become visible
 * escapes (\x1b, \u202e), as the CLI prints them; CR LF becomes LF. The
 * result is meant for textContent (a <pre>), never for markup, so "<img …>"
 * stays text.
 */
export function consoleText(b: Uint8Array): string {
  const text = new TextDecoder('utf-8', { fatal: false }).decode(b).replace(/\r\n/g, '\n');
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => {
    const n = c.charCodeAt(0);
    return n < 0xa0 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
  });
}
