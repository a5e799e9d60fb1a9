// Address helpers for the ports panel and the portproxy page: shape checks for
// IP addresses and CIDR prefixes (the server has the last word), and host:port
// formatting.

export function isIPv4(s: string): boolean {
  const parts = s.split('.');
  return parts.length === 4 && parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && +p <= 255);
}

export function isIPv6(s: string): boolean {
  if (!/^[0-9a-fA-F:.]+$/.test(s) || s.length < 2) return false;
  let groups = s.split(':');
  // An IPv4 tail (::ffff:10.0.0.1) counts as two groups.
  const last = groups[groups.length - 1];
  let tail = 0;
  if (last.includes('.')) {
    if (!isIPv4(last)) return false;
    groups = groups.slice(0, -1);
    tail = 2;
    if (groups[groups.length - 1] === '') groups.push(''); // "::1.2.3.4" ends in an empty group
  }
  const s2 = groups.join(':');
  const halves = s2.split('::');
  if (halves.length > 2) return false;
  const count = (h: string) => (h === '' ? [] : h.split(':'));
  const parts = halves.flatMap(count);
  if (!parts.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return false;
  const n = parts.length + tail;
  return halves.length === 2 ? n <= 7 : n === 8;
}

export const isIP = (s: string) => isIPv4(s) || isIPv6(s);

/**
 * Parses a comma- (or space-) separated list of CIDR prefixes. A bare address
 * means that one host (/32 or /128). Returns the list, or a message saying what
 * is wrong with the first bad entry.
 */
export function parseCidrs(text: string): { cidrs: string[]; problem: '' } | { cidrs: null; problem: string } {
  const items = text
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);
  const cidrs: string[] = [];
  for (const it of items) {
    const [addr, bits, extra] = it.split('/');
    const v4 = isIPv4(addr);
    if (extra !== undefined || (!v4 && !isIPv6(addr))) {
      return { cidrs: null, problem: `“${it}” is not an address range: write one like 192.168.1.0/24 or fd00::/8.` };
    }
    const max = v4 ? 32 : 128;
    if (bits === undefined) {
      cidrs.push(`${addr}/${max}`);
      continue;
    }
    if (!/^[0-9]{1,3}$/.test(bits) || +bits > max) {
      return { cidrs: null, problem: `“${it}”: the prefix length after / must be 0–${max}.` };
    }
    cidrs.push(`${addr}/${+bits}`);
  }
  return { cidrs, problem: '' };
}

export const formatCidrs = (allow: string[] | null | undefined) => (allow ?? []).join(', ');

/** "127.0.0.1:8080", "[::1]:8080". */
export const hostPort = (addr: string, port: number) => (addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`);

/** Whether a bind address means every address of the host or distro. */
export const isWildcard = (addr: string) => addr === '0.0.0.0' || addr === '::' || addr === '';

/** Why s is not a port number (1–65535), or ''. */
export function portProblem(s: string): string {
  const t = s.trim();
  if (!t) return 'A port is required.';
  if (!/^[0-9]+$/.test(t) || +t < 1 || +t > 65535) return 'A port is a number from 1 to 65535.';
  return '';
}
