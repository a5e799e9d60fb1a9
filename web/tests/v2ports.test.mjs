// Browser test of a version 2 distro's Ports panel against a real `subsys
// serve` that boots its utility VM (QEMU; TCG without KVM, 20-30 s): the
// "This computer" switch, the port's `localhost` setting, turns forwarding to
// the host's 127.0.0.1 off and on. A busybox `httpd` bound to 0.0.0.0 in the
// VM is the program that listens. Needs root, QEMU and the test kernel
// (/var/cache/subsys-test/kernel, or $SUBSYS_KERNEL_DIR: `make kernel`).
// The tests run in order and share one server, one browser and one distro.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildRootfsTar } from './lib/rootfs.mjs';
import { execIn, importDistro, sh } from './lib/distro.mjs';
import { freePort, openPage, outDir, shutdown, skipOrFail, sleep, startV2Server, until, whatIsMissing } from './lib/harness.mjs';

const DISTRO = 'web2';
let srv;
let ctx;
let page;
let problems;
let tmp;
let PORT;
/** Why this machine cannot run these tests; empty when it can. */
let missing = '';

before(async () => {
  missing = whatIsMissing();
  if (missing) return;
  tmp = mkdtempSync(join(tmpdir(), 'subsys-webtest-v2ports-'));
  const tarball = buildRootfsTar(tmp);
  srv = await startV2Server({ logName: 'server-v2ports.log' });
  await importDistro(srv, DISTRO, 2, tarball);

  PORT = await freePort();
  // The first command boots the VM (20-30 s under TCG). busybox httpd
  // daemonizes: exec returns and it keeps listening.
  const httpd = `mkdir -p /root/www && echo hi > /root/www/index.html && httpd -p 0.0.0.0:${PORT} -h /root/www`;
  await execIn(srv, DISTRO, sh(httpd), { timeout: 180, exitZero: true });

  ({ ctx, page, problems } = await openPage(srv));
});

after(async () => {
  await ctx?.close();
  // Whatever happened, no QEMU outlives the test.
  await shutdown(srv, { killVM: true });
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const apiPort = async () => {
  const r = await srv.api('GET', `/api/v1/distros/${DISTRO}/ports`);
  assert.equal(r.status, 200, r.text);
  return r.json?.find((p) => p.proto === 'tcp' && p.port === PORT);
};

const portRow = () => page.locator(`.ports tr[data-port="tcp/${PORT}"]`);
const hereSwitch = () => page.getByRole('switch', { name: `Forward tcp port ${PORT} to this computer` });
const lanSwitch = () => page.getByRole('switch', { name: `LAN access for tcp port ${PORT}` });


/** Connects to host:port over TCP: 'open', 'refused' (ECONNREFUSED) or the error's code. */
function probe(port, host = '127.0.0.1') {
  return new Promise((res) => {
    const s = connect({ host, port });
    s.setTimeout(3000);
    s.once('connect', () => {
      s.destroy();
      res('open');
    });
    s.once('timeout', () => {
      s.destroy();
      res('timeout');
    });
    s.once('error', (e) => res(e.code === 'ECONNREFUSED' ? 'refused' : e.code || String(e)));
  });
}

async function httpGet(port, host = '127.0.0.1') {
  const r = await fetch(`http://${host}:${port}/`, { signal: AbortSignal.timeout(5000) });
  return { status: r.status, body: await r.text() };
}

/** Serves page.route for the port's PUT: holds it for ms, then lets it through to the server. */
async function slowPut(ms) {
  const url = `**/api/v1/distros/${DISTRO}/ports/tcp/${PORT}`;
  const handler = async (route) => {
    if (route.request().method() === 'PUT') await sleep(ms);
    await route.continue();
  };
  await page.route(url, handler);
  return () => page.unroute(url, handler);
}

test('a version 2 port shows a This computer switch, on, and is reached on host localhost', async (t) => {
  if (missing) return skipOrFail(t, missing);
  await page.goto(`${srv.base}/distros/${DISTRO}`);
  await page.getByRole('heading', { name: 'Ports' }).waitFor();
  await page.getByText('Turn off “This computer” for a port to stop forwarding it to this computer’s localhost').waitFor();
  // The VM's agent reports the socket; the panel shows it without a reload.
  await portRow().waitFor({ timeout: 20_000 });
  await page.getByRole('columnheader', { name: 'This computer' }).waitFor();
  assert.equal(await hereSwitch().isChecked(), true, 'localhost forwarding is on by default');
  assert.equal(await lanSwitch().isChecked(), false);
  assert.match(await portRow().locator('[data-label="Process"]').textContent(), /httpd/);
  assert.equal(await portRow().locator('.pstate').textContent(), 'This computer only');
  await until('httpd in the VM on host 127.0.0.1', async () => (await httpGet(PORT).catch(() => null))?.body === 'hi\n', 20_000);
});

test('switching This computer off sends localhost:false and the host stops forwarding', async (t) => {
  if (missing) return skipOrFail(t, missing);
  // The PUT is held a moment on its way (then reaches the real server), so
  // the switch can be seen disabled while it saves.
  const release = await slowPut(800);
  const put = page.waitForRequest((r) => r.method() === 'PUT' && r.url().endsWith(`/ports/tcp/${PORT}`));
  await hereSwitch().click();
  const req = await put;
  assert.deepEqual(req.postDataJSON(), { localhost: false });
  assert.equal(await hereSwitch().isDisabled(), true, 'disabled while saving');
  await until('the switch to be off', async () => !(await hereSwitch().isChecked()) && (await hereSwitch().isEnabled()));
  await release();
  assert.equal((await apiPort()).localhost, false, 'the server has the setting');
  assert.equal(await portRow().locator('.pstate').textContent(), 'Not forwarded');
  assert.equal(await portRow().getByTestId('localhost-note').textContent(), `Port ${PORT} is no longer forwarded to this computer’s localhost.`);
  assert.equal(await lanSwitch().isChecked(), false, 'LAN untouched');
  await until('host 127.0.0.1 to refuse the port', async () => (await probe(PORT)) === 'refused', 10_000);
  await page.screenshot({ path: join(outDir, 'v2ports.png'), fullPage: true });
});

test('switching it on again with the keyboard forwards the port again', async (t) => {
  if (missing) return skipOrFail(t, missing);
  await hereSwitch().focus();
  const put = page.waitForRequest((r) => r.method() === 'PUT' && r.url().endsWith(`/ports/tcp/${PORT}`));
  await page.keyboard.press('Space');
  assert.deepEqual((await put).postDataJSON(), { localhost: true });
  await until('the switch to be on', async () => (await hereSwitch().isChecked()) && (await hereSwitch().isEnabled()));
  assert.equal((await apiPort()).localhost, true);
  assert.equal(await portRow().locator('.pstate').textContent(), 'This computer only');
  assert.equal(await portRow().getByTestId('localhost-note').textContent(), `Port ${PORT} is forwarded to this computer’s localhost.`);
  // The focus is back on the switch after it was disabled while saving.
  await until('the focus back on the switch', () => hereSwitch().evaluate((el) => el === document.activeElement));
  await until('httpd reached on host 127.0.0.1 again', async () => (await httpGet(PORT).catch(() => null))?.body === 'hi\n', 10_000);
});

test('a refused change shows the server’s message and leaves the switch as it was', async (t) => {
  if (missing) return skipOrFail(t, missing);
  // The one injected answer: a refusal in the server's error format.
  const url = `**/api/v1/distros/${DISTRO}/ports/tcp/${PORT}`;
  const refuse = (route) =>
    route.request().method() === 'PUT'
      ? route.fulfill({
          status: 409,
          contentType: 'application/json',
          body: JSON.stringify({ error: { code: 'conflict', message: 'port 1234 <b>is</b> held by sshd on the host' } }),
        })
      : route.continue();
  await page.route(url, refuse);
  await hereSwitch().click();
  const alert = portRow().locator('.localhost-cell [role=alert]');
  await alert.waitFor();
  assert.equal(await alert.textContent(), 'port 1234 <b>is</b> held by sshd on the host');
  assert.equal(await portRow().locator('.localhost-cell b').count(), 0, 'the message is text, not markup');
  assert.equal(await hereSwitch().isChecked(), true, 'still on');
  await page.unroute(url, refuse);
  assert.equal((await apiPort()).localhost, true);
  assert.equal(await probe(PORT), 'open');
});

test('no script errors', async (t) => {
  if (missing) return skipOrFail(t, missing);
  // The injected 409 logs a failed resource; nothing else may.
  const rest = problems.filter((p) => !/Failed to load resource: the server responded with a status of 409/.test(p));
  assert.deepEqual(rest, []);
});
