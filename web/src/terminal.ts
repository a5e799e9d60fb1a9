// Terminal sessions in the browser: xterm.js on the terminal websocket
// (GET /api/v1/distros/NAME/terminal). Binary frames carry bytes both ways, text
// frames JSON control. Output is acknowledged once xterm has rendered it
// ({"type":"ack","bytes":N}), so a flood (`yes`) cannot outrun the page: the
// server stops reading the pty while too much is unacknowledged, and Ctrl-C
// (a plain 0x03 byte) stays a few frames away from the shell. Acknowledging is
// opt-in (a client that sends none is paced by TCP alone): the page opts in with
// {"type":"ack","bytes":0} as its first frame.
//
// Sessions outlive the page: the id is kept in the URL (?session=ID) and in
// sessionStorage, and a reload reattaches; the server replays recent output.
// Only the visible terminal holds a WebGL context; hidden ones (other tabs, a
// hidden page) render nothing and keep just their buffer.
import { Terminal, type ITheme } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { WebglAddon } from '@xterm/addon-webgl';
import '@xterm/xterm/css/xterm.css';
import { api, ApiError, distroPath, ticket } from './api';
import { distroByName, live, settings, Store } from './store';

export type TermStatus =
  | 'idle' // created, not connected yet
  | 'connecting'
  | 'open'
  | 'reconnecting'
  | 'exited' // the program ended (exitCode)
  | 'detached' // attached from another window
  | 'ended' // the session is gone (timed out, killed, distro stopped)
  | 'error';

export interface TermOptions {
  distro: string;
  session?: string;
  user?: string;
  cwd?: string;
  command?: string;
}

/** Acknowledge at least this often while output streams in. */
const ACK_BATCH = 64 << 10;
/** ...and this long after output stops. */
const ACK_IDLE_MS = 20;
const MAX_RETRIES = 8;
/** Largest piece handed to xterm at once (see output). */
const WRITE_SLICE = 4 << 10;
/**
 * Slices handed to xterm at once. The rest waits in our own queue, which (unlike
 * xterm's) can be dropped: Ctrl-C flushes it, as the kernel's tty flushes its
 * output queue on an interrupt, so the prompt shows at once even when the page
 * renders slowly.
 */
const MAX_IN_FLIGHT = 4;
const STORAGE_KEY = 'subsys.terminals';

const encoder = new TextEncoder();

const DARK: ITheme = {
  background: '#0f1417',
  foreground: '#dfe7e4',
  cursor: '#7ee0bd',
  cursorAccent: '#0f1417',
  selectionBackground: '#2f5f52',
  black: '#1b2226',
  red: '#ff7b72',
  green: '#7ee0a1',
  yellow: '#e8c468',
  blue: '#79b8ff',
  magenta: '#d2a8ff',
  cyan: '#6fd6dc',
  white: '#c9d1d9',
  brightBlack: '#6e7b82',
  brightRed: '#ffa198',
  brightGreen: '#a6f0c0',
  brightYellow: '#f2d98d',
  brightBlue: '#a5d0ff',
  brightMagenta: '#e2c5ff',
  brightCyan: '#9eeaee',
  brightWhite: '#f0f6fc',
};
const LIGHT: ITheme = {
  background: '#fbfcfb',
  foreground: '#1d2528',
  cursor: '#1f6f5c',
  cursorAccent: '#fbfcfb',
  selectionBackground: '#bfe3d6',
  black: '#1d2528',
  red: '#c4302b',
  green: '#1a7f37',
  yellow: '#8a6100',
  blue: '#0b5cad',
  magenta: '#8250df',
  cyan: '#0f7b83',
  white: '#6e7781',
  brightBlack: '#57606a',
  brightRed: '#d8473f',
  brightGreen: '#2da44e',
  brightYellow: '#a37500',
  brightBlue: '#2f7bd9',
  brightMagenta: '#a475f9',
  brightCyan: '#1b9aa3',
  brightWhite: '#8c959f',
};

const darkQuery = window.matchMedia('(prefers-color-scheme: dark)');
const theme = () => (darkQuery.matches ? DARK : LIGHT);

/** WebGL2 failed to start once: use the DOM renderer from then on. */
let webglUnavailable = false;

/** Where hidden terminals wait, out of the layout (xterm pauses rendering them). */
let parking: HTMLDivElement | null = null;
function park(el: HTMLElement) {
  if (!parking) {
    parking = document.createElement('div');
    parking.className = 'term-parking';
    parking.setAttribute('aria-hidden', 'true');
    document.body.appendChild(parking);
  }
  parking.appendChild(el);
}

/** Scrollback in lines from the byte budget in settings (about 100 bytes a line). */
function scrollbackLines(): number {
  const b = settings.get()?.scrollback_bytes ?? 1 << 20;
  return Math.max(1000, Math.min(100_000, Math.round(b / 100)));
}

let seq = 0;

export class TermSession {
  readonly key = `t${++seq}`;
  readonly distro: string;
  sessionId: string;
  status: TermStatus = 'idle';
  exitCode: number | null = null;
  message = '';
  title = '';
  renderer: 'webgl' | 'dom' = 'dom';
  bytesIn = 0;
  bytesAcked = 0;
  readonly term: Terminal;
  readonly el: HTMLDivElement;
  private readonly opts: TermOptions;
  private readonly fit = new FitAddon();
  private webgl: WebglAddon | null = null;
  private opened = false;
  private visible = false;
  /** Recreated from sessionStorage after a reload; shown since? */
  restored = false;
  private shown = false;
  /** The size has been measured on screen (until then cols×rows is xterm's 80×24). */
  private fitted = false;
  private ws: WebSocket | null = null;
  private gen = 0;
  private rendered = 0;
  private pendingWrites = 0;
  private queue: Uint8Array[] = [];
  private inFlight = 0;
  private ackTimer = 0;
  private retries = 0;
  private retryTimer = 0;
  private fitFrame = 0;
  private readonly resizeObserver: ResizeObserver;
  private readonly listeners = new Set<() => void>();

  constructor(opts: TermOptions) {
    this.opts = opts;
    this.distro = opts.distro;
    this.sessionId = opts.session ?? '';
    this.el = document.createElement('div');
    this.el.className = 'term-host';
    this.term = new Terminal({
      theme: theme(),
      fontFamily: '"DejaVu Sans Mono", "Cascadia Mono", "SF Mono", Menlo, Consolas, "Liberation Mono", monospace',
      fontSize: 14,
      lineHeight: 1.1,
      cursorBlink: true,
      scrollback: scrollbackLines(),
      allowProposedApi: false,
      macOptionIsMeta: true,
      rightClickSelectsWord: true,
    });
    this.term.loadAddon(this.fit);
    this.term.onData((d) => {
      if (d.includes('\x03')) this.flushOutput();
      this.send(encoder.encode(d));
    });
    this.term.onBinary((d) => this.send(Uint8Array.from(d, (c) => c.charCodeAt(0) & 0xff)));
    this.term.onResize(({ cols, rows }) => this.control({ type: 'resize', cols, rows }));
    this.term.onTitleChange((t) => {
      this.title = t;
      this.emit();
    });
    // Ctrl-C is input (0x03) like any key. Ctrl-Shift-C copies the selection;
    // Ctrl-Shift-V is left to the browser, whose paste event xterm handles.
    this.term.attachCustomKeyEventHandler((e) => {
      if (!e.ctrlKey || !e.shiftKey || e.altKey || e.metaKey) return true;
      if (e.code === 'KeyC') {
        if (e.type === 'keydown') {
          e.preventDefault();
          this.copy();
        }
        return false;
      }
      if (e.code === 'KeyV') return false;
      return true;
    });
    this.resizeObserver = new ResizeObserver(() => this.scheduleFit());
  }

  // ---- observers ----

  subscribe(l: () => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  private emit() {
    for (const l of [...this.listeners]) l();
    terminals.set([...terminals.get()]);
    persist();
  }

  // ---- showing and hiding ----

  /** Puts the terminal into parent, with WebGL if it works, and focuses it. */
  show(parent: HTMLElement) {
    parent.appendChild(this.el);
    this.visible = true;
    this.shown = true;
    if (!this.opened) {
      this.term.open(this.el);
      this.opened = true;
    }
    this.resizeObserver.observe(this.el);
    this.enableWebgl();
    this.fitNow();
    this.term.focus();
  }

  hide() {
    if (!this.visible) return;
    this.visible = false;
    this.resizeObserver.unobserve(this.el);
    this.disableWebgl();
    park(this.el);
  }

  get isVisible() {
    return this.visible;
  }

  enableWebgl() {
    if (this.webgl || !this.visible || !this.opened || document.hidden || webglUnavailable) return;
    try {
      const gl = new WebglAddon();
      gl.onContextLoss(() => {
        // The GPU took the context back: fall back to the DOM renderer; the
        // next show tries WebGL again.
        gl.dispose();
        if (this.webgl === gl) this.webgl = null;
        this.renderer = 'dom';
        this.emit();
      });
      this.term.loadAddon(gl);
      this.webgl = gl;
      this.renderer = 'webgl';
    } catch {
      webglUnavailable = true;
      this.renderer = 'dom';
    }
  }

  disableWebgl() {
    if (!this.webgl) return;
    const gl = this.webgl;
    this.webgl = null;
    try {
      gl.dispose();
    } catch {
      // already gone with its context
    }
    this.renderer = 'dom';
  }

  private scheduleFit() {
    cancelAnimationFrame(this.fitFrame);
    this.fitFrame = requestAnimationFrame(() => this.fitNow());
  }

  fitNow() {
    if (!this.visible || !this.opened || this.el.clientWidth === 0 || this.el.clientHeight === 0) return;
    try {
      this.fit.fit();
      this.fitted = true;
    } catch {
      // not measurable yet (fonts, layout); the observer calls again
    }
  }

  setTheme() {
    this.term.options.theme = theme();
  }

  focus() {
    this.term.focus();
  }

  // ---- the websocket ----

  /** Connects (or reconnects); with a session id it reattaches. */
  async connect() {
    clearTimeout(this.retryTimer);
    const gen = ++this.gen;
    this.ws?.close();
    this.ws = null;
    this.exitCode = null;
    this.message = '';
    this.setStatus(this.status === 'reconnecting' ? 'reconnecting' : 'connecting');

    if (this.sessionId) {
      // A session cannot outlive its distro, and reattaching must not start a
      // stopped distro: check the state first.
      const d = await distroState(this.distro);
      if (gen !== this.gen) return;
      if (d === 'missing') return this.end(`There is no distro named ${this.distro} any more.`);
      if (d !== 'Running') return this.end(`${this.distro} is not running, so session ${this.sessionId.slice(0, 8)} has ended.`);
      // Ask whether the session is still there: a websocket refused with 404
      // tells the page nothing (and logs an error in the console).
      try {
        const s = (await api.terminals(this.distro)).find((x) => x.id === this.sessionId);
        if (gen !== this.gen) return;
        if (!s) return this.end('This session has ended or timed out.');
        if (s.exited) {
          this.exitCode = s.exit_code;
          return this.setStatus('exited');
        }
      } catch {
        // the connection attempt below tells
      }
    }

    // A terminal reattached in the background (never shown) does not know its
    // size: leave the session's as it is until it is shown and fitted.
    const q = new URLSearchParams();
    if (this.fitted || !this.sessionId) {
      q.set('cols', String(this.term.cols));
      q.set('rows', String(this.term.rows));
    }
    if (this.sessionId) q.set('session', this.sessionId);
    else {
      if (this.opts.user) q.set('user', this.opts.user);
      if (this.opts.cwd) q.set('cwd', this.opts.cwd);
      if (this.opts.command) q.set('command', this.opts.command);
    }
    // A websocket cannot send our header: it presents a single-use ticket.
    try {
      q.set('ticket', await ticket());
    } catch (e) {
      if (gen !== this.gen) return;
      if (e instanceof ApiError && e.status === 401) return this.end('Signed out: sign in again to reattach.');
      q.set('ticket', '');
    }
    if (gen !== this.gen) return;
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${distroPath(this.distro)}/terminal?${q}`;
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.rendered = 0;
    this.pendingWrites = 0;
    this.queue = [];
    let gotSession = false;
    const reattach = !!this.sessionId;
    // The opt-in goes first, so acks pace the output from (almost) its first
    // byte and socket buffers cannot queue megabytes in front of a Ctrl-C. The
    // server counts every byte since the socket opened, so bytes that arrive
    // before it reads the opt-in are acknowledged like the rest.
    ws.onopen = () => ws.send(JSON.stringify({ type: 'ack', bytes: 0 }));

    ws.onmessage = (e) => {
      if (gen !== this.gen) return;
      if (typeof e.data === 'string') {
        let msg: { type?: string; id?: string; code?: number; error?: { code: string; message: string } };
        try {
          msg = JSON.parse(e.data);
        } catch {
          return;
        }
        switch (msg.type) {
          case 'session':
            gotSession = true;
            // Reattaching: the server replays recent output; start from a clean
            // screen so it is not shown twice.
            if (reattach) this.term.reset();
            this.sessionId = msg.id ?? this.sessionId;
            this.retries = 0;
            this.setStatus('open');
            // The size may have changed while we were away.
            if (this.fitted) this.control({ type: 'resize', cols: this.term.cols, rows: this.term.rows });
            break;
          case 'exit':
            this.exitCode = msg.code ?? 0;
            this.term.write(`\r\n\x1b[2m[process exited with code ${this.exitCode}]\x1b[0m\r\n`);
            this.setStatus('exited');
            break;
          case 'error':
            this.message = msg.error?.message ?? 'The server reported an error.';
            this.setStatus('error');
            break;
        }
        return;
      }
      this.output(new Uint8Array(e.data as ArrayBuffer), gen);
    };
    ws.onclose = (e) => {
      if (gen !== this.gen) return;
      this.ws = null;
      this.closed(e, gotSession);
    };
  }

  private output(frame: Uint8Array, gen: number) {
    this.bytesIn += frame.length;
    // xterm yields to the page between chunks, not inside one: feed a big frame
    // in slices so a flood cannot hold the main thread for long.
    for (let off = 0; off < frame.length; off += WRITE_SLICE) {
      this.queue.push(frame.subarray(off, off + WRITE_SLICE));
    }
    this.pump(gen);
  }

  /** Hands queued output to xterm, a few slices at a time. */
  private pump(gen: number) {
    while (this.inFlight < MAX_IN_FLIGHT && this.queue.length > 0 && gen === this.gen) {
      this.write(this.queue.shift()!, gen);
    }
  }

  private write(data: Uint8Array, gen: number) {
    this.pendingWrites++;
    this.inFlight++;
    this.term.write(data, () => {
      this.pendingWrites--;
      this.inFlight--;
      if (gen !== this.gen) return; // an old connection's bytes: not this server's to count
      this.rendered += data.length;
      if (this.rendered >= ACK_BATCH) this.ack();
      else if (this.pendingWrites === 0 && this.queue.length === 0) {
        clearTimeout(this.ackTimer);
        this.ackTimer = window.setTimeout(() => this.ack(), ACK_IDLE_MS);
      }
      this.pump(gen);
    });
  }

  /**
   * Drops output that arrived but is not on screen yet (an interrupt's flush) and
   * acknowledges it, so the server sends what follows the interrupt at once.
   */
  private flushOutput() {
    let n = 0;
    for (const q of this.queue) n += q.length;
    this.queue = [];
    if (n > 0) {
      this.rendered += n;
      this.ack();
    }
  }

  private ack() {
    clearTimeout(this.ackTimer);
    if (this.rendered > 0 && this.control({ type: 'ack', bytes: this.rendered })) {
      this.bytesAcked += this.rendered;
      this.rendered = 0;
    }
  }

  private async closed(e: CloseEvent, gotSession: boolean) {
    if (this.status === 'exited') return;
    if (this.status === 'error') return;
    if (e.reason === 'attached elsewhere') {
      this.message = 'This session was opened in another window.';
      return this.setStatus('detached');
    }
    if (!this.sessionId) {
      // Refused before a session existed: the upgrade failed with an HTTP error
      // the browser does not show us. Ask the API what is wrong.
      this.message = await explainFailure(this.distro);
      return this.setStatus('error');
    }
    const state = await distroState(this.distro);
    if (state !== 'Running') {
      return this.end(
        state === 'missing' ? `${this.distro} was unregistered.` : `${this.distro} stopped, and the session with it.`,
      );
    }
    if (!gotSession) {
      try {
        const list = await api.terminals(this.distro);
        const s = list.find((t) => t.id === this.sessionId);
        if (!s) return this.end('This session has ended or timed out.');
        if (s.exited) {
          this.exitCode = s.exit_code;
          return this.setStatus('exited');
        }
      } catch {
        // fall through to retrying
      }
    }
    if (this.retries >= MAX_RETRIES) {
      this.message = 'The connection keeps failing.';
      return this.setStatus('error');
    }
    const delay = Math.min(500 * 2 ** this.retries, 10_000);
    this.retries++;
    this.message = 'Connection lost; reconnecting…';
    this.setStatus('reconnecting');
    this.retryTimer = window.setTimeout(() => this.connect(), delay);
  }

  private end(message: string) {
    this.message = message;
    this.setStatus('ended');
    // Restored after a reload and never looked at: nothing to show, just go.
    if (this.restored && !this.shown) closeTerminal(this);
  }

  private setStatus(s: TermStatus) {
    this.status = s;
    this.emit();
  }

  private send(b: Uint8Array<ArrayBuffer>) {
    if (this.ws?.readyState === WebSocket.OPEN && this.status === 'open') this.ws.send(b);
  }

  /** Sends a control frame; false when the socket is not open. */
  private control(msg: object): boolean {
    if (this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  /** Types text as if pasted (bracketed paste when the program asked for it). */
  paste(text: string) {
    this.term.paste(text);
    this.term.focus();
  }

  /** Sends raw input bytes, e.g. 0x03 for the Ctrl-C button. */
  input(s: string) {
    if (s.includes('\x03')) this.flushOutput();
    this.send(encoder.encode(s));
    this.term.focus();
  }

  copy(): boolean {
    const sel = this.term.getSelection();
    if (!sel) return false;
    navigator.clipboard?.writeText(sel).catch(() => {});
    return true;
  }

  get connected() {
    return this.status === 'open' || this.status === 'connecting' || this.status === 'reconnecting';
  }

  /** Drops the websocket; the session lives on in the server until its timeout. */
  disconnect() {
    this.gen++;
    clearTimeout(this.retryTimer);
    this.ws?.close(1000, 'closed');
    this.ws = null;
  }

  dispose() {
    this.disconnect();
    this.disableWebgl();
    this.resizeObserver.disconnect();
    this.term.dispose();
    this.el.remove();
  }

  /** The buffer's text, last lines first trimmed: for tests and debugging. */
  text(maxLines = 1000): string {
    const b = this.term.buffer.active;
    const out: string[] = [];
    for (let i = Math.max(0, b.length - maxLines); i < b.length; i++) {
      out.push(b.getLine(i)?.translateToString(true) ?? '');
    }
    while (out.length && out[out.length - 1] === '') out.pop();
    return out.join('\n');
  }
}

type DistroState = string | 'missing';

/** The distro's state, from live state once loaded, else from the API. */
async function distroState(name: string): Promise<DistroState> {
  const l = live.get();
  if (l.loaded && l.conn.state === 'live') return distroByName(l, name)?.state ?? 'missing';
  try {
    return (await api.getDistro(name)).state;
  } catch (e) {
    return (e as { status?: number }).status === 404 ? 'missing' : 'Running';
  }
}

async function explainFailure(name: string): Promise<string> {
  try {
    const d = await api.getDistro(name);
    if (d.state !== 'Running' && d.state !== 'Stopped') return `${name} is ${d.state.toLowerCase()}; try again when it is done.`;
    return `Could not open a terminal in ${name}: the server refused the connection (see its log).`;
  } catch (e) {
    return (e as Error).message;
  }
}

// ---- the open terminals of this browser tab -------------------------------------

export const terminals = new Store<TermSession[]>([]);

export function openTerminal(opts: TermOptions): TermSession {
  const t = new TermSession(opts);
  terminals.set([...terminals.get(), t]);
  return t;
}

export function findTerminal(distro: string, session: string): TermSession | undefined {
  return terminals.get().find((t) => t.distro === distro && t.sessionId === session);
}

export function closeTerminal(t: TermSession) {
  t.dispose();
  terminals.set(terminals.get().filter((x) => x !== t));
  persist();
}

function persist() {
  const keep = terminals
    .get()
    .filter((t) => t.sessionId && t.status !== 'exited' && t.status !== 'ended')
    .map((t) => ({ distro: t.distro, session: t.sessionId }));
  try {
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify(keep));
  } catch {
    // storage full or disabled: the URL still has the session
  }
}

/** After a reload: recreate this tab's terminals (not connected until shown or asked). */
export function restoreTerminals() {
  let saved: { distro: string; session: string }[] = [];
  try {
    saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY) ?? '[]');
  } catch {
    return;
  }
  for (const s of saved) {
    if (typeof s?.distro === 'string' && typeof s?.session === 'string' && !findTerminal(s.distro, s.session)) {
      openTerminal({ distro: s.distro, session: s.session }).restored = true;
    }
  }
}

darkQuery.addEventListener('change', () => terminals.get().forEach((t) => t.setTheme()));
document.addEventListener('visibilitychange', () => {
  for (const t of terminals.get()) {
    if (document.hidden) t.disableWebgl();
    else t.enableWebgl();
  }
});
settings.subscribe(() => {
  const n = scrollbackLines();
  for (const t of terminals.get()) t.term.options.scrollback = n;
});

// A read-only window onto the terminals, for the browser tests and for anyone
// debugging in the console. It exposes nothing the page does not show.
declare global {
  interface Window {
    subsysDebug?: unknown;
  }
}
window.subsysDebug = {
  terminals: () =>
    terminals.get().map((t) => ({
      distro: t.distro,
      session: t.sessionId,
      status: t.status,
      exitCode: t.exitCode,
      message: t.message,
      visible: t.isVisible,
      renderer: t.renderer,
      cols: t.term.cols,
      rows: t.term.rows,
      bytesIn: t.bytesIn,
      bytesAcked: t.bytesAcked,
    })),
  text: (i?: number) => {
    const list = terminals.get();
    const t = i === undefined ? list.find((x) => x.isVisible) : list[i];
    return t?.text() ?? '';
  },
  cursorLine: () => {
    const t = terminals.get().find((x) => x.isVisible);
    if (!t) return '';
    const b = t.term.buffer.active;
    return b.getLine(b.baseY + b.cursorY)?.translateToString(true) ?? '';
  },
};
