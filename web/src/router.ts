// Client-side routes on real paths (the server falls back to index.html for any
// path that is not a file or under /api):
//   /                              the distro list
//   /distros/NAME                  one distro
//   /distros/NAME/terminal?session=ID   a terminal (the session id lets a reload reattach)
//   /distros/NAME/files?path=/etc&user=U  a distro's files (user: absent is its default user)
//   /install                       the catalog: install a release or a tarball by URL
//   /portproxy                     portproxy rules
//   /vm                            the utility VM of version 2 distros
//   /settings
import { useEffect, useState } from 'preact/hooks';

export type Route =
  | { page: 'list' }
  | { page: 'distro'; name: string }
  | { page: 'terminal'; name: string; session: string }
  | { page: 'files'; name: string; path: string; user: string }
  | { page: 'settings' }
  | { page: 'install' }
  | { page: 'portproxy' }
  | { page: 'vm' }
  | { page: 'notfound'; path: string };

export function parseRoute(loc: { pathname: string; search: string }): Route {
  const parts = loc.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  const q = new URLSearchParams(loc.search);
  if (parts.length === 0) return { page: 'list' };
  if (parts[0] === 'settings' && parts.length === 1) return { page: 'settings' };
  if (parts[0] === 'install' && parts.length === 1) return { page: 'install' };
  if (parts[0] === 'portproxy' && parts.length === 1) return { page: 'portproxy' };
  if (parts[0] === 'vm' && parts.length === 1) return { page: 'vm' };
  if (parts[0] === 'distros' && parts.length === 2) return { page: 'distro', name: parts[1] };
  if (parts[0] === 'distros' && parts.length === 3 && parts[2] === 'terminal')
    return { page: 'terminal', name: parts[1], session: q.get('session') ?? '' };
  if (parts[0] === 'distros' && parts.length === 3 && parts[2] === 'files')
    return { page: 'files', name: parts[1], path: q.get('path') || '/', user: q.get('user') ?? '' };
  return { page: 'notfound', path: loc.pathname };
}

export const distroHref = (name: string) => `/distros/${encodeURIComponent(name)}`;
export const terminalHref = (name: string, session = '') =>
  `/distros/${encodeURIComponent(name)}/terminal${session ? `?session=${encodeURIComponent(session)}` : ''}`;

/** The files page of distro name at path, as user ('' for its default user); "/" stays readable. */
export function filesHref(name: string, path = '/', user = ''): string {
  const q = `path=${encodeURIComponent(path).replace(/%2F/g, '/')}${user ? `&user=${encodeURIComponent(user)}` : ''}`;
  return `/distros/${encodeURIComponent(name)}/files?${q}`;
}

const listeners = new Set<() => void>();
window.addEventListener('popstate', () => listeners.forEach((l) => l()));

export function navigate(href: string, opts: { replace?: boolean } = {}) {
  if (href === location.pathname + location.search) return;
  if (opts.replace) history.replaceState(null, '', href);
  else history.pushState(null, '', href);
  listeners.forEach((l) => l());
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location));
  useEffect(() => {
    const l = () => setRoute(parseRoute(location));
    listeners.add(l);
    return () => listeners.delete(l);
  }, []);
  return route;
}

/** Click handler for same-app links: plain clicks navigate without a reload. */
export function onLinkClick(e: MouseEvent) {
  const a = (e.currentTarget as HTMLElement).closest('a');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  if (a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/api/')) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
}
