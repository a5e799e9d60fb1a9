// Browser test of the Files page on a version 2 distro against a real `subsys
// serve` that boots its utility VM (QEMU; TCG without KVM, 20-30 s): the same
// page and API as for version 1 (files.test.mjs), here through the VM's agent.
// The distro is left stopped: the page's first request boots the VM and starts
// it, and the page says so while it waits. Needs root, QEMU and the test kernel
// (/var/cache/subsys-test/kernel, or $SUBSYS_KERNEL_DIR: `make kernel`). The
// tests run in order and share one server, one browser and one distro.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildRootfsTar } from './lib/rootfs.mjs';
import { openPage, outDir, startServer, until } from './lib/harness.mjs';

const NAME = 'files2';
const FILES = `/api/v1/distros/${NAME}/files`;
const KERNEL_DIR = process.env.SUBSYS_KERNEL_DIR || '/var/cache/subsys-test/kernel';
const DATA = randomBytes(200_000);
let srv;
let ctx;
let page;
let problems;
let tmp;
/** Why this machine cannot run these tests; empty when it can. */
let missing = '';

/**
 * Skips t because this machine lacks what it needs — or, with
 * SUBSYS_TEST_STRICT=1 in the environment (CI sets it), fails it, as
 * internal/testenv does for the Go tests.
 */
function skipOrFail(t, why) {
  const v = process.env.SUBSYS_TEST_STRICT ?? '';
  if (v !== '' && !/^(0|f|false)$/i.test(v)) assert.fail(`SUBSYS_TEST_STRICT=1 makes this skip a failure: ${why}`);
  t.skip(`${why} (with SUBSYS_TEST_STRICT=1 this fails)`);
}

function whatIsMissing() {
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

before(async () => {
  missing = whatIsMissing();
  if (missing) return;
  tmp = mkdtempSync(join(tmpdir(), 'subsys-webtest-files2-'));
  const tarball = buildRootfsTar(tmp);
  // The server boots version 2's VM with the kernel in its data directory's
  // vm/kernel, as `make deps` installs it (e2e's startV2Server does the same).
  srv = await startServer({
    logName: 'server-files2.log',
    prepare: (data) => {
      mkdirSync(join(data, 'vm'), { recursive: true, mode: 0o700 });
      symlinkSync(KERNEL_DIR, join(data, 'vm', 'kernel'));
    },
  });
  const up = await srv.api('POST', `/api/v1/distros?name=${NAME}&version=2`, readFileSync(tarball), {
    'Content-Type': 'application/octet-stream',
  });
  assert.equal(up.status, 202, `import: ${up.text}`);
  let op = up.json;
  for (let i = 0; i < 10 && op.status === 'running'; i++) op = (await srv.api('GET', `/api/v1/operations/${op.id}?wait=20`)).json;
  assert.equal(op.status, 'success', `import: ${JSON.stringify(op)}`);
  ({ ctx, page, problems } = await openPage(srv));
});

after(async () => {
  await ctx?.close();
  await srv?.api('POST', '/api/v1/shutdown').catch(() => {});
  await srv?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const card = () => page.getByTestId('files');
const entry = (n) => card().locator(`[data-testid=file-row][data-name="${n}"]`);

test('a stopped version 2 distro: the page says it starts it, then lists /etc', async (t) => {
  if (missing) return skipOrFail(t, missing);
  assert.equal((await srv.api('GET', `/api/v1/distros/${NAME}`)).json.state, 'Stopped');
  await page.goto(`${srv.base}/distros/${NAME}`);
  await page.getByRole('link', { name: 'Files', exact: true }).click();
  // The VM boots under the first request (20-30 s under TCG): the page says what it waits for.
  await card().getByTestId('files-loading').getByText(`Starting ${NAME}`).waitFor();
  await card().getByTestId('files-table').waitFor({ timeout: 180_000 });
  assert.equal((await srv.api('GET', `/api/v1/distros/${NAME}`)).json.state, 'Running', 'the API started it');
  await entry('etc').getByRole('link', { name: 'etc' }).click();
  await entry('passwd').waitFor();
  assert.match(await entry('passwd').textContent(), /root:root/);
});

test('upload, view, download and delete a file in the version 2 distro', async (t) => {
  if (missing) return skipOrFail(t, missing);
  await page.goto(`${srv.base}/distros/${NAME}/files?path=/root`);
  await card().getByTestId('files-table').waitFor({ timeout: 60_000 });
  await card().getByTestId('files-input').setInputFiles([
    { name: 'data.bin', mimeType: 'application/octet-stream', buffer: DATA },
    { name: 'note.txt', mimeType: 'text/plain', buffer: Buffer.from('from the browser\n') },
  ]);
  for (const n of ['data.bin', 'note.txt']) {
    const up = card().locator(`[data-testid=upload][data-name="${n}"][data-status=done]`);
    await up.waitFor({ timeout: 60_000 });
    assert.equal(await up.getByRole('progressbar').getAttribute('aria-valuenow'), '100');
    await entry(n).waitFor();
  }
  assert.equal((await srv.api('GET', `${FILES}/root/note.txt`)).text, 'from the browser\n');

  await entry('note.txt').getByRole('button', { name: 'note.txt', exact: true }).click();
  const dlg = page.getByRole('dialog', { name: 'note.txt' });
  assert.equal(await dlg.getByTestId('file-view').textContent(), 'from the browser\n');
  await dlg.getByRole('button', { name: 'Close', exact: true }).click();

  const [dl] = await Promise.all([page.waitForEvent('download'), entry('data.bin').getByRole('button', { name: 'Download data.bin' }).click()]);
  assert.ok(readFileSync(await dl.path()).equals(DATA), 'the downloaded bytes are the uploaded ones');
  await page.screenshot({ path: join(outDir, 'files-v2.png') });

  await entry('data.bin').getByRole('button', { name: 'Delete data.bin' }).click();
  const del = page.getByRole('dialog', { name: 'Delete data.bin?' });
  await del.getByRole('button', { name: 'Delete', exact: true }).click();
  await entry('data.bin').waitFor({ state: 'detached' });
  await until('data.bin gone from the distro', async () => (await srv.api('GET', `${FILES}/root/data.bin?stat=1`)).status === 404);
});

test('no script errors on the version 2 files page', (t) => {
  if (missing) return skipOrFail(t, missing);
  assert.deepEqual(problems, []);
});
