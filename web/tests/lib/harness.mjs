// Test harness: a real `subsys serve` on a free port with a fresh data
// directory, and Debian's Chromium driven by playwright-core; the
// SUBSYS_TEST_STRICT rule for tests this machine cannot run.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const webDir = resolve(here, '../..');
export const outDir = join(webDir, 'test-output');
mkdirSync(outDir, { recursive: true });

export const SUBSYS_BIN = process.env.SUBSYS_BIN || resolve(webDir, '../bin/subsys');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
/** Where the utility VM's test kernel is (`make kernel`), as e2e has it. */
export const KERNEL_DIR = process.env.SUBSYS_KERNEL_DIR || '/var/cache/subsys-test/kernel';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/**
 * Starts bin/subsys serve with a temporary data directory. Its log goes to
 * test-output/server.log (or logName). prepare(data), when given, runs on the
 * data directory before the server first starts (to put a kernel in vm/, say).
 * Returns {base, token, data, api, loginURL, restart(), stop()}.
 */
export async function startServer({ logName = 'server.log', prepare } = {}) {
  if (!existsSync(SUBSYS_BIN)) throw new Error(`${SUBSYS_BIN} is missing: run "cd web && npm run build && cd .. && make build" first`);
  const data = mkdtempSync(join(tmpdir(), 'subsys-webtest-'));
  if (prepare) await prepare(data);
  const port = await freePort();
  const listen = `127.0.0.1:${port}`;
  const base = `http://${listen}`;
  const log = createWriteStream(join(outDir, logName));
  let proc = null;
  let exited = null;
  let token = '';

  const spawnServer = async () => {
    exited = null;
    proc = spawn(SUBSYS_BIN, ['serve', '--data', data, '--listen', listen], { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout.pipe(log, { end: false });
    proc.stderr.pipe(log, { end: false });
    proc.on('exit', (code, sig) => (exited = `exited with ${code ?? sig}`));
    for (let i = 0; i < 200; i++) {
      if (exited) throw new Error(`subsys serve ${exited}; see ${join(outDir, logName)}`);
      try {
        token ||= readFileSync(join(data, 'token'), 'utf8').trim();
        const r = await fetch(`${base}/api/v1/version`, { headers: { Authorization: `Bearer ${token}` } });
        if (r.ok) return;
      } catch {
        // not up yet
      }
      await sleep(50);
    }
    throw new Error(`subsys serve did not come up on ${listen}`);
  };
  const stopServer = async () => {
    if (!proc || exited) return;
    proc.kill('SIGTERM');
    for (let i = 0; i < 200 && !exited; i++) await sleep(50);
    if (!exited) proc.kill('SIGKILL');
    for (let i = 0; i < 40 && !exited; i++) await sleep(50);
  };

  await spawnServer();
  if (!token) throw new Error('subsys serve did not write a token');
  const api = async (method, path, body, headers = {}) => {
    const r = await fetch(`${base}${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, ...headers },
      body,
    });
    const text = await r.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: r.status, json, text };
  };
  return {
    base,
    token,
    data,
    api,
    /** The login URL `subsys dashboard` prints: the token in the fragment. */
    loginURL: `${base}/#token=${encodeURIComponent(token)}`,
    /** Stops the server and starts it again on the same port and data. */
    async restart() {
      await stopServer();
      await spawnServer();
    },
    async stop() {
      await stopServer();
      log.end();
      // Distros' files belong to root with odd modes; ignore what cannot go.
      try {
        rmSync(data, { recursive: true, force: true });
      } catch {
        // left for the OS to clean up
      }
    },
  };
}

/**
 * Starts bin/subsys serve as startServer does, with the data directory's
 * vm/kernel linked to the test kernel (KERNEL_DIR), so the server can boot
 * version 2's utility VM: the kernel is there as `make deps` installs it
 * (e2e's startV2Server does the same). Check whatIsMissing() first.
 */
export function startV2Server({ logName } = {}) {
  return startServer({
    logName,
    prepare: (data) => {
      mkdirSync(join(data, 'vm'), { recursive: true, mode: 0o700 });
      symlinkSync(KERNEL_DIR, join(data, 'vm', 'kernel'));
    },
  });
}

/**
 * Stops srv for good: first its distros through POST /shutdown (they outlive
 * the server by design, and their agents would linger), then the server. With
 * killVM, a QEMU whose pid the server recorded is killed after, so that no VM
 * outlives a test whatever happened to the server. Nothing to do without srv.
 */
export async function shutdown(srv, { killVM = false } = {}) {
  if (!srv) return;
  let qemu = 0;
  if (killVM) {
    try {
      qemu = Number(readFileSync(join(srv.data, 'run', 'vm', 'qemu.pid'), 'utf8').trim());
    } catch {
      // no VM
    }
  }
  await srv.api('POST', '/api/v1/shutdown').catch(() => {});
  await srv.stop();
  if (qemu > 0) {
    try {
      process.kill(qemu, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

/**
 * Skips t because this machine lacks what it needs — or, with
 * SUBSYS_TEST_STRICT=1 in the environment (CI sets it), fails it, as
 * internal/testenv does for the Go tests.
 */
export function skipOrFail(t, why) {
  const v = process.env.SUBSYS_TEST_STRICT ?? '';
  if (v !== '' && !/^(0|f|false)$/i.test(v)) assert.fail(`SUBSYS_TEST_STRICT=1 makes this skip a failure: ${why}`);
  t.skip(`${why} (with SUBSYS_TEST_STRICT=1 this fails)`);
}

/**
 * Why this machine cannot boot version 2's utility VM for a test — root, the
 * test kernel in KERNEL_DIR, qemu-system-x86_64 — or '' when it can. The tests
 * that boot it pass a non-empty answer to skipOrFail.
 */
export function whatIsMissing() {
  if (process.getuid?.() !== 0) return 'needs root';
  let kernels = [];
  try {
    kernels = readdirSync(join(KERNEL_DIR, 'boot')).filter((f) => f.startsWith('vmlinuz-'));
  } catch {
    // none
  }
  if (kernels.length === 0) return `needs the test kernel in ${KERNEL_DIR} (make kernel)`;
  try {
    execFileSync('sh', ['-c', 'command -v qemu-system-x86_64'], { stdio: 'ignore' });
  } catch {
    return 'needs qemu-system-x86_64';
  }
  return '';
}

/** Chromium with a fresh profile, headless, and nothing that talks to the network. */
export async function launchBrowser({ width = 1280, height = 800 } = {}) {
  const profile = mkdtempSync(join(tmpdir(), 'subsys-chromium-'));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width, height },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const close = ctx.close.bind(ctx);
  ctx.close = async () => {
    await close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  };
  return ctx;
}

/**
 * A browser and its one page (15 s default timeout), with the page's problems
 * collected (watchPage). With srv, the page signs in through the login URL
 * and waits until the dashboard's live connection is up.
 */
export async function openPage(srv) {
  const ctx = await launchBrowser();
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  page.setDefaultTimeout(15_000);
  const problems = watchPage(page);
  if (srv) {
    await page.goto(srv.loginURL);
    await page.locator('.conn-ok').waitFor();
  }
  return { ctx, page, problems };
}

/** Polls f every interval ms until it returns something truthy, which it returns; throws after timeout ms. */
export async function until(what, f, timeout = 5000, interval = 100) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    last = await f();
    if (last) return last;
    await sleep(interval); // poll interval
  }
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

/** Collects console errors and failed requests of a page, for test messages. */
export function watchPage(page) {
  const problems = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  return problems;
}

// ---- terminal helpers (through window.subsysDebug, which reads xterm's buffer) ----

export const termInfo = (page) => page.evaluate(() => window.subsysDebug.terminals().find((t) => t.visible) ?? null);
export const termText = (page) => page.evaluate(() => window.subsysDebug.text());
export const cursorLine = (page) => page.evaluate(() => window.subsysDebug.cursorLine());

/** Waits until the visible terminal's text satisfies pred (a function of the text). */
export async function waitTermText(page, pred, { timeout = 10_000, what = 'terminal text' } = {}) {
  const end = Date.now() + timeout;
  let text = '';
  while (Date.now() < end) {
    text = await termText(page);
    if (pred(text)) return text;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}; the terminal shows:\n${text.split('\n').slice(-15).join('\n')}`);
}

export async function waitTermOpen(page, timeout = 15_000) {
  const end = Date.now() + timeout;
  let info = null;
  while (Date.now() < end) {
    info = await termInfo(page);
    if (info?.status === 'open') return info;
    await sleep(100);
  }
  const status = await page.locator('[data-testid=term-status]').textContent().catch(() => '');
  throw new Error(`terminal did not open: ${JSON.stringify(info)}; status line: ${status}`);
}

/**
 * Records the requests of page with this method whose path ends in suffix
 * while f(seen) runs, and returns them: what the page sent for an action.
 */
export async function recording(page, method, suffix, f) {
  const seen = [];
  const on = (r) => r.method() === method && new URL(r.url()).pathname.endsWith(suffix) && seen.push(r);
  page.on('request', on);
  try {
    await f(seen);
  } finally {
    page.off('request', on);
  }
  return seen;
}

/** The dashboard's bytes() (src/format.ts), to know the text the page shows for a number. */
export function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

export const lines = (text) => text.split('\n').map((l) => l.trimEnd());
export { sleep, freePort };
