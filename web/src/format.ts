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
  const stem = base.replace(/\.(tar(\.(gz|zst|xz|bz2))?|tgz|tzst|txz)$/i, '');
  const clean = stem.replace(/[^a-zA-Z0-9._-]+/g, '-').replace(/^[^a-zA-Z0-9]+/, '');
  return clean.slice(0, 64);
}
