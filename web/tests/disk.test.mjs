// Browser tests of the distro page's Disk part against a real `subsys serve`:
// a version 1 distro's host space, moving it (the dialog's check of the path
// in the page, the server's refusal of a running distro, a move that runs and
// the location the page then shows), and a version 2 distro's size and
// allocation, its Resize dialog (a size checked in the page, the POST of
// bytes) and Compact. No VM is booted: importing a version 2 distro only makes
// its image, and the resize and compact replies, which would boot the VM for
// a stopped distro, are answered by page.route with operations of the test's
// own (one holding markup in its error, shown as text). Run with the other
// browser tests: npm test (as root). The tests run in order and share one
// server, one browser and two distros.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { mkdtempSync, realpathSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildRootfsTar } from './lib/rootfs.mjs';
import { importDistro } from './lib/distro.mjs';
import { bytes, openPage, outDir, shutdown, startServer, until } from './lib/harness.mjs';

const V1 = 'mv1';
const V2 = 'disk2';
let srv;
let ctx;
let page;
let problems;
let tmp;
let moveRoot;

const distro = async (name) => (await srv.api('GET', `/api/v1/distros/${name}`)).json;

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'subsys-webtest-disk-'));
  const tarball = buildRootfsTar(tmp);
  srv = await startServer({ logName: 'server-disk.log' });
  await importDistro(srv, V1, 1, tarball);
  await importDistro(srv, V2, 2, tarball);
  ({ ctx, page, problems } = await openPage(srv));
});

after(async () => {
  await ctx?.close();
  await shutdown(srv);
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  if (moveRoot) rmSync(moveRoot, { recursive: true, force: true });
});

const diskCard = () => page.getByTestId('disk');

async function openDistro(name) {
  await page.goto(`${srv.base}/distros/${name}`);
  await page.getByRole('heading', { name, level: 1 }).waitFor();
  await diskCard().getByRole('heading', { name: 'Disk' }).waitFor();
}

test('a version 1 distro’s Disk part shows the host space its files use, and only Move', async () => {
  // disk_bytes is measured in the background: wait for the server to have it.
  const d = await until('a measured disk_bytes', async () => {
    const x = await distro(V1);
    return x.disk_bytes > 0 && x;
  }, 70_000, 500);
  assert.ok(!d.disk_max_bytes, 'a version 1 distro has no disk size');
  await openDistro(V1);
  const used = diskCard().getByTestId('disk-used');
  await until('the host space used', async () => (await used.textContent()) === bytes(d.disk_bytes));
  assert.match(await diskCard().textContent(), /Host space used/);
  assert.equal(await diskCard().getByTestId('disk-size').count(), 0, 'no size for version 1');
  assert.equal(await diskCard().getByRole('meter').count(), 0);
  assert.equal(await page.getByRole('button', { name: 'Resize disk' }).count(), 0);
  assert.equal(await page.getByRole('button', { name: 'Compact disk' }).count(), 0);
  await page.getByRole('button', { name: 'Move distro' }).waitFor();
  assert.equal(await diskCard().getByTestId('disk-location').textContent(), d.location);
});

test('Move refuses a relative location in the page, without a POST', async () => {
  const posts = [];
  const onRequest = (r) => r.method() === 'POST' && r.url().includes('/move') && posts.push(r.url());
  page.on('request', onRequest);
  try {
    await page.getByRole('button', { name: 'Move distro' }).click();
    const dlg = page.getByRole('dialog', { name: `Move ${V1} to another directory` });
    await dlg.waitFor();
    const field = dlg.getByRole('textbox', { name: 'New location' });
    await field.fill('distros/mv1');
    await dlg.getByText('Give an absolute path, starting with /').waitFor();
    assert.equal(await field.getAttribute('aria-invalid'), 'true');
    await dlg.getByRole('button', { name: 'Move', exact: true }).click();
    const alert = dlg.getByRole('alert');
    await alert.waitFor();
    assert.match(await alert.textContent(), /absolute path/);
    // Its own location, and / itself, are refused too.
    await field.fill((await distro(V1)).location);
    await dlg.getByText('The distro is there already.').waitFor();
    await field.fill('/');
    await dlg.getByText('Not / itself').waitFor();
    await dlg.getByRole('button', { name: 'Cancel' }).click();
    await dlg.waitFor({ state: 'hidden' });
  } finally {
    page.off('request', onRequest);
  }
  assert.deepEqual(posts, [], 'nothing was sent');
});

test('moving a running distro shows the server’s refusal in the dialog', async () => {
  const st = await srv.api('POST', `/api/v1/distros/${V1}/start`);
  assert.equal(st.status, 200, `start: ${st.text}`);
  await page.locator('.page-head [data-state="Running"]').waitFor();
  moveRoot = mkdtempSync('/tmp/subsys-webtest-move-');
  const target = join(moveRoot, 'moved');
  await page.getByRole('button', { name: 'Move distro' }).click();
  const dlg = page.getByRole('dialog', { name: `Move ${V1} to another directory` });
  await dlg.getByText(`${V1} is running: terminate it first`).waitFor();
  await dlg.getByRole('textbox', { name: 'New location' }).fill(target);
  const sent = page.waitForRequest((r) => r.url().endsWith(`/api/v1/distros/${V1}/move`) && r.method() === 'POST');
  await dlg.getByRole('button', { name: 'Move', exact: true }).click();
  assert.deepEqual((await sent).postDataJSON(), { location: target });
  await dlg.getByRole('alert').waitFor();
  await page.screenshot({ path: join(outDir, 'disk-move.png') });
  const alert = dlg.getByRole('alert');
  await alert.waitFor();
  const direct = await srv.api('POST', `/api/v1/distros/${V1}/move`, JSON.stringify({ location: target }), { 'Content-Type': 'application/json' });
  assert.equal(direct.status, 409, direct.text);
  assert.equal(await alert.textContent(), direct.json.error.message);
  await dlg.getByRole('button', { name: 'Cancel' }).click();
  await dlg.waitFor({ state: 'hidden' });
  const term = await srv.api('POST', `/api/v1/distros/${V1}/terminate`);
  assert.equal(term.status, 200, `terminate: ${term.text}`);
});

test('moving a stopped version 1 distro posts {"location"} and the page shows where it went', async () => {
  await page.locator('.page-head [data-state="Stopped"]').waitFor();
  // A fresh directory of root's with mode 0700 in sticky /tmp: parents only root can change.
  assert.equal(statSync(moveRoot).mode & 0o777, 0o700);
  const target = join(moveRoot, 'moved');
  const before = (await distro(V1)).location;
  await page.getByRole('button', { name: 'Move distro' }).click();
  const dlg = page.getByRole('dialog', { name: `Move ${V1} to another directory` });
  await dlg.getByRole('textbox', { name: 'New location' }).fill(target);
  const sent = page.waitForRequest((r) => r.url().endsWith(`/api/v1/distros/${V1}/move`) && r.method() === 'POST');
  const reply = page.waitForResponse((r) => r.url().endsWith(`/api/v1/distros/${V1}/move`));
  await dlg.getByRole('button', { name: 'Move', exact: true }).click();
  assert.deepEqual((await sent).postDataJSON(), { location: target });
  const res = await reply;
  assert.equal(res.status(), 202, await res.text());
  assert.equal((await res.json()).kind, 'move');
  await dlg.waitFor({ state: 'hidden' });
  // The location comes from the event stream, without a reload.
  await page.evaluate(() => (window.__noReload = true));
  const real = join(realpathSync(moveRoot), 'moved');
  const loc = diskCard().getByTestId('disk-location');
  await until('the new location on the page', async () => (await loc.textContent()) === real, 60_000);
  const status = diskCard().getByTestId('disk-status');
  await until('the move’s end', async () => (await status.count()) > 0 && (await status.getAttribute('data-status')) === 'success', 30_000);
  assert.match(await status.textContent(), new RegExp(`Moved to ${real}`));
  assert.equal(await page.evaluate(() => window.__noReload), true, 'no reload');
  const d = await distro(V1);
  assert.equal(d.location, real);
  assert.notEqual(d.location, before);
  // It still runs from there.
  const st = await srv.api('POST', `/api/v1/distros/${V1}/start`);
  assert.equal(st.status, 200, `start after the move: ${st.text}`);
  await srv.api('POST', `/api/v1/distros/${V1}/terminate`);
  await page.screenshot({ path: join(outDir, 'disk-v1.png'), fullPage: true });
});

test('a version 2 distro’s Disk part shows its size, allocation and free space, with a bar', async () => {
  const d = await until('a measured version 2 disk', async () => {
    const x = await distro(V2);
    return x.disk_max_bytes > 0 && x.disk_bytes > 0 && x;
  }, 70_000, 500);
  await openDistro(V2);
  await until('the disk size', async () => (await diskCard().getByTestId('disk-size').textContent()) === bytes(d.disk_max_bytes));
  const now = await distro(V2);
  assert.equal(await diskCard().getByTestId('disk-allocated').textContent(), bytes(now.disk_bytes));
  assert.equal(await diskCard().getByTestId('disk-free').textContent(), now.disk_free_bytes > 0 ? bytes(now.disk_free_bytes) : '—');
  const meter = diskCard().getByRole('meter', { name: 'Allocated on host, of the disk size' });
  assert.equal(await meter.getAttribute('aria-valuetext'), `${bytes(now.disk_bytes)} of ${bytes(now.disk_max_bytes)}`);
  for (const name of ['Resize disk', 'Compact disk', 'Move distro']) await page.getByRole('button', { name }).waitFor();
});

/** Answers the next POST to path with op (202), as the server would, and records the request bodies. */
async function fakeOperation(path, op) {
  const bodies = [];
  await page.route(`**${path}`, (route) => {
    bodies.push(route.request().postDataJSON());
    route.fulfill({
      status: 202,
      contentType: 'application/json',
      body: JSON.stringify({ distro: V2, error: '', progress: { done: 0, total: 0 }, created_at: new Date().toISOString(), ...op }),
    });
  });
  return bodies;
}

test('Compact posts and shows how much the image gave back', async () => {
  const path = `/api/v1/distros/${V2}/compact`;
  const bodies = await fakeOperation(path, { id: 'test-compact', kind: 'compact', status: 'success', progress: { done: 1, total: 1 }, result: { bytes: 5 * 2 ** 20 } });
  try {
    await page.getByRole('button', { name: 'Compact disk' }).click();
    const status = diskCard().getByTestId('disk-status');
    await status.getByText(`Compacted the disk of ${V2}: 5.0 MiB given back to the host.`).waitFor();
    assert.deepEqual(bodies, [{}]);
  } finally {
    await page.unroute(`**${path}`);
  }
});

test('Resize checks the size in the page, then sends {"size": N} in bytes', async () => {
  const d = await distro(V2);
  const path = `/api/v1/distros/${V2}/resize`;
  const posts = [];
  const onRequest = (r) => r.method() === 'POST' && r.url().endsWith(path) && posts.push(r.postData());
  page.on('request', onRequest);
  const hostile = 'resize disk2: <img src=x onerror="window.__pwned=1"> needs at least 40 MiB';
  const bodies = await fakeOperation(path, { id: 'test-resize-failed', kind: 'resize', status: 'failure', error: hostile });
  try {
    await page.getByRole('button', { name: 'Resize disk' }).click();
    const dlg = page.getByRole('dialog', { name: `Resize the disk of ${V2}` });
    await dlg.waitFor();
    await dlg.getByText(`${V2} is stopped: its disk can grow, or shrink`).waitFor();
    const field = dlg.getByRole('textbox', { name: 'New disk size' });
    // Prefilled with the size it has, as short as it is exact.
    const cur = await field.inputValue();
    assert.ok(cur, 'the size is prefilled');
    assert.match(cur, /^\d+[KMGT]?$/);
    await field.fill('12 parsecs');
    await dlg.getByText('Not a size: write one such as 64G, 512M or 1.5T, or a number of bytes.').waitFor();
    await dlg.getByRole('button', { name: 'Resize', exact: true }).click();
    await dlg.getByRole('alert').getByText('Not a size').waitFor();
    await field.fill('1M');
    await dlg.getByText('Too small: a disk is at least 64.0 MiB.').waitFor();
    assert.equal(await dlg.getByRole('alert').count(), 0, 'an edit clears what the last try said');
    assert.deepEqual(posts, [], 'nothing sent for a bad size');

    await field.fill('2G');
    await dlg.getByText('2.0 GiB (2,147,483,648 bytes)').waitFor();
    await page.screenshot({ path: join(outDir, 'disk-resize.png') });
    await dlg.getByRole('button', { name: 'Resize', exact: true }).click();
    await dlg.waitFor({ state: 'hidden' });
    assert.deepEqual(bodies, [{ size: 2 * 2 ** 30 }]);
    // The operation failed (as the server would say, later): its message is text on the page.
    const status = diskCard().getByTestId('disk-status');
    await status.getByRole('alert').waitFor();
    assert.equal(await status.getByRole('alert').textContent(), `Resizing the disk failed: ${hostile}`);
    assert.equal(await page.locator('main img').count(), 0, 'no element made of the message');
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
  } finally {
    await page.unroute(`**${path}`);
  }

  // A resize that runs: the bar follows it, and the buttons wait for it.
  const running = await fakeOperation(path, { id: 'test-resize-running', kind: 'resize', status: 'running', progress: { done: 1, total: 4 } });
  try {
    await page.getByRole('button', { name: 'Resize disk' }).click();
    const dlg = page.getByRole('dialog', { name: `Resize the disk of ${V2}` });
    await dlg.getByRole('textbox', { name: 'New disk size' }).fill('3221225472');
    await dlg.getByRole('button', { name: 'Resize', exact: true }).click();
    await dlg.waitFor({ state: 'hidden' });
    assert.deepEqual(running, [{ size: 3 * 2 ** 30 }]);
    const bar = diskCard().getByRole('progressbar', { name: `Resizing the disk of ${V2}` });
    await bar.waitFor();
    assert.equal(await bar.getAttribute('aria-valuenow'), '25');
    assert.equal(await page.getByRole('button', { name: 'Resize disk' }).isDisabled(), true);
    assert.equal(await page.getByRole('button', { name: 'Move distro' }).isDisabled(), true);
    await page.screenshot({ path: join(outDir, 'disk.png'), fullPage: true });
  } finally {
    page.off('request', onRequest);
    await page.unroute(`**${path}`);
  }
  // The size on the server is what it was: nothing reached it.
  assert.equal((await distro(V2)).disk_max_bytes, d.disk_max_bytes);
});

test('the distro list’s menus hold the disk actions of each version', async () => {
  await page.goto(`${srv.base}/`);
  const row = (name) => page.locator(`tr[data-distro="${name}"]`);
  await row(V2).getByRole('button', { name: `More actions for ${V2}` }).click();
  let menu = page.getByRole('menu', { name: `More actions for ${V2}` });
  for (const name of ['Resize disk…', 'Compact disk', 'Move…']) await menu.getByRole('menuitem', { name }).waitFor();
  await page.keyboard.press('Escape');
  await menu.waitFor({ state: 'hidden' });
  await row(V1).getByRole('button', { name: `More actions for ${V1}` }).click();
  menu = page.getByRole('menu', { name: `More actions for ${V1}` });
  await menu.getByRole('menuitem', { name: 'Move…' }).waitFor();
  assert.equal(await menu.getByRole('menuitem', { name: 'Resize disk…' }).count(), 0);
  await page.keyboard.press('Escape');
});

test('no script errors on the disk pages', () => {
  // Expected: the refused move of the running distro (409).
  const real = problems.filter((p) => !/Failed to load resource: the server responded with a status of 409/.test(p));
  assert.deepEqual(real, []);
});
