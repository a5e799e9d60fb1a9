import { render } from 'preact';
import './styles.css';
import { App } from './App';
import { connectEvents, live, loadSettings } from './store';
import { restoreTerminals, terminals } from './terminal';

connectEvents();
loadSettings();
// Terminals this browser tab had open before a reload: reattach once we know
// which distros run (a session cannot outlive its distro).
restoreTerminals();
const unsub = live.subscribe((l) => {
  if (!l.loaded) return;
  unsub();
  for (const t of terminals.get()) if (t.status === 'idle' && !t.isVisible) t.connect();
});

render(<App />, document.getElementById('app')!);
