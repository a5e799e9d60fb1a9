// Live state: distros and operations, kept current by the server's event stream
// (GET /api/v1/events). Every connect starts with a snapshot that replaces what
// we have, so a reconnect can never leave a stale row; after that `distro`,
// `distro-removed` and `operation` events patch it, `ports` replaces one
// distro's listening ports, and `distro-oom` records an out-of-memory kill.
// Nothing polls.
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, dropSession, logout, ticket, type Distro, type OOMEvent, type Operation, type Port, type PortsEvent, type Settings } from './api';

/** A tiny observable value; components read it with useStore. */
export class Store<T> {
  private listeners = new Set<(v: T) => void>();
  constructor(private value: T) {}
  get(): T {
    return this.value;
  }
  set(v: T) {
    this.value = v;
    for (const l of [...this.listeners]) l(v);
  }
  update(f: (v: T) => T) {
    this.set(f(this.value));
  }
  subscribe(l: (v: T) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
}

export function useStore<T>(s: Store<T>): T {
  const [v, setV] = useState(s.get());
  useEffect(() => {
    setV(s.get());
    return s.subscribe(setV);
  }, [s]);
  return v;
}

export type Connection =
  | { state: 'connecting' }
  | { state: 'live' }
  | { state: 'reconnecting'; since: number }
  | { state: 'unauthorized'; message: string }
  | { state: 'offline'; message: string };

export interface Live {
  /** False until the first snapshot (or list) arrived. */
  loaded: boolean;
  /** By id: a rename keeps the id. */
  distros: Map<string, Distro>;
  operations: Map<string, Operation>;
  /** When each operation ended (ms), to show finished ones for a little while. */
  ended: Map<string, number>;
  conn: Connection;
}

export const live = new Store<Live>({
  loaded: false,
  distros: new Map(),
  operations: new Map(),
  ended: new Map(),
  conn: { state: 'connecting' },
});

export const settings = new Store<Settings | null>(null);

/**
 * Listening ports by distro id: from a `ports` event, or from GET
 * /distros/{name}/ports when a page first needs them (the snapshot has none).
 * A distro without an entry has not been loaded yet. The snapshot carries no
 * ports, so pages that show them load them again whenever the stream (re)connects.
 */
export const ports = new Store<Map<string, Port[]>>(new Map());
/** Bumped per distro id by every `ports` event, so an older GET reply cannot overwrite a newer event. */
const portsSeq = new Map<string, number>();

export function setPorts(id: string, list: Port[] | null) {
  portsSeq.set(id, (portsSeq.get(id) ?? 0) + 1);
  ports.update((m) => new Map(m).set(id, list ?? []));
}

/** The latest `distro-oom` event of each distro, by id, since this page loaded. */
export const ooms = new Store<Map<string, OOMEvent>>(new Map());

/** Loads a distro's ports by API, unless an event replaced them while the request ran. */
export async function loadPorts(d: Distro): Promise<void> {
  const seq = portsSeq.get(d.id) ?? 0;
  const list = await api.ports(d.name);
  if ((portsSeq.get(d.id) ?? 0) === seq) setPorts(d.id, list);
}

/** Puts one port (a PUT reply) into its distro's list, in place of the same proto/port. */
export function applyPort(id: string, p: Port) {
  const list = ports.get().get(id);
  if (!list) return;
  const same = (q: Port) => q.proto === p.proto && q.port === p.port;
  if (!list.some(same)) return; // closed now: the next event says what listens
  setPorts(
    id,
    list.map((q) => (same(q) ? { ...p, address: q.address, process: q.process || p.process, pid: q.pid || p.pid } : q)),
  );
}

export function sortedDistros(l: Live): Distro[] {
  return [...l.distros.values()].sort((a, b) => a.name.localeCompare(b.name));
}

export function distroByName(l: Live, name: string): Distro | undefined {
  for (const d of l.distros.values()) if (d.name === name) return d;
  return undefined;
}

const KEEP_ENDED_MS = 30_000;

function withOperation(l: Live, op: Operation): Live {
  // An operation that ended never runs again: a 202 reply read after the
  // event of its end (a quick move or compact) is older news.
  const known = l.operations.get(op.id);
  if (known && known.status !== 'running' && op.status === 'running') return l;
  const operations = new Map(l.operations);
  const ended = new Map(l.ended);
  operations.set(op.id, op);
  if (op.status !== 'running' && !ended.has(op.id)) ended.set(op.id, Date.now());
  return { ...l, operations, ended };
}

// Forget operations that ended a while ago (the activity list shows them until then).
setInterval(() => {
  const l = live.get();
  const old = [...l.ended].filter(([, t]) => Date.now() - t > KEEP_ENDED_MS);
  if (old.length === 0) return;
  const operations = new Map(l.operations);
  const ended = new Map(l.ended);
  for (const [id] of old) {
    operations.delete(id);
    ended.delete(id);
  }
  live.set({ ...l, operations, ended });
}, 5000);

export function applyDistro(d: Distro) {
  live.update((l) => {
    const distros = new Map(l.distros);
    distros.set(d.id, d);
    return { ...l, distros };
  });
}

function removeDistro(id: string) {
  live.update((l) => {
    const distros = new Map(l.distros);
    distros.delete(id);
    return { ...l, distros };
  });
}

export function applyOperation(op: Operation) {
  live.update((l) => withOperation(l, op));
}

function replaceAll(distros: Distro[], ops: Operation[]) {
  live.update((l) => {
    const m = new Map<string, Distro>();
    for (const d of distros) m.set(d.id, d);
    // Keep finished operations we already know (their dialogs may still show
    // them); running ones come from the snapshot.
    const operations = new Map<string, Operation>();
    for (const [id, op] of l.operations) if (op.status !== 'running') operations.set(id, op);
    for (const op of ops) operations.set(op.id, op);
    // Operations that were running and are not in the snapshot ended while we
    // were away: ask for their result.
    for (const [id, op] of l.operations) {
      if (op.status === 'running' && !operations.has(id)) {
        api.operation(id).then(applyOperation, () => {});
      }
    }
    return { ...l, loaded: true, distros: m, operations };
  });
}

function setConn(conn: Connection) {
  live.update((l) => ({ ...l, conn }));
}

/** Whether the event stream is up; when it is not, callers refresh by hand. */
export const isLive = () => live.get().conn.state === 'live';

let source: EventSource | null = null;
let retryTimer = 0;
/** The longest wait between reconnects. */
const retryDelay = 5000;

function parse<T>(e: Event): T | null {
  try {
    return JSON.parse((e as MessageEvent).data) as T;
  } catch {
    return null;
  }
}

/**
 * Opens the event stream; call once at start, and again after signing in. Each
 * connection needs a fresh single-use ticket (an EventSource cannot send a
 * header), so reconnecting is ours to do, not the browser's: its own retry would
 * present the spent ticket.
 */
export async function connectEvents() {
  clearTimeout(retryTimer);
  source?.close();
  source = null;
  const gen = ++connectGen;
  if (live.get().conn.state !== 'reconnecting') setConn({ state: 'connecting' });
  let t: string;
  try {
    t = await ticket();
  } catch (e) {
    if (gen !== connectGen) return;
    return streamFailed(e);
  }
  if (gen !== connectGen) return;
  const es = new EventSource(`/api/v1/events?ticket=${encodeURIComponent(t)}`);
  source = es;
  es.addEventListener('snapshot', (e) => {
    const s = parse<{ distros: Distro[] | null; operations: Operation[] | null }>(e);
    if (!s) return;
    replaceAll(s.distros ?? [], s.operations ?? []);
    failures = 0;
    refused = 0;
    setConn({ state: 'live' });
  });
  es.addEventListener('distro', (e) => {
    const d = parse<Distro>(e);
    if (d) applyDistro(d);
  });
  es.addEventListener('distro-removed', (e) => {
    const r = parse<{ id: string; name: string }>(e);
    if (r) removeDistro(r.id);
  });
  es.addEventListener('operation', (e) => {
    const op = parse<Operation>(e);
    if (op) applyOperation(op);
  });
  es.addEventListener('distro-oom', (e) => {
    const o = parse<OOMEvent>(e);
    if (o?.id) ooms.update((m) => new Map(m).set(o.id, o));
  });
  es.addEventListener('ports', (e) => {
    const p = parse<PortsEvent>(e);
    if (p?.id) setPorts(p.id, p.ports);
  });
  es.onerror = () => {
    if (es !== source) return;
    // CONNECTING: the connection dropped or could not be made (the browser
    // would retry); CLOSED: the server answered with an error.
    const dropped = es.readyState === EventSource.CONNECTING;
    es.close();
    source = null;
    streamFailed(null, dropped);
  };
}

let connectGen = 0;
let failures = 0;

/**
 * The stream broke or could not open: say so and try again, soon at first. A
 * 401 means the session is gone (expired, logged out, token rotated): sign in.
 */
async function streamFailed(e: unknown, dropped = false) {
  if (e instanceof ApiError && e.status === 401) {
    dropSession();
    setConn({ state: 'unauthorized', message: e.message });
    return;
  }
  failures++;
  const network = dropped || (e instanceof ApiError && e.status === 0) || !(e === null || e instanceof ApiError);
  if (network) {
    // A drop (server restart, network): the indicator says reconnecting, and
    // the snapshot of the next connection brings the state up to date.
    refused = 0;
    const c = live.get().conn;
    if (c.state !== 'reconnecting') setConn({ state: 'reconnecting', since: Date.now() });
  } else if (++refused >= DIAGNOSE_AFTER) {
    // The server answers, but not with an event stream: ask the plain API
    // why, show what it says, and keep trying, more slowly.
    await diagnose();
    if (live.get().conn.state === 'unauthorized') return;
  }
  retryTimer = window.setTimeout(connectEvents, Math.min(250 * 2 ** (failures - 1), retryDelay));
}

/** Error answers to the event stream in a row (not drops). */
let refused = 0;

/** Error answers in a row before asking the plain API why. */
const DIAGNOSE_AFTER = 2;

/** The stream fails again and again: ask the plain API why, and show it. */
async function diagnose() {
  try {
    const list = await api.listDistros();
    // The API works but events do not: show the list, and keep trying.
    replaceAll(list, [...live.get().operations.values()].filter((o) => o.status === 'running'));
    setConn({ state: 'offline', message: 'Live updates are unavailable (GET /api/v1/events failed); the list may be out of date.' });
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      dropSession();
      setConn({ state: 'unauthorized', message: e.message });
    } else {
      setConn({ state: 'offline', message: (e as Error).message });
    }
  }
}

/** Signs this browser out and shows the sign-in page. */
export async function signOut() {
  clearTimeout(retryTimer);
  connectGen++;
  source?.close();
  source = null;
  try {
    await logout();
  } catch {
    // signed out here in any case
  }
  setConn({ state: 'unauthorized', message: 'Signed out.' });
}

/** After a change made through the API when the stream is down: fetch the list. */
export async function refreshIfNotLive() {
  if (isLive()) return;
  try {
    const list = await api.listDistros();
    replaceAll(list, [...live.get().operations.values()].filter((o) => o.status === 'running'));
  } catch {
    // the connection indicator already says what is wrong
  }
}

/**
 * Resolves when operation id has ended, from the event stream, or by long-polling
 * GET /operations/{id}?wait= while the stream is down.
 */
export function waitOperation(id: string): Promise<Operation> {
  return new Promise((resolve) => {
    let finished = false;
    const check = (l: Live) => {
      const op = l.operations.get(id);
      if (!finished && op && op.status !== 'running') {
        finished = true;
        unsub();
        resolve(op);
      }
    };
    const unsub = live.subscribe(check);
    check(live.get());
    (async () => {
      while (!finished) {
        if (isLive()) {
          await new Promise((r) => setTimeout(r, 1000));
          continue;
        }
        try {
          applyOperation(await api.operation(id, 20));
        } catch {
          await new Promise((r) => setTimeout(r, 2000));
        }
      }
    })();
  });
}

export async function loadSettings(): Promise<Settings | null> {
  try {
    const s = await api.settings();
    settings.set(s);
    return s;
  } catch {
    return null;
  }
}
