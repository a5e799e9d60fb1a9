// The shell around every page: header with navigation and the live-connection
// indicator, the routes, dialogs and toasts.
import { useEffect, useState } from 'preact/hooks';
import { errorMessage, login } from './api';
import { onLinkClick, terminalHref, useRoute, type Route } from './router';
import { connectEvents, live, loadSettings, signOut, useStore, type Connection } from './store';
import { terminals } from './terminal';
import { AskHost, Icon, ToastHost } from './ui';
import { Dashboard } from './pages/Dashboard';
import { DistroPage } from './pages/DistroPage';
import { FilesPage } from './pages/FilesPage';
import { InstallPage } from './pages/InstallPage';
import { PortProxyPage } from './pages/PortProxyPage';
import { SettingsPage } from './pages/SettingsPage';
import { TerminalPage } from './pages/TerminalPage';
import { VMPage } from './pages/VMPage';

export function App() {
  const route = useRoute();
  const l = useStore(live);
  const terms = useStore(terminals);

  useEffect(() => {
    document.title = titleOf(route);
  }, [route]);

  if (l.conn.state === 'unauthorized') return <SignIn />;

  const firstTerm = terms.find((t) => t.sessionId);
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="topbar">
        <a class="brand" href="/" onClick={onLinkClick} aria-label="subsys home">
          <Logo />
          <span>subsys</span>
        </a>
        <nav class="nav" aria-label="Main">
          <a href="/" onClick={onLinkClick} aria-current={route.page === 'list' || route.page === 'distro' || route.page === 'files' ? 'page' : undefined}>
            <Icon name="list" />
            <span>Distros</span>
          </a>
          <a href="/install" onClick={onLinkClick} aria-current={route.page === 'install' ? 'page' : undefined}>
            <Icon name="package" />
            <span>Install</span>
          </a>
          {firstTerm && (
            <a
              href={terminalHref(firstTerm.distro, firstTerm.sessionId)}
              onClick={onLinkClick}
              aria-current={route.page === 'terminal' ? 'page' : undefined}
            >
              <Icon name="terminal" />
              <span>Terminals</span>
              <span class="count">{terms.length}</span>
            </a>
          )}
          <a href="/portproxy" onClick={onLinkClick} aria-current={route.page === 'portproxy' ? 'page' : undefined}>
            <Icon name="proxy" />
            <span>Port proxy</span>
          </a>
          <a href="/vm" onClick={onLinkClick} aria-current={route.page === 'vm' ? 'page' : undefined}>
            <Icon name="vm" />
            <span>VM</span>
          </a>
          <a href="/settings" onClick={onLinkClick} aria-current={route.page === 'settings' ? 'page' : undefined}>
            <Icon name="settings" />
            <span>Settings</span>
          </a>
        </nav>
        <ConnIndicator c={l.conn} />
        <button type="button" class="btn btn-ghost signout" onClick={() => signOut()} title="End this browser's session">
          Sign out
        </button>
      </header>
      {(l.conn.state === 'offline' || (l.conn.state === 'reconnecting' && Date.now() - l.conn.since > 3000)) && (
        <div class="banner" role="status">
          {l.conn.state === 'offline' ? l.conn.message : 'Lost the connection to the server; reconnecting…'}
        </div>
      )}
      <Page route={route} />
      <AskHost />
      <ToastHost />
    </>
  );
}

function Page({ route }: { route: Route }) {
  switch (route.page) {
    case 'list':
      return <Dashboard />;
    case 'distro':
      return <DistroPage name={route.name} />;
    case 'terminal':
      return <TerminalPage name={route.name} session={route.session} />;
    case 'files':
      return <FilesPage name={route.name} path={route.path} user={route.user} />;
    case 'settings':
      return <SettingsPage />;
    case 'install':
      return <InstallPage />;
    case 'portproxy':
      return <PortProxyPage />;
    case 'vm':
      return <VMPage />;
    default:
      return (
        <main class="page" id="main">
          <div class="card empty">
            <h1>Nothing here</h1>
            <p class="muted mono">{route.path}</p>
            <a class="btn" href="/" onClick={onLinkClick}>
              All distros
            </a>
          </div>
        </main>
      );
  }
}

function titleOf(r: Route): string {
  switch (r.page) {
    case 'distro':
      return `${r.name} · subsys`;
    case 'terminal':
      return `Terminal · ${r.name} · subsys`;
    case 'files':
      return `Files · ${r.name} · subsys`;
    case 'settings':
      return 'Settings · subsys';
    case 'install':
      return 'Install · subsys';
    case 'portproxy':
      return 'Port proxy · subsys';
    case 'vm':
      return 'Utility VM · subsys';
    default:
      return 'subsys';
  }
}

function ConnIndicator({ c }: { c: Connection }) {
  const [cls, text, title] =
    c.state === 'live'
      ? ['ok', 'Live', 'Receiving live updates from the server']
      : c.state === 'connecting'
        ? ['wait', 'Connecting', 'Connecting to the server']
        : c.state === 'reconnecting'
          ? ['wait', 'Reconnecting', 'The event stream dropped; reconnecting']
          : ['bad', 'Offline', 'message' in c ? c.message : ''];
  return (
    <span class={`conn conn-${cls}`} title={title} role="status" aria-label={`Server connection: ${text}`}>
      <span class="conn-dot" aria-hidden="true" />
      <span class="conn-text">{text}</span>
    </span>
  );
}

function Logo() {
  return (
    <svg width="26" height="26" viewBox="0 0 32 32" aria-hidden="true">
      <rect width="32" height="32" rx="7" class="logo-bg" />
      <path d="M8 11l6 5-6 5" fill="none" stroke="#fff" stroke-width="3" stroke-linecap="round" stroke-linejoin="round" />
      <path d="M16 22h8" stroke="#9be3c9" stroke-width="3" stroke-linecap="round" />
    </svg>
  );
}

/**
 * Not signed in: explain the login URL, or take the token by hand. The token is
 * traded for a session by script (POST /api/v1/login), never sent in a URL.
 */
function SignIn() {
  const l = useStore(live);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const onSubmit = async (e: Event) => {
    e.preventDefault();
    const input = (e.currentTarget as HTMLFormElement).elements.namedItem('token') as HTMLInputElement;
    setBusy(true);
    setError('');
    try {
      await login(input.value);
      input.value = '';
      connectEvents();
      loadSettings();
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  };
  const message = error || (l.conn.state === 'unauthorized' && l.conn.message === 'Signed out.' ? 'Signed out.' : '');
  return (
    <main class="signin" id="main">
      <form class="card signin-card" onSubmit={onSubmit}>
        <div class="brand big">
          <Logo />
          <span>subsys</span>
        </div>
        <h1>Sign in</h1>
        <p>
          Run <code>subsys dashboard</code> for a login link, or paste the token from the data directory
          (<code>/var/lib/subsys/token</code> as root, else <code>~/.local/share/subsys/token</code>).
        </p>
        {message && (
          <p class={error ? 'error' : 'muted'} role={error ? 'alert' : 'status'}>
            {message}
          </p>
        )}
        <label class="field">
          <span class="field-label">Token</span>
          <input type="password" name="token" required autocomplete="current-password" autoFocus />
        </label>
        <div class="form-actions">
          <button type="submit" class="btn btn-primary" disabled={busy}>
            Sign in
          </button>
        </div>
      </form>
    </main>
  );
}
