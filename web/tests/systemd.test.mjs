// Browser tests of the distro page's systemd row against a real `subsys
// serve`, with the busybox root file system imported as the version 1 distro
// `sd1` (by API): turning systemd on asks first and sends the PATCH, the row
// then says so, and turning it off again does the reverse. (Booting systemd
// itself is tested end to end in e2e, with a Debian root file system.) Run
// with the other browser tests: npm test (as root).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildRootfsTar } from './lib/rootfs.mjs';
import { importDistro } from './lib/distro.mjs';
import { openPage, shutdown, startServer, until } from './lib/harness.mjs';

const NAME = 'sd1';
let srv;
let ctx;
let page;
let tmp;

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'subsys-webtest-systemd-'));
  const tarball = buildRootfsTar(tmp);
  srv = await startServer({ logName: 'server-systemd.log' });
  await importDistro(srv, NAME, 1, tarball);
  ({ ctx, page } = await openPage(srv));
});

after(async () => {
  await ctx?.close();
  await shutdown(srv);
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const systemdOf = async () => (await srv.api('GET', `/api/v1/distros/${NAME}`)).json.systemd === true;

test('turn systemd on: the page asks first, a cancel changes nothing, a confirm sends the PATCH', async () => {
  await page.goto(`${srv.base}/distros/${NAME}`);
  const state = page.getByTestId('systemd-state');
  await until('systemd row says off', async () => (await state.textContent()) === 'off');
  await page.getByRole('button', { name: 'turn on' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByText('becomes its PID 1').waitFor();
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await dialog.waitFor({ state: 'detached' });
  assert.equal(await systemdOf(), false, 'a cancel turned systemd on');

  await page.getByRole('button', { name: 'turn on' }).click();
  await dialog.getByRole('button', { name: 'Turn on' }).click();
  await until('systemd row says on', async () => (await state.textContent()) === 'PID 1 at boot');
  assert.equal(await systemdOf(), true, 'the server did not record systemd on');
});

test('turn systemd off again', async () => {
  await page.getByRole('button', { name: 'turn off' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Turn off' }).click();
  await until('systemd row says off', async () => (await page.getByTestId('systemd-state').textContent()) === 'off');
  assert.equal(await systemdOf(), false);
});
