// Browser tests of the distro page's Snapshots card against a real `subsys
// serve`, with the busybox root file system imported as the version 1 distro
// `snap1` (by API): taking a snapshot (the POST, then the list), a name refused
// in the page, a running distro's refusal in the server's words, a restore that
// asks first and puts the old files back, a delete that asks first; and the
// settings page's Install mirror field. Run with the other browser tests: npm
// test (as root). The tests run in order and share one server, one browser and
// one distro.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildRootfsTar } from './lib/rootfs.mjs';
import { execIn, importDistro } from './lib/distro.mjs';
import { openPage, outDir, recording as recordingOf, shutdown, startServer, until } from './lib/harness.mjs';

const NAME = 'snap1';
let srv;
let ctx;
let page;
let problems;
let tmp;

const exec = (argv) => execIn(srv, NAME, argv);

const snapshots = async () => (await srv.api('GET', `/api/v1/distros/${NAME}/snapshots`)).json ?? [];

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'subsys-webtest-snap-'));
  const tarball = buildRootfsTar(tmp);
  srv = await startServer({ logName: 'server-snapshots.log' });
  await importDistro(srv, NAME, 1, tarball);
  ({ ctx, page, problems } = await openPage(srv));
});

after(async () => {
  await ctx?.close();
  await shutdown(srv);
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const card = () => page.getByTestId('snapshots');
const item = (name) => card().locator(`[data-testid=snapshot][data-name="${name}"]`);

/** Records the page's requests of method to a path ending in suffix while f runs. */
const recording = (method, suffix, f) => recordingOf(page, method, suffix, f);

test('take a snapshot from the card: the POST, then it is in the list', async () => {
  await page.goto(`${srv.base}/distros/${NAME}`);
  await card().getByRole('heading', { name: 'Snapshots' }).waitFor();
  assert.match(await card().getByTestId('snapshots-note').textContent(), /must be stopped/);
  await card().getByTestId('snapshots-empty').waitFor();
  const posts = await recording('POST', `/distros/${NAME}/snapshots`, async (seen) => {
    await card().getByRole('textbox', { name: 'Snapshot name (optional)' }).fill('first');
    await card().getByRole('button', { name: 'Take snapshot' }).click();
    await until('the POST', () => seen.length === 1);
  });
  assert.deepEqual(JSON.parse(posts[0].postData()), { name: 'first' });
  const row = item('first');
  await row.waitFor();
  await card().locator('[data-testid=snapshot-status][data-kind=snapshot][data-status=success]').waitFor();
  const list = await snapshots();
  assert.deepEqual(list.map((s) => s.name), ['first']);
  const text = await row.textContent();
  assert.match(text, /version 1/);
  assert.match(text, /just now|min ago/);
  assert.equal(await card().getByRole('textbox', { name: 'Snapshot name (optional)' }).inputValue(), '', 'the field is cleared');
  await page.screenshot({ path: join(outDir, 'snapshots.png') });
});

test('a bad snapshot name is refused in the page, without a POST', async () => {
  const field = card().getByRole('textbox', { name: 'Snapshot name (optional)' });
  const posts = await recording('POST', `/distros/${NAME}/snapshots`, async () => {
    for (const bad of ['-dash', 'has space', 'x'.repeat(65), 'a/b']) {
      await field.fill(bad);
      assert.equal(await field.getAttribute('aria-invalid'), 'true', bad);
      await card().getByText('Use 1–64 letters, digits, dots, dashes or underscores').first().waitFor();
      await card().getByRole('button', { name: 'Take snapshot' }).click();
      await card().getByRole('alert').waitFor();
    }
    await page.waitForTimeout(300);
  });
  assert.equal(posts.length, 0, 'nothing was posted');
  await field.fill('');
  assert.equal(await field.getAttribute('aria-invalid'), null);
});

test('a running distro’s refusal shows the server’s message', async () => {
  const st = await srv.api('POST', `/api/v1/distros/${NAME}/start`);
  assert.equal(st.status, 200, `start: ${st.text}`);
  // A file made after the snapshot: the restore below must take it away.
  assert.equal((await exec(['touch', '/after-snapshot'])).exit_code, 0);
  await card().getByText(`${NAME} is running, terminate it first.`).waitFor();
  const replyP = page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname.endsWith(`/distros/${NAME}/snapshots`));
  await card().getByRole('button', { name: 'Take snapshot' }).click();
  const reply = await replyP;
  assert.equal(reply.status(), 409);
  const message = (await reply.json()).error.message;
  assert.ok(message, 'the server explains');
  await until('the server’s message in the card', async () => (await card().getByRole('alert').allTextContents()).includes(message));
  assert.deepEqual((await snapshots()).map((s) => s.name), ['first'], 'no snapshot was taken');
  const term = await srv.api('POST', `/api/v1/distros/${NAME}/terminate`);
  assert.equal(term.status, 200, `terminate: ${term.text}`);
  await card().getByText('The distro must be stopped to take or restore one.').waitFor();
});

test('restore asks first, then runs and puts the snapshot’s files back', async () => {
  const posts = await recording('POST', `/snapshots/first/restore`, async (seen) => {
    await item('first').getByRole('button', { name: 'Restore first' }).click();
    let dlg = page.getByRole('dialog', { name: `Restore ${NAME} from first?` });
    await dlg.waitFor();
    assert.match(await dlg.textContent(), /replaced/);
    await dlg.getByRole('button', { name: 'Cancel' }).click();
    await dlg.waitFor({ state: 'hidden' });
    await page.waitForTimeout(200);
    assert.equal(seen.length, 0, 'cancelling posts nothing');
    await item('first').getByRole('button', { name: 'Restore first' }).click();
    dlg = page.getByRole('dialog', { name: `Restore ${NAME} from first?` });
    await dlg.getByRole('button', { name: 'Restore', exact: true }).click();
    await dlg.waitFor({ state: 'hidden' });
    await until('the restore POST', () => seen.length === 1);
  });
  assert.equal(posts.length, 1);
  await card().locator('[data-testid=snapshot-status][data-kind=restore][data-status=success]').waitFor();
  await card().getByText('Restored from the snapshot.').waitFor();
  const st = await srv.api('POST', `/api/v1/distros/${NAME}/start`);
  assert.equal(st.status, 200, `start after the restore: ${st.text}`);
  assert.notEqual((await exec(['test', '-e', '/after-snapshot'])).exit_code, 0, 'the file made after the snapshot is gone');
  await srv.api('POST', `/api/v1/distros/${NAME}/terminate`);
});

test('delete asks first, then removes the snapshot from the list', async () => {
  const dels = await recording('DELETE', `/snapshots/first`, async (seen) => {
    await item('first').getByRole('button', { name: 'Delete first' }).click();
    let dlg = page.getByRole('dialog', { name: 'Delete the snapshot first?' });
    await dlg.waitFor();
    await dlg.getByRole('button', { name: 'Cancel' }).click();
    await dlg.waitFor({ state: 'hidden' });
    await page.waitForTimeout(200);
    assert.equal(seen.length, 0, 'cancelling deletes nothing');
    assert.equal(await item('first').count(), 1);
    await item('first').getByRole('button', { name: 'Delete first' }).click();
    dlg = page.getByRole('dialog', { name: 'Delete the snapshot first?' });
    await dlg.getByRole('button', { name: 'Delete', exact: true }).click();
    await dlg.waitFor({ state: 'hidden' });
  });
  assert.equal(dels.length, 1);
  await item('first').waitFor({ state: 'detached' });
  await card().getByTestId('snapshots-empty').waitFor();
  assert.deepEqual(await snapshots(), []);
});

test('settings: the install mirror is saved, and ftp://x is refused in the page', async () => {
  await page.goto(`${srv.base}/settings`);
  const field = page.getByRole('textbox', { name: 'Install mirror' });
  await field.waitFor();
  assert.equal(await field.inputValue(), '');
  const save = page.getByRole('button', { name: 'Save' });
  const puts = await recording('PUT', '/api/v1/settings', async () => {
    await field.fill('ftp://x');
    assert.equal(await field.getAttribute('aria-invalid'), 'true');
    await page.getByText('An http://, https:// or file:/// URL').waitFor();
    assert.equal(await save.isDisabled(), true);
    await field.press('Enter');
    await page.waitForTimeout(300);
  });
  assert.equal(puts.length, 0, 'nothing was sent');
  await field.fill('https://deb.debian.org/debian');
  assert.equal(await field.getAttribute('aria-invalid'), null);
  await save.click();
  await page.getByText('Settings saved.').first().waitFor();
  assert.equal((await srv.api('GET', '/api/v1/settings')).json.install_mirror, 'https://deb.debian.org/debian');
  await page.reload();
  await field.waitFor();
  assert.equal(await field.inputValue(), 'https://deb.debian.org/debian');
  await field.fill('');
  await save.click();
  await until('the mirror cleared', async () => (await srv.api('GET', '/api/v1/settings')).json.install_mirror === '');
});

test('no script errors on the snapshot pages', () => {
  // Expected: the refused snapshot of the running distro (409).
  const real = problems.filter((p) => !/Failed to load resource: the server responded with a status of 409/.test(p));
  assert.deepEqual(real, []);
});
