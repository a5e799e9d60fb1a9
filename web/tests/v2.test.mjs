// Browser tests of the dashboard's version 2 parts against a real `subsys
// serve`: the utility VM page (its status, and a console of hostile guest
// bytes shown as inert text), converting a distro between versions from its
// page (the POST, a refusal with the server's message, a conversion that
// runs), the import dialog's version 2 size, and the VM settings. No VM is
// booted: converting a stopped distro only makes its disk image (mkfs.ext4).
// Run with the other browser tests: npm test (as root). The tests run in
// order and share one server, one browser and one distro.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildRootfsTar } from './lib/rootfs.mjs';
import { importDistro } from './lib/distro.mjs';
import { openPage, outDir, shutdown, startServer } from './lib/harness.mjs';

const DISTRO = 'conv';
let srv;
let ctx;
let page;
let problems;
let tmp;
let tarball;

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'subsys-webtest-v2-'));
  tarball = buildRootfsTar(tmp);
  srv = await startServer({ logName: 'server-v2.log' });
  await importDistro(srv, DISTRO, 1, tarball);

  ({ ctx, page, problems } = await openPage(srv));
});

after(async () => {
  await ctx?.close();
  await shutdown(srv);
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** What a guest may print: markup that would run script, escape sequences, a bidi override, invalid UTF-8. */
const HOSTILE = Buffer.concat([
  Buffer.from('[    0.000000] Linux version 6.1.0\r\n'),
  Buffer.from('<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>\r\n'),
  Buffer.from('\x1b]0;pwned\x07\x1b[2J\x1b[31mred\u202egnp.exe\r\n'),
  Buffer.from([0xff, 0xfe, 0x0a]),
]);

test('the VM page shows the server’s VM status', async () => {
  const real = await srv.api('GET', '/api/v1/vm');
  assert.equal(real.status, 200, real.text);
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'VM' }).click();
  await page.getByRole('heading', { name: 'Utility VM', level: 1 }).waitFor();
  assert.equal(new URL(page.url()).pathname, '/vm');
  const panel = page.getByTestId('vm-panel');
  if (real.json.available) {
    await panel.locator(`[data-state="${real.json.state}"]`).waitFor();
    assert.match(await panel.textContent(), new RegExp(`CPUs${real.json.cpus}`));
    assert.match(await panel.textContent(), new RegExp(`${real.json.memory_mib} MiB`));
  } else {
    await page.getByTestId('vm-unavailable').waitFor();
  }
});

test('a console of hostile guest bytes and a hostile status are shown as inert text', async () => {
  const status = {
    available: true,
    state: 'Failed',
    accel: 'tcg',
    accel_note: '<img src=x onerror="window.__pwned=3">',
    memory_mib: 2048,
    cpus: 2,
    kernel: '/boot/vmlinuz',
    kernel_release: '6.1.0-<b>bold</b>',
    idle_timeout_s: 60,
    error: 'no agent: <img src=x onerror="window.__pwned=4">',
    network: 'passt',
    host_files: '9p',
    host_files_note: 'virtiofsd exited <img src=x onerror="window.__pwned=5">',
  };
  await page.route('**/api/v1/vm/console', (route) =>
    route.fulfill({ status: 200, headers: { 'Content-Type': 'application/octet-stream', 'X-Content-Type-Options': 'nosniff' }, body: HOSTILE }),
  );
  await page.route('**/api/v1/vm', (route) => route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(status) }));
  try {
    await page.reload();
    const con = page.getByTestId('vm-console');
    await con.waitFor();
    const text = await con.textContent();
    assert.ok(text.includes('<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'), `markup shown as text: ${text}`);
    assert.ok(text.includes('\\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mred\\u202egnp.exe'), `escapes shown as escapes: ${text}`);
    assert.ok(text.includes('Linux version 6.1.0\n<img'), 'CR LF is a line break');
    assert.ok(text.includes('\ufffd'), 'invalid UTF-8 shows as the replacement character');
    assert.ok(!/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/.test(text), `no control or bidi character reaches the page: ${JSON.stringify(text)}`);
    await page.getByTestId('vm-error').waitFor();
    assert.equal(await page.getByTestId('vm-error').textContent(), status.error);
    assert.match(await page.getByTestId('vm-panel').textContent(), /6\.1\.0-<b>bold<\/b>/);
    const panelText = await page.getByTestId('vm-panel').textContent();
    assert.match(panelText, /Networkpasst/);
    assert.match(panelText, /Host files \(\/mnt\/host\)9pvirtiofsd exited <img src=x onerror="window.__pwned=5">/);
    // Nothing ran, and nothing became markup.
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    assert.equal(await page.locator('main img, main script, main b').count(), 0);
    assert.equal(await page.title(), 'Utility VM · subsys');
    await page.screenshot({ path: join(outDir, 'vm.png'), fullPage: true });
  } finally {
    await page.unroute('**/api/v1/vm/console');
    await page.unroute('**/api/v1/vm');
  }
});

/** The distro page's convert button. */
const convertButton = (to) => page.getByRole('button', { name: `Convert to version ${to}` });

test('converting a running distro sends the POST and shows the server’s refusal in the dialog', async () => {
  const st = await srv.api('POST', `/api/v1/distros/${DISTRO}/start`);
  assert.equal(st.status, 200, `start: ${st.text}`);
  await page.goto(`${srv.base}/distros/${DISTRO}`);
  await page.getByRole('heading', { name: DISTRO, level: 1 }).waitFor();
  await convertButton(2).click();
  const dlg = page.getByRole('dialog', { name: `Convert ${DISTRO} to version 2?` });
  await dlg.waitFor();
  const sent = page.waitForRequest((r) => r.url().endsWith(`/api/v1/distros/${DISTRO}/set-version`) && r.method() === 'POST');
  await dlg.getByRole('button', { name: 'Convert to version 2' }).click();
  const req = await sent;
  assert.deepEqual(req.postDataJSON(), { version: 2 });
  const alert = dlg.getByRole('alert');
  await alert.waitFor();
  // The same request by API: the dialog shows the server's own words.
  const direct = await srv.api('POST', `/api/v1/distros/${DISTRO}/set-version`, JSON.stringify({ version: 2 }), {
    'Content-Type': 'application/json',
  });
  assert.equal(direct.status, 409, direct.text);
  assert.equal(await alert.textContent(), direct.json.error.message);
  await dlg.getByRole('button', { name: 'Cancel' }).click();
  await dlg.waitFor({ state: 'hidden' });
  const d = await srv.api('GET', `/api/v1/distros/${DISTRO}`);
  assert.equal(d.json.version, 1, 'a refused conversion changes nothing');
});

test('converting a stopped distro runs the operation, and the page follows it to version 2', async () => {
  const st = await srv.api('POST', `/api/v1/distros/${DISTRO}/terminate`);
  assert.equal(st.status, 200, `terminate: ${st.text}`);
  await page.locator(`[data-state="Stopped"]`).first().waitFor();
  await convertButton(2).click();
  const dlg = page.getByRole('dialog', { name: `Convert ${DISTRO} to version 2?` });
  await dlg.getByRole('button', { name: 'Convert to version 2' }).click();
  // The dialog closes once the server has accepted; a refusal stays in it.
  const refusal = dlg.getByRole('alert');
  await Promise.race([dlg.waitFor({ state: 'hidden' }).catch(() => {}), refusal.waitFor().catch(() => {})]);
  assert.equal(await refusal.count(), 0, `the conversion was refused: ${await refusal.textContent().catch(() => '')}`);
  // The version comes from the event stream, without a reload. (Not the
  // toast, which may come and go before a slow machine looks.)
  await page.evaluate(() => (window.__noReload = true));
  await convertButton(1).waitFor({ timeout: 60_000 });
  assert.match(await page.locator('.details').textContent(), /2 — own kernel/);
  assert.equal(await page.evaluate(() => window.__noReload), true, 'no reload');
  const d = await srv.api('GET', `/api/v1/distros/${DISTRO}`);
  assert.equal(d.json.version, 2);
});

test('the import dialog sends a version 2 distro’s largest disk size', async () => {
  await page.goto(`${srv.base}/`);
  await page.getByRole('button', { name: 'Import…' }).click();
  const dialog = page.getByRole('dialog', { name: 'Import a distro' });
  await dialog.locator('input[type=file]').setInputFiles(tarball);
  await dialog.getByRole('textbox', { name: 'Name' }).fill('small');
  await dialog.getByRole('radio', { name: 'v1' }).check();
  assert.equal(await dialog.getByRole('textbox', { name: 'Largest disk size' }).count(), 0, 'version 1 has no disk size');
  await dialog.getByRole('radio', { name: 'v2' }).check();
  const size = dialog.getByRole('textbox', { name: 'Largest disk size' });
  await size.fill('lots');
  await dialog.getByText('A size such as 256G or 512M.').waitFor();
  assert.equal(await dialog.getByRole('button', { name: 'Import', exact: true }).isDisabled(), true);
  await size.fill('1G');
  const sent = page.waitForRequest((r) => r.url().includes('/api/v1/distros?') && r.method() === 'POST');
  await dialog.getByRole('button', { name: 'Import', exact: true }).click();
  const q = new URL((await sent).url()).searchParams;
  assert.equal(q.get('version'), '2');
  assert.equal(q.get('size'), String(1 << 30));
  await dialog.getByText('Imported small.').waitFor({ timeout: 60_000 });
  await dialog.getByRole('button', { name: 'Done' }).click();
  const d = await srv.api('GET', '/api/v1/distros/small');
  assert.equal(d.json.version, 2);
});

test('the settings page edits the utility VM’s settings', async () => {
  await page.goto(`${srv.base}/settings`);
  const group = page.getByTestId('vm-settings');
  await group.waitFor();
  const cpus = group.getByRole('spinbutton', { name: 'VM processors' });
  await cpus.fill('2');
  const idle = group.getByRole('spinbutton', { name: 'VM idle timeout (seconds)' });
  await idle.fill('-1');
  const mem = group.getByRole('spinbutton', { name: 'VM memory (MiB)' });
  await mem.fill('100');
  await group.getByText('A whole number: 0, or 256 or more.').waitFor();
  assert.equal(await page.getByRole('button', { name: 'Save' }).isDisabled(), true, 'a bad memory size is refused in the page');
  await mem.fill('1024');
  await group.getByRole('combobox', { name: 'Memory reclaim' }).selectOption('dropcache');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText('Settings saved.').waitFor();
  const s = await srv.api('GET', '/api/v1/settings');
  assert.equal(s.json.vm_processors, 2);
  assert.equal(s.json.vm_idle_timeout_s, -1);
  assert.equal(s.json.vm_memory_mib, 1024);
  assert.equal(s.json.memory_reclaim, 'dropcache');
});

test('the VM page charts a running VM’s memory, and Reclaim now posts to /vm/reclaim', async () => {
  const now = Date.now();
  const history = [0, 1, 2, 3].map((i) => ({
    t: new Date(now - (3 - i) * 10000).toISOString(),
    rss_bytes: (600 + i * 300) * 2 ** 20,
    used_bytes: 80 * 2 ** 20,
    cached_bytes: i * 300 * 2 ** 20,
  }));
  const status = {
    available: true,
    state: 'Running',
    accel: 'tcg',
    memory_mib: 2048,
    cpus: 2,
    idle_timeout_s: 60,
    memory: { total_bytes: 2 ** 31, used_bytes: 80 * 2 ** 20, cached_bytes: 900 * 2 ** 20, available_bytes: 2 ** 30, reclaimed_bytes: 0 },
    memory_reclaim: 'gradual',
    memory_history: history,
  };
  await page.route('**/api/v1/vm', (route) => route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(status) }));
  await page.route('**/api/v1/vm/reclaim', (route) =>
    route.fulfill({
      status: 200,
      contentType: 'application/json',
      body: JSON.stringify({ dropped_bytes: 900 * 2 ** 20, memory: { ...status.memory, cached_bytes: 0 }, rss_bytes: 2 ** 30 }),
    }),
  );
  try {
    await page.goto(`${srv.base}/vm`);
    const part = page.getByTestId('vm-memory');
    await part.waitFor();
    assert.match(await part.textContent(), /uses 80\.0 MiB and caches 900 MiB of 2\.0 GiB; reclaim \(gradual\)/);
    const plot = part.getByRole('img', { name: /QEMU on the host over the last 10 minutes: now 1\.5 GiB/ });
    await plot.waitFor();
    const sent = page.waitForRequest((r) => r.url().endsWith('/api/v1/vm/reclaim') && r.method() === 'POST');
    await part.getByRole('button', { name: 'Reclaim now' }).click();
    await sent;
    await page.getByText('The VM dropped 900 MiB of page cache').waitFor();
  } finally {
    await page.unroute('**/api/v1/vm/reclaim');
    await page.unroute('**/api/v1/vm');
  }
});

test('no script errors on the version 2 pages', () => {
  // Expected: the refused conversion of the running distro (409).
  const real = problems.filter((p) => !/Failed to load resource: the server responded with a status of 409/.test(p));
  assert.deepEqual(real, []);
});
