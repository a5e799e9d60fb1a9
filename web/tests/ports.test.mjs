// Browser tests of the network manager's pages against a real `subsys serve`:
// the Ports panel of the distro page (live list, LAN toggle, allowed sources)
// and the Port proxy rules page. A busybox `httpd` in a version 1 distro is the
// program that listens. Run with the other browser tests: npm test (as root).
// The tests run in order and share one server, one browser and one distro.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildRootfsTar } from './lib/rootfs.mjs';
import { execIn as execInDistro, importDistro } from './lib/distro.mjs';
import { freePort, openPage, outDir, shutdown, skipOrFail, sleep, startServer, until } from './lib/harness.mjs';

const DISTRO = 'net';
let srv;
let ctx;
let page;
let problems;
let tmp;
/** The port httpd listens on (127.0.0.1 only), and the portproxy rule's port. */
let PORT;
let PROXY_PORT;

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'subsys-webtest-ports-'));
  const tarball = buildRootfsTar(tmp);
  srv = await startServer({ logName: 'server-ports.log' });
  await importDistro(srv, DISTRO, 1, tarball);
  const st = await srv.api('POST', `/api/v1/distros/${DISTRO}/start`);
  assert.equal(st.status, 200, `start: ${st.text}`);

  PORT = await freePort();
  do PROXY_PORT = await freePort();
  while (PROXY_PORT === PORT);

  ({ ctx, page, problems } = await openPage(srv));
});

after(async () => {
  await ctx?.close();
  await shutdown(srv);
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** Runs argv in the distro; it must exit 0. */
const execIn = (argv) => execInDistro(srv, DISTRO, argv, { exitZero: true });

const apiPort = async () => {
  const r = await srv.api('GET', `/api/v1/distros/${DISTRO}/ports`);
  assert.equal(r.status, 200, r.text);
  return r.json.find((p) => p.proto === 'tcp' && p.port === PORT);
};

const portRow = () => page.locator(`.ports tr[data-port="tcp/${PORT}"]`);
const lanSwitch = () => page.getByRole('switch', { name: `LAN access for tcp port ${PORT}` });
const allowBox = () => page.getByRole('textbox', { name: `Allowed sources for tcp port ${PORT}` });


/** A non-loopback IPv4 address of this machine, for connecting "from the LAN". */
function lanAddress() {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '';
}

async function httpGet(host, port) {
  const r = await fetch(`http://${host}:${port}/`, { signal: AbortSignal.timeout(3000) });
  await r.text();
  return r.status;
}

test('a program that starts listening appears in the Ports panel without a reload', async () => {
  await page.goto(`${srv.base}/distros/${DISTRO}`);
  await page.getByRole('heading', { name: 'Ports' }).waitFor();
  await page.getByText('No program in this distro is listening on a port.').waitFor();
  await page.evaluate(() => (window.__noReload = true));

  // busybox httpd daemonizes: exec returns and it keeps listening.
  await execIn(['httpd', '-p', `127.0.0.1:${PORT}`, '-h', '/tmp']);
  const t0 = Date.now();
  await portRow().waitFor({ timeout: 5000 });
  console.log(`# the port showed up ${Date.now() - t0} ms after httpd started`);
  assert.equal(await page.evaluate(() => window.__noReload), true, 'the page was not reloaded');

  const text = await portRow().textContent();
  assert.match(text, /tcp/);
  assert.match(text, /127\.0\.0\.1/);
  assert.match(text, /httpd/, 'the process is named');
  assert.match(text, /pid \d+/, 'with its pid');
  assert.equal(await portRow().locator('[data-state]').getAttribute('data-state'), 'local');
  assert.match(await portRow().locator('[data-state]').textContent(), /This computer only/);
  assert.equal(await lanSwitch().isChecked(), false);
  await page.getByTestId('ports-summary').getByText('1 listening').waitFor();
});

test('LAN toggle: turning it on warns first, then the state is LAN and the warning stays beside it', async () => {
  await lanSwitch().click();
  const dlg = page.getByRole('dialog', { name: `Open port ${PORT} to your network?` });
  await dlg.waitFor();
  assert.match(await dlg.textContent(), new RegExp(`Anyone on your network who can reach this computer can connect to port ${PORT}`));
  // Cancelling changes nothing.
  await dlg.getByRole('button', { name: 'Cancel' }).click();
  await dlg.waitFor({ state: 'hidden' });
  assert.equal(await lanSwitch().isChecked(), false);
  assert.equal((await apiPort()).lan, false);

  await lanSwitch().click();
  await dlg.getByRole('button', { name: 'Open to the LAN' }).click();
  await dlg.waitFor({ state: 'hidden' });
  await portRow().locator('[data-state="lan"]').waitFor({ timeout: 5000 });
  assert.equal(await portRow().locator('[data-state]').textContent(), 'LAN');
  assert.equal(await lanSwitch().isChecked(), true);
  const warning = portRow().getByTestId('lan-warning');
  assert.match(await warning.textContent(), new RegExp(`Anyone on your network who can reach this computer can connect to port ${PORT}`));
  const p = await apiPort();
  assert.equal(p.lan, true);
  assert.equal(p.state, 'lan');
});

test('live counters: connections through the LAN listener show up without a reload', async (t) => {
  const ip = lanAddress();
  if (!ip) {
    skipOrFail(t, 'this machine has no non-loopback IPv4 address');
    return;
  }
  for (let i = 0; i < 3; i++) assert.ok((await httpGet(ip, PORT)) > 0);
  await until('bytes counted in the row', async () => !/in 0 B/.test(await portRow().locator('td[data-label="Traffic"]').textContent()), 5000).catch(
    async (e) => {
      // Say whether the server counted and the page missed it, or neither.
      const p = await apiPort();
      const conn = await page.locator('.conn').getAttribute('class');
      throw new Error(`${e.message}; the API says in ${p.bytes_in} B, out ${p.bytes_out} B; the page's connection: ${conn}`);
    },
  );
  const traffic = await portRow().locator('td[data-label="Traffic"]').textContent();
  assert.match(traffic, /in \d+(\.\d)? (B|KiB)/);
  assert.doesNotMatch(traffic, /out 0 B/, `bytes out counted: ${traffic}`);
});

test('allowed sources: checked for shape, saved on Enter, on leaving the field and with Save; server errors inline', async () => {
  // A malformed range never leaves the page.
  await allowBox().fill('10.0.0.0/33');
  await allowBox().press('Enter');
  const hint = portRow().getByRole('alert');
  await hint.waitFor();
  assert.match(await hint.textContent(), /prefix length/);
  assert.deepEqual((await apiPort()).allow ?? [], []);
  await allowBox().fill('10.0.0.0/8 , 192.168.1.0/24');
  assert.equal(await hint.count(), 0, 'the message goes when the text changes');

  // Enter saves.
  await allowBox().press('Enter');
  await portRow().getByText('Saved.').waitFor();
  assert.deepEqual((await apiPort()).allow, ['10.0.0.0/8', '192.168.1.0/24']);
  assert.equal(await allowBox().inputValue(), '10.0.0.0/8, 192.168.1.0/24');
  assert.match(await portRow().getByTestId('lan-warning').textContent(), /Any computer in 10\.0\.0\.0\/8, 192\.168\.1\.0\/24/);

  // Leaving the field saves.
  await allowBox().fill('192.168.1.0/24');
  await page.keyboard.press('Tab');
  await until('the allowlist saved on blur', async () => JSON.stringify((await apiPort()).allow) === '["192.168.1.0/24"]');

  // The Save button saves, and the server's error shows in the row.
  await page.route(`**/api/v1/distros/${DISTRO}/ports/tcp/${PORT}`, (route) =>
    route.fulfill({
      status: 400,
      contentType: 'application/json',
      body: JSON.stringify({ error: { code: 'invalid_argument', message: 'allow: 172.16.0.0/12 is refused by this test' } }),
    }),
  );
  try {
    await allowBox().fill('172.16.0.0/12');
    await portRow().getByRole('button', { name: `Save allowed sources for tcp port ${PORT}` }).click();
    await portRow().getByRole('alert').getByText('allow: 172.16.0.0/12 is refused by this test').waitFor();
  } finally {
    await page.unroute(`**/api/v1/distros/${DISTRO}/ports/tcp/${PORT}`);
  }
  await portRow().getByRole('button', { name: `Save allowed sources for tcp port ${PORT}` }).click();
  await portRow().getByText('Saved.').waitFor();
  assert.deepEqual((await apiPort()).allow, ['172.16.0.0/12']);

  await page.locator('.ports-card').screenshot({ path: join(outDir, 'ports.png') });
});

test('LAN toggle off: back to this computer only, no question asked', async () => {
  await lanSwitch().click();
  await portRow().locator('[data-state="local"]').waitFor({ timeout: 5000 });
  assert.equal(await lanSwitch().isChecked(), false);
  assert.equal(await portRow().getByTestId('lan-warning').count(), 0);
  const p = await apiPort();
  assert.equal(p.lan, false);
  assert.deepEqual(p.allow, ['172.16.0.0/12'], 'the allowlist is kept');
});

test('a save that answers after more typing keeps what was typed meanwhile', async () => {
  const url = `**/api/v1/distros/${DISTRO}/ports/tcp/${PORT}`;
  // A slow server is the thing under test: hold each PUT a while.
  await page.route(url, async (route) => {
    await sleep(600);
    await route.continue();
  });
  try {
    await allowBox().fill('10.1.0.0/16');
    await allowBox().press('Enter'); // the save starts, and waits on the server
    await allowBox().fill('10.2.0.0/16'); // typed while it runs
    await until('the first save stored', async () => JSON.stringify((await apiPort()).allow) === '["10.1.0.0/16"]');
    await portRow().getByText('Saved.').waitFor();
    assert.equal(await allowBox().inputValue(), '10.2.0.0/16', 'the text typed during the save survives its answer');
  } finally {
    await page.unroute(url);
  }
  // Saving again stores it; then back to what the tests after expect.
  await allowBox().press('Enter');
  await until('the newer text stored', async () => JSON.stringify((await apiPort()).allow) === '["10.2.0.0/16"]');
  await allowBox().fill('172.16.0.0/12');
  await allowBox().press('Enter');
  await until('the allowlist restored', async () => JSON.stringify((await apiPort()).allow) === '["172.16.0.0/12"]');
});

const ruleRow = () => page.locator(`.rules tr[data-listen="tcp/${PROXY_PORT}"]`);

test('port proxy: add a rule from the form, see it active with counters, refusals explained', async () => {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Port proxy' }).click();
  assert.equal(new URL(page.url()).pathname, '/portproxy');
  await page.getByRole('heading', { name: 'Port proxy', level: 1 }).waitFor();
  await page.getByText('No rules yet.').waitFor();

  const form = page.locator('form.rule-form');
  assert.equal(await form.getByRole('textbox', { name: 'Listen address' }).inputValue(), '0.0.0.0');
  assert.equal(await form.getByRole('textbox', { name: 'Connect address' }).inputValue(), '127.0.0.1');
  assert.equal(await form.getByRole('radio', { name: 'TCP' }).isChecked(), true);

  // Checked in the page first: no request for a port that cannot be.
  await form.getByRole('textbox', { name: 'Listen port' }).fill('70000');
  await form.getByRole('button', { name: 'Add rule' }).click();
  await form.getByText('A port is a number from 1 to 65535.').first().waitFor();
  assert.equal((await srv.api('GET', '/api/v1/portproxy')).json.length, 0);

  await form.getByRole('textbox', { name: 'Listen address' }).fill('127.0.0.1');
  await form.getByRole('textbox', { name: 'Listen port' }).fill(String(PROXY_PORT));
  await form.getByRole('textbox', { name: 'Connect port' }).fill(String(PORT));
  await form.getByRole('button', { name: 'Add rule' }).click();
  await ruleRow().waitFor();
  await ruleRow().locator('[data-state="active"]').waitFor({ timeout: 5000 });
  assert.match(await ruleRow().textContent(), new RegExp(`127\\.0\\.0\\.1:${PROXY_PORT}.*127\\.0\\.0\\.1:${PORT}`));
  const id = await ruleRow().getAttribute('data-rule');
  assert.match(id, /^[0-9a-f]+$/);

  // Through the rule to httpd: the page's 2 s refresh shows the counts.
  for (let i = 0; i < 2; i++) assert.ok((await httpGet('127.0.0.1', PROXY_PORT)) > 0);
  await until('the rule counted two connections', async () => /2 total/.test(await ruleRow().textContent()), 6000);
  assert.doesNotMatch(await ruleRow().locator('td[data-label="Traffic"]').textContent(), /out 0 B/);

  // The same rule again: the server's 409 shows in the form.
  await form.getByRole('textbox', { name: 'Listen port' }).fill(String(PROXY_PORT));
  await form.getByRole('textbox', { name: 'Connect port' }).fill(String(PORT));
  await form.getByRole('button', { name: 'Add rule' }).click();
  const alert = form.getByRole('alert');
  await alert.waitFor();
  const dup = await srv.api(
    'POST',
    '/api/v1/portproxy',
    JSON.stringify({ proto: 'tcp', listen_address: '127.0.0.1', listen_port: PROXY_PORT, connect_address: '127.0.0.1', connect_port: PORT, allow: [] }),
    { 'Content-Type': 'application/json' },
  );
  assert.equal(dup.status, 409);
  assert.equal(await alert.textContent(), dup.json.error.message);

  // An allowlist of bad shape is refused in the page.
  await form.getByRole('textbox', { name: 'Allowed sources' }).fill('10.0.0.0/8, bogus');
  await form.getByText('“bogus” is not an address range').waitFor();
  await form.getByRole('textbox', { name: 'Allowed sources' }).fill('');

  // A port httpd holds: the message names it.
  await form.getByRole('textbox', { name: 'Listen port' }).fill(String(PORT));
  await form.getByRole('textbox', { name: 'Connect port' }).fill('9');
  await form.getByRole('button', { name: 'Add rule' }).click();
  await until('the port-in-use message', async () => /httpd/.test((await alert.textContent().catch(() => '')) ?? ''));
  await page.locator('.toast').first().waitFor({ state: 'detached', timeout: 8000 }).catch(() => {});
  await page.screenshot({ path: join(outDir, 'portproxy.png'), fullPage: true });
});

test('port proxy: delete asks first; cancelling keeps the rule', async () => {
  const del = ruleRow().getByRole('button', { name: `Delete rule tcp 127.0.0.1:${PROXY_PORT}` });
  await del.click();
  const dlg = page.getByRole('dialog', { name: `Delete the rule for tcp 127.0.0.1:${PROXY_PORT}?` });
  // Cancelling sends nothing: a delete would have left before the dialog closed.
  const sent = [];
  const onRequest = (r) => r.method() === 'DELETE' && sent.push(r.url());
  page.on('request', onRequest);
  await dlg.getByRole('button', { name: 'Cancel' }).click();
  await dlg.waitFor({ state: 'hidden' });
  page.off('request', onRequest);
  assert.deepEqual(sent, [], 'no DELETE after Cancel');
  assert.equal((await srv.api('GET', '/api/v1/portproxy')).json.length, 1);
  assert.equal(await ruleRow().count(), 1);

  await del.click();
  await dlg.getByRole('button', { name: 'Delete' }).click();
  await dlg.waitFor({ state: 'hidden' });
  await ruleRow().waitFor({ state: 'detached' });
  await page.getByText('No rules yet.').waitFor();
  assert.deepEqual((await srv.api('GET', '/api/v1/portproxy')).json, []);
  await assert.rejects(httpGet('127.0.0.1', PROXY_PORT), 'nothing listens on the rule’s port any more');
});

test('narrow window: the ports table becomes cards and fits in 420 px', async () => {
  await page.setViewportSize({ width: 420, height: 820 });
  try {
    await page.goto(`${srv.base}/distros/${DISTRO}`);
    await portRow().waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `distro page: no horizontal scrolling (overflow ${overflow} px)`);
    await page.goto(`${srv.base}/portproxy`);
    await page.getByRole('heading', { name: 'Add a rule' }).waitFor();
    const overflow2 = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow2 <= 0, `port proxy page: no horizontal scrolling (overflow ${overflow2} px)`);
  } finally {
    await page.setViewportSize({ width: 1280, height: 800 });
  }
});

test('the row goes when the program stops listening; a stopped distro says it must run', async () => {
  await page.goto(`${srv.base}/distros/${DISTRO}`);
  await portRow().waitFor();
  await execIn(['killall', 'httpd']);
  await portRow().waitFor({ state: 'detached', timeout: 5000 });
  await page.getByText('No program in this distro is listening on a port.').waitFor();

  const r = await srv.api('POST', `/api/v1/distros/${DISTRO}/terminate`);
  assert.equal(r.status, 200, r.text);
  await page.getByText(`${DISTRO} must be running to show its ports.`).waitFor({ timeout: 5000 });
});

test('no script errors on the ports pages', () => {
  // Expected: the refused rules (409) and the test's own 400.
  const real = problems.filter((p) => !/Failed to load resource: the server responded with a status of (400|409)/.test(p));
  assert.deepEqual(real, []);
});
