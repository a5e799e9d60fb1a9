// Browser tests of the distro page's Limits card against a real `subsys
// serve`, with the busybox root file system imported as the version 2
// distro `lim` (its limits live in the utility VM's cgroup, which every
// host has; a version 1 distro's need the host's cgroup v2 controllers):
// the card shows the limits and the use, edits and saves them (the PATCH
// lands: read back by API), shows the server's refusal of a limit out of
// bounds, and shows the out-of-memory line after a process of the distro
// is OOM-killed (an allocation past memory_max through the exec API). Needs
// root, QEMU and the test kernel (/var/cache/subsys-test/kernel, or
// $SUBSYS_KERNEL_DIR). The tests run in order and share one server, one VM
// and one browser.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildRootfsTar } from './lib/rootfs.mjs';
import { openPage, outDir, startServer, until } from './lib/harness.mjs';

const DISTRO = 'lim';
const KERNEL_DIR = process.env.SUBSYS_KERNEL_DIR || '/var/cache/subsys-test/kernel';
let srv;
let ctx;
let page;
let problems;
let tmp;
/** Why this machine cannot run these tests; empty when it can. */
let missing = '';

/** Skips t, or fails it under SUBSYS_TEST_STRICT=1, as internal/testenv does. */
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

async function execIn(script, timeout = 60) {
  const r = await srv.api('POST', `/api/v1/distros/${DISTRO}/exec`, JSON.stringify({ argv: ['/bin/sh', '-c', script], timeout_s: timeout }), {
    'Content-Type': 'application/json',
  });
  assert.equal(r.status, 200, `exec ${script}: ${r.text}`);
  return r.json;
}

const getDistro = async () => (await srv.api('GET', `/api/v1/distros/${DISTRO}`)).json;

before(async () => {
  missing = whatIsMissing();
  if (missing) return;
  tmp = mkdtempSync(join(tmpdir(), 'subsys-webtest-limits-'));
  const tarball = buildRootfsTar(tmp);
  srv = await startServer({
    logName: 'server-limits.log',
    prepare: (data) => {
      mkdirSync(join(data, 'vm'), { recursive: true, mode: 0o700 });
      symlinkSync(KERNEL_DIR, join(data, 'vm', 'kernel'));
    },
  });
  const up = await srv.api('POST', `/api/v1/distros?name=${DISTRO}&version=2`, readFileSync(tarball), {
    'Content-Type': 'application/octet-stream',
  });
  assert.equal(up.status, 202, `import: ${up.text}`);
  let op = up.json;
  for (let i = 0; i < 10 && op.status === 'running'; i++) op = (await srv.api('GET', `/api/v1/operations/${op.id}?wait=20`)).json;
  assert.equal(op.status, 'success', `import: ${JSON.stringify(op)}`);
  // The first command boots the VM (20-30 s under TCG).
  await execIn('true', 180);
  ({ ctx, page, problems } = await openPage(srv));
});

after(async () => {
  await ctx?.close();
  if (srv) {
    let qemu = 0;
    try {
      qemu = Number(readFileSync(join(srv.data, 'run', 'vm', 'qemu.pid'), 'utf8').trim());
    } catch {
      // no VM
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
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const card = () => page.getByTestId('limits');
const input = (name) => card().locator(`input[name=${name}]`);

test('the Limits card shows no limits and the running distro’s use', async (t) => {
  if (missing) return skipOrFail(t, missing);
  await page.goto(`${srv.base}/distros/${DISTRO}`);
  await card().getByRole('heading', { name: 'Limits' }).waitFor();
  assert.equal(await input('memory_max').inputValue(), '');
  assert.equal(await input('cpu_max').inputValue(), '');
  assert.equal(await input('pids_max').inputValue(), '');
  // The sampler's first figures arrive within its 5 s interval.
  await until('the memory and process use', async () => {
    const mem = await card().getByTestId('limits-memory-use').textContent();
    const pids = await card().getByTestId('limits-pids-use').textContent();
    return /uses \d/.test(mem) && !/uses 0 B/.test(mem) && /^[1-9]\d* running/.test(pids) && [mem, pids];
  }, 20_000);
});

test('edit and save: the PATCH lands and the card shows the limits', async (t) => {
  if (missing) return skipOrFail(t, missing);
  await input('memory_max').fill('256M');
  await input('cpu_max').fill('1.5');
  await input('pids_max').fill('300');
  const [req] = await Promise.all([
    page.waitForRequest((r) => r.method() === 'PATCH' && new URL(r.url()).pathname === `/api/v1/distros/${DISTRO}`),
    card().getByRole('button', { name: 'Save' }).click(),
  ]);
  assert.deepEqual(JSON.parse(req.postData()), { memory_max: 256 * 2 ** 20, cpu_max: 1.5, pids_max: 300 });
  await until('the limits read back by API', async () => {
    const d = await getDistro();
    return d.memory_max === 256 * 2 ** 20 && d.cpu_max === 1.5 && d.pids_max === 300 && d;
  });
  await until('the card to show the memory limit beside the use', async () => /of 256 MiB/.test(await card().getByTestId('limits-memory-use').textContent()));
  assert.match(await card().getByTestId('limits-pids-use').textContent(), /of 300/);
  assert.equal(await card().getByRole('button', { name: 'Save' }).isDisabled(), true, 'nothing left to save');
});

test('a limit out of bounds shows the server’s reason, and nothing changes', async (t) => {
  if (missing) return skipOrFail(t, missing);
  await input('memory_max').fill('1M');
  await card().getByRole('button', { name: 'Save' }).click();
  const box = card().getByRole('alert');
  await box.waitFor();
  assert.match(await box.textContent(), /memory_max .*32 MiB/);
  assert.equal((await getDistro()).memory_max, 256 * 2 ** 20);
  // A field that is no number is refused in the page, before any request.
  await input('memory_max').fill('lots');
  await card().getByRole('button', { name: 'Save' }).click();
  assert.match(await card().getByRole('alert').textContent(), /Memory: write a size/);
});

test('an OOM kill in the distro shows as a line on the card', async (t) => {
  if (missing) return skipOrFail(t, missing);
  await input('memory_max').fill('64M');
  await input('cpu_max').fill('');
  await input('pids_max').fill('0');
  await card().getByRole('button', { name: 'Save' }).click();
  await until('memory_max 64 MiB by API', async () => (await getDistro()).memory_max === 64 * 2 ** 20);
  const d = await getDistro();
  assert.equal(d.cpu_max, undefined, 'an empty field removes the limit');
  assert.equal(d.pids_max, undefined, '0 removes the limit');
  assert.equal(await card().getByTestId('limits-oom').count(), 0, 'no OOM line before an OOM kill');
  // tail keeps the endless line it reads: 200 MB past the 64 MiB limit.
  const res = await execIn('head -c 200000000 /dev/zero | tail > /dev/null; echo status $?', 120);
  assert.match(res.stdout, /status 137/, `tail was not OOM-killed: ${JSON.stringify(res)}`);
  const line = card().getByTestId('limits-oom');
  await line.waitFor({ timeout: 30_000 });
  assert.match(await line.textContent(), /Out of memory: a process was killed at \d{1,2}:\d{2}/);
  // A page opened later shows it too, from the distro's own record.
  await page.reload();
  await card().getByTestId('limits-oom').waitFor({ timeout: 15_000 });
  const after = await getDistro();
  assert.ok(after.oom_kills >= 1 && after.last_oom_at, JSON.stringify(after));
  assert.deepEqual(problems.filter((p) => !/status of 400/.test(p)), [], 'console errors');
  await page.screenshot({ path: join(outDir, 'limits.png'), fullPage: true });
});
