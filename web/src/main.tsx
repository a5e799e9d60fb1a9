import { render } from 'preact';
import './styles.css';
import { App } from './App';
import { loginFromURL } from './api';
import { connectEvents, live, loadSettings } from './store';
import { restoreTerminals, terminals } from './terminal';

// A login URL (#token=…) signs in first; the token leaves the address bar at once.
await loginFromURL();
connectEvents();
loadSettings();
// A login URL opened in a tab that is already here changes only the fragment.
window.addEventListener('hashchange', async () => {
  if (await loginFromURL()) {
    connectEvents();
    loadSettings();
  }
});
// Terminals this browser tab had open before a reload: reattach once we know
// which distros run (a session cannot outlive its distro).
restoreTerminals();
const unsub = live.subscribe((l) => {
  if (!l.loaded) return;
  unsub();
  for (const t of terminals.get()) if (t.status === 'idle' && !t.isVisible) t.connect();
});

render(<App />, document.getElementById('app')!);
