// Browser tests of the Files page against a real `subsys serve`, with the
// busybox root file system imported as the version 1 distro `files1` (by API,
// left stopped: the page's first request starts it). Browsing into /etc and
// back by breadcrumb and by the browser's back button, uploads by the file
// input and by a synthetic drop (multipart POSTs, bars at 100%), downloads of
// a file and of a folder as .tar.gz (their bytes), new folder, rename (and the
// server's 409), delete that asks first (a folder's with ?recursive=1), the
// text viewer (and what it refuses to show), the user the requests run as, and
// a hostile file name and contents shown as inert text. Run with the other
// browser tests: npm test (as root). The tests run in order and share one
// server, one browser and one distro.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { buildRootfsTar } from './lib/rootfs.mjs';
import { openPage, outDir, startServer, until } from './lib/harness.mjs';

const NAME = 'files1';
const FILES = `/api/v1/distros/${NAME}/files`;
// Larger than the viewer's 1 MiB, so it is offered for download, and large
// enough for the upload's bar to move.
const BIG = randomBytes(3 << 20);
// Markup, an escape sequence, and what a URL must carry encoded (%2e, ?, #).
const HOSTILE = '<img src=x onerror=alert(1)>\x1b[31mred %2e?#x';
const HOSTILE_SHOWN = '<img src=x onerror=alert(1)>\\x1b[31mred %2e?#x';
const HOSTILE_TEXT = '<script>alert(2)</script>\n<b>bold</b>\x1b]0;title\x07 and \u202eevil\n';
const HOSTILE_TEXT_SHOWN = '<script>alert(2)</script>\n<b>bold</b>\\x1b]0;title\\x07 and \\u202eevil\n';

let srv;
let ctx;
let page;
let problems;
let tmp;
const alerts = [];

async function importDistro(name, version, tarball) {
  const up = await srv.api('POST', `/api/v1/distros?name=${name}&version=${version}`, readFileSync(tarball), {
    'Content-Type': 'application/octet-stream',
  });
  assert.equal(up.status, 202, `import ${name}: ${up.text}`);
  let op = up.json;
  for (let i = 0; i < 10 && op.status === 'running'; i++) op = (await srv.api('GET', `/api/v1/operations/${op.id}?wait=20`)).json;
  assert.equal(op.status, 'success', `import ${name}: ${JSON.stringify(op)}`);
}

async function exec(argv) {
  const r = await srv.api('POST', `/api/v1/distros/${NAME}/exec`, JSON.stringify({ argv, timeout_s: 10 }), {
    'Content-Type': 'application/json',
  });
  assert.equal(r.status, 200, `exec ${argv.join(' ')}: ${r.text}`);
  return r.json;
}

/** A path of the distro as the API's URL has it: each segment percent-encoded. */
const apiPath = (p) => `${FILES}/${p.split('/').filter(Boolean).map(encodeURIComponent).join('/')}`;
const stat = (p) => srv.api('GET', `${apiPath(p)}?stat=1`);

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'subsys-webtest-files-'));
  const tarball = buildRootfsTar(tmp);
  srv = await startServer({ logName: 'server-files.log' });
  await importDistro(NAME, 1, tarball);
  ({ ctx, page, problems } = await openPage(srv));
  page.on('dialog', (d) => {
    alerts.push(d.message());
    d.dismiss().catch(() => {});
  });
});

after(async () => {
  await ctx?.close();
  await srv?.api('POST', '/api/v1/shutdown').catch(() => {});
  await srv?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const card = () => page.getByTestId('files');
const names = () => card().locator('[data-testid=file-row]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-name')));
const crumbs = () => card().getByRole('navigation', { name: 'Path' });
const here = () => {
  const u = new URL(page.url());
  return u.pathname + u.search;
};

/** Records the requests of method whose path ends in suffix while f runs. */
async function recording(method, suffix, f) {
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

test('the distro page opens Files; a stopped distro shows starting while the first request starts it', async () => {
  assert.equal((await srv.api('GET', `/api/v1/distros/${NAME}`)).json.state, 'Stopped');
  await page.goto(`${srv.base}/distros/${NAME}`);
  // Hold the first files request a little, to see the page say what it waits for.
  let held = 0;
  const hold = async (route) => {
    held++;
    await new Promise((r) => setTimeout(r, 700));
    await route.continue();
  };
  const match = (u) => u.pathname.startsWith(`${FILES}/`);
  await page.route(match, hold);
  try {
    await page.getByRole('link', { name: 'Files', exact: true }).click();
    await until('the files URL', () => here() === `/distros/${NAME}/files?path=/`);
    await card().getByTestId('files-loading').getByText(`Starting ${NAME}`).waitFor();
    await card().getByTestId('files-table').waitFor({ timeout: 60_000 });
  } finally {
    await page.unroute(match, hold);
  }
  assert.ok(held >= 1);
  assert.equal((await srv.api('GET', `/api/v1/distros/${NAME}`)).json.state, 'Running', 'the API started it');
  const list = await names();
  for (const n of ['bin', 'etc', 'root', 'tmp']) assert.ok(list.includes(n), `${n} listed: ${list}`);
  // Directories first.
  const types = await card().locator('[data-testid=file-row]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-type')));
  const firstNonDir = types.findIndex((t) => t !== 'dir');
  assert.ok(firstNonDir === -1 || types.slice(firstNonDir).every((t) => t !== 'dir'), `directories first: ${types}`);
  const headers = await card().locator('th').allTextContents();
  for (const h of ['Name', 'Size', 'Mode', 'Owner', 'Modified']) assert.ok(headers.includes(h), `column ${h}: ${headers}`);
});

test('browse into /etc and back by breadcrumb and by the back button', async () => {
  await card().locator('[data-testid=file-row][data-name=etc]').getByRole('link', { name: 'etc' }).click();
  await until('the /etc URL', () => here() === `/distros/${NAME}/files?path=/etc`);
  await card().locator('[data-testid=file-row][data-name=passwd]').waitFor();
  const r = card().locator('[data-testid=file-row][data-name=passwd]');
  assert.match(await r.textContent(), /root:root/);
  assert.match(await r.textContent(), /-rw-r--r--/);
  assert.deepEqual(await crumbs().getByRole('listitem').allTextContents(), ['/', 'etc']);
  assert.equal(await crumbs().locator('[aria-current=page]').textContent(), 'etc');
  await crumbs().getByRole('link', { name: '/' }).click();
  await until('the / URL', () => here() === `/distros/${NAME}/files?path=/`);
  await card().locator('[data-testid=file-row][data-name=etc]').waitFor();
  await page.goBack();
  await until('back in /etc', () => here() === `/distros/${NAME}/files?path=/etc`);
  await card().locator('[data-testid=file-row][data-name=passwd]').waitFor();
  await page.goBack();
  await until('back in /', () => here() === `/distros/${NAME}/files?path=/`);
  await card().locator('[data-testid=file-row][data-name=etc]').waitFor();
});

test('keyboard: Enter on a folder enters it, Enter on a file opens the viewer, Escape closes it', async () => {
  await card().locator('[data-testid=file-row][data-name=etc]').getByRole('link', { name: 'etc' }).focus();
  await page.keyboard.press('Enter');
  await until('the /etc URL', () => here() === `/distros/${NAME}/files?path=/etc`);
  const passwd = card().locator('[data-testid=file-row][data-name=passwd]').getByRole('button', { name: 'passwd', exact: true });
  await passwd.focus();
  await page.keyboard.press('Enter');
  const dlg = page.getByRole('dialog', { name: 'passwd' });
  assert.match(await dlg.getByTestId('file-view').textContent(), /^root:x:0:0:root:\/root:\/bin\/sh\n/);
  await page.keyboard.press('Escape');
  await dlg.waitFor({ state: 'hidden' });
  await page.goBack();
  await until('back in /', () => here() === `/distros/${NAME}/files?path=/`);
});

test('upload two files by the file input and one by a drop: bars reach 100%, the list and the distro have them', async () => {
  await page.goto(`${srv.base}/distros/${NAME}/files?path=/root`);
  await card().getByTestId('files-table').waitFor();
  const posts = await recording('POST', `${FILES}/root`, async (seen) => {
    await card().getByTestId('files-input').setInputFiles([
      { name: 'big.bin', mimeType: 'application/octet-stream', buffer: BIG },
      { name: 'one.txt', mimeType: 'text/plain', buffer: Buffer.from('one\n') },
    ]);
    await card().locator('[data-testid=upload][data-name="big.bin"][data-status=done]').waitFor({ timeout: 60_000 });
    await card().locator('[data-testid=upload][data-name="one.txt"][data-status=done]').waitFor({ timeout: 30_000 });
    await page.evaluate(() => {
      const dt = new DataTransfer();
      dt.items.add(new File(['two, dropped\n'], 'two.txt', { type: 'text/plain' }));
      const el = document.querySelector('[data-testid=files]');
      for (const type of ['dragenter', 'dragover', 'drop']) el.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt }));
    });
    await card().locator('[data-testid=upload][data-name="two.txt"][data-status=done]').waitFor({ timeout: 30_000 });
    await until('three POSTs', () => seen.length === 3);
  });
  for (const p of posts) assert.match(p.headers()['content-type'], /^multipart\/form-data; boundary=/);
  for (const n of ['big.bin', 'one.txt', 'two.txt']) {
    const bar = card().locator(`[data-testid=upload][data-name="${n}"]`).getByRole('progressbar');
    assert.equal(await bar.getAttribute('aria-valuenow'), '100', `${n} at 100%`);
    await card().locator(`[data-testid=file-row][data-name="${n}"]`).waitFor();
  }
  assert.match(await card().locator('[data-testid=file-row][data-name="big.bin"]').textContent(), /3\.0 MiB/);
  const got = await srv.api('GET', `${FILES}/root/two.txt`);
  assert.equal(got.status, 200);
  assert.equal(got.text, 'two, dropped\n');
  assert.equal((await stat('/root/big.bin')).json.size, BIG.length);
  await page.waitForTimeout(300); // the bars' width transition, for the screenshot
  await page.screenshot({ path: join(outDir, 'files.png') });
});

test('download a file: the same bytes, under its name', async () => {
  const [dl] = await Promise.all([
    page.waitForEvent('download'),
    card().locator('[data-testid=file-row][data-name="big.bin"]').getByRole('button', { name: 'Download big.bin' }).click(),
  ]);
  assert.equal(dl.suggestedFilename(), 'big.bin');
  assert.ok(readFileSync(await dl.path()).equals(BIG), 'the downloaded bytes are the uploaded ones');
});

test('download a folder as .tar.gz: a gzip of its tar', async () => {
  await page.goto(`${srv.base}/distros/${NAME}/files?path=/`);
  const reqs = await recording('GET', `${FILES}/etc`, async () => {
    const [dl] = await Promise.all([
      page.waitForEvent('download'),
      card().locator('[data-testid=file-row][data-name=etc]').getByRole('button', { name: 'Download etc as .tar.gz' }).click(),
    ]);
    assert.equal(dl.suggestedFilename(), 'etc.tar.gz');
    const gz = readFileSync(await dl.path());
    assert.deepEqual([...gz.subarray(0, 2)], [0x1f, 0x8b], 'a gzip file');
    const tar = gunzipSync(gz);
    assert.ok(tar.includes(Buffer.from('root:x:0:0:root:/root:/bin/sh')), 'the tar holds /etc/passwd');
  });
  assert.equal(new URL(reqs[0].url()).searchParams.get('archive'), 'tar.gz');
  assert.ok(reqs[0].headers().authorization?.startsWith('Bearer '), 'the session header, not a cookie');
});

test('new folder: refused names in the page, then made', async () => {
  await page.goto(`${srv.base}/distros/${NAME}/files?path=/root`);
  await card().getByTestId('files-table').waitFor();
  const posts = await recording('POST', `${FILES}/root/made`, async (seen) => {
    await card().getByRole('button', { name: 'New folder' }).click();
    const dlg = page.getByRole('dialog', { name: 'New folder' });
    const field = dlg.getByRole('textbox', { name: 'Folder name' });
    for (const bad of ['a/b', '..']) {
      await field.fill(bad);
      assert.equal(await field.getAttribute('aria-invalid'), 'true', bad);
    }
    await field.fill('made');
    await dlg.getByRole('button', { name: 'Create' }).click();
    await dlg.waitFor({ state: 'hidden' });
    await until('the POST', () => seen.length === 1);
  });
  assert.deepEqual(JSON.parse(posts[0].postData()), { action: 'mkdir', parents: false });
  await card().locator('[data-testid=file-row][data-name=made][data-type=dir]').waitFor();
  assert.equal((await stat('/root/made')).json.type, 'dir');
});

test('rename: the JSON POST, and a taken name shows the server’s 409', async () => {
  const posts = await recording('POST', `${FILES}/root/one.txt`, async (seen) => {
    await card().locator('[data-testid=file-row][data-name="one.txt"]').getByRole('button', { name: 'Rename one.txt' }).click();
    const dlg = page.getByRole('dialog', { name: 'Rename one.txt' });
    const field = dlg.getByRole('textbox', { name: 'New name' });
    assert.equal(await field.inputValue(), 'one.txt');
    await field.fill('uno.txt');
    await dlg.getByText('Becomes /root/uno.txt').waitFor();
    await dlg.getByRole('button', { name: 'Rename' }).click();
    await dlg.waitFor({ state: 'hidden' });
    await until('the POST', () => seen.length === 1);
  });
  assert.deepEqual(JSON.parse(posts[0].postData()), { action: 'rename', to: '/root/uno.txt' });
  await card().locator('[data-testid=file-row][data-name="uno.txt"]').waitFor();
  await card().locator('[data-testid=file-row][data-name="one.txt"]').waitFor({ state: 'detached' });
  assert.equal((await stat('/root/one.txt')).status, 404);

  // two.txt → uno.txt: taken; the server refuses, the dialog says so in its words and stays.
  await card().locator('[data-testid=file-row][data-name="two.txt"]').getByRole('button', { name: 'Rename two.txt' }).click();
  const dlg = page.getByRole('dialog', { name: 'Rename two.txt' });
  await dlg.getByRole('textbox', { name: 'New name' }).fill('uno.txt');
  const replyP = page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === `${FILES}/root/two.txt`);
  await dlg.getByRole('button', { name: 'Rename' }).click();
  const reply = await replyP;
  assert.equal(reply.status(), 409);
  const body = await reply.json();
  assert.equal(body.error.code, 'file_exists');
  await dlg.getByRole('alert').getByText(body.error.message, { exact: true }).waitFor();
  await dlg.getByRole('button', { name: 'Cancel' }).click();
  await dlg.waitFor({ state: 'hidden' });
  assert.equal((await srv.api('GET', `${FILES}/root/uno.txt`)).text, 'one\n', 'uno.txt was not replaced');
});

test('delete asks first: cancel keeps the file, confirm removes it; a folder goes with ?recursive=1', async () => {
  const dels = await recording('DELETE', `${FILES}/root/uno.txt`, async (seen) => {
    const del = () => card().locator('[data-testid=file-row][data-name="uno.txt"]').getByRole('button', { name: 'Delete uno.txt' }).click();
    await del();
    let dlg = page.getByRole('dialog', { name: 'Delete uno.txt?' });
    await dlg.waitFor();
    await dlg.getByRole('button', { name: 'Cancel' }).click();
    await dlg.waitFor({ state: 'hidden' });
    await page.waitForTimeout(200);
    assert.equal(seen.length, 0, 'cancelling deletes nothing');
    assert.equal((await stat('/root/uno.txt')).status, 200);
    await del();
    dlg = page.getByRole('dialog', { name: 'Delete uno.txt?' });
    await dlg.getByRole('button', { name: 'Delete', exact: true }).click();
    await dlg.waitFor({ state: 'hidden' });
  });
  assert.equal(dels.length, 1);
  assert.equal(new URL(dels[0].url()).searchParams.get('recursive'), null, 'a file is deleted without recursive');
  await card().locator('[data-testid=file-row][data-name="uno.txt"]').waitFor({ state: 'detached' });
  assert.equal((await stat('/root/uno.txt')).status, 404);

  // A folder with a file in it: the dialog says everything in it goes.
  assert.equal((await exec(['touch', '/root/made/inside'])).exit_code, 0);
  const dirDels = await recording('DELETE', `${FILES}/root/made`, async () => {
    await card().locator('[data-testid=file-row][data-name=made]').getByRole('button', { name: 'Delete made' }).click();
    const dlg = page.getByRole('dialog', { name: 'Delete made?' });
    assert.match(await dlg.textContent(), /everything in it/);
    await dlg.getByRole('button', { name: 'Delete', exact: true }).click();
    await dlg.waitFor({ state: 'hidden' });
  });
  assert.equal(dirDels.length, 1);
  assert.equal(new URL(dirDels[0].url()).searchParams.get('recursive'), '1');
  await card().locator('[data-testid=file-row][data-name=made]').waitFor({ state: 'detached' });
  assert.equal((await stat('/root/made')).status, 404);
});

test('the text viewer shows a small text file; a large or binary one is offered for download', async () => {
  await card().locator('[data-testid=file-row][data-name="two.txt"]').getByRole('button', { name: 'two.txt', exact: true }).click();
  let dlg = page.getByRole('dialog', { name: 'two.txt' });
  const pre = dlg.getByTestId('file-view');
  await pre.waitFor();
  assert.equal(await pre.textContent(), 'two, dropped\n');
  await dlg.getByRole('button', { name: 'Close', exact: true }).click();
  await dlg.waitFor({ state: 'hidden' });

  await card().locator('[data-testid=file-row][data-name="big.bin"]').getByRole('button', { name: 'big.bin', exact: true }).click();
  dlg = page.getByRole('dialog', { name: 'big.bin' });
  assert.match(await dlg.getByTestId('file-not-shown').textContent(), /too large/);
  assert.equal(await dlg.getByTestId('file-view').count(), 0);
  await dlg.getByRole('button', { name: 'Close', exact: true }).click();

  assert.equal((await exec(['sh', '-c', 'head -c 300 /bin/busybox > /root/elf.bin'])).exit_code, 0);
  await card().getByRole('button', { name: 'Refresh' }).click();
  await card().locator('[data-testid=file-row][data-name="elf.bin"]').getByRole('button', { name: 'elf.bin', exact: true }).click();
  dlg = page.getByRole('dialog', { name: 'elf.bin' });
  assert.match(await dlg.getByTestId('file-not-shown').textContent(), /not text/);
  const [dl] = await Promise.all([page.waitForEvent('download'), dlg.getByRole('button', { name: 'Download', exact: true }).click()]);
  assert.equal(readFileSync(await dl.path()).length, 300);
  await dlg.getByRole('button', { name: 'Close', exact: true }).click();
});

test('a hostile file name and contents render as inert text', async () => {
  const path = `/root/${HOSTILE}`;
  assert.equal((await exec(['sh', '-c', 'printf "%s" "$1" > "$2"', 'sh', HOSTILE_TEXT, path])).exit_code, 0);
  await card().getByRole('button', { name: 'Refresh' }).click();
  const r = card().locator('[data-testid=file-row]').filter({ hasText: 'onerror' });
  await r.waitFor();
  assert.equal(await r.getAttribute('data-name'), HOSTILE, 'the row is the file');
  assert.equal(await r.getByRole('button', { name: HOSTILE_SHOWN, exact: true }).textContent(), HOSTILE_SHOWN, 'the name as text, the escape visible');
  assert.equal(await page.locator('main img').count(), 0, 'no element made from the name');
  await r.getByRole('button', { name: HOSTILE_SHOWN, exact: true }).click();
  const dlg = page.getByRole('dialog', { name: HOSTILE_SHOWN });
  const pre = dlg.getByTestId('file-view');
  await pre.waitFor();
  assert.equal(await pre.textContent(), HOSTILE_TEXT_SHOWN);
  assert.equal(await pre.locator('*').count(), 0, 'the contents made no element');
  assert.equal(await page.locator('script:not([src])').count(), 0);
  await page.screenshot({ path: join(outDir, 'files-hostile.png') });
  await dlg.getByRole('button', { name: 'Close', exact: true }).click();
  // Delete asks with the name shown as text too.
  await r.getByRole('button', { name: `Delete ${HOSTILE_SHOWN}`, exact: true }).click();
  const del = page.getByRole('dialog', { name: `Delete ${HOSTILE_SHOWN}?` });
  await del.getByRole('button', { name: 'Delete', exact: true }).click();
  await r.waitFor({ state: 'detached' });
  assert.equal((await stat(path)).status, 404);
  assert.deepEqual(alerts, [], 'nothing ran');
});

test('the user the requests run as: an unknown one is the server’s 404, another one’s rights apply', async () => {
  const field = page.getByRole('textbox', { name: 'User' });
  assert.equal(await field.inputValue(), 'root', 'the default user');
  await field.fill('ghost');
  const ghostP = page.waitForResponse((r) => new URL(r.url()).searchParams.get('user') === 'ghost');
  await page.getByRole('button', { name: 'Use', exact: true }).click();
  await until('the user in the URL', () => here() === `/distros/${NAME}/files?path=/root&user=ghost`);
  const ghost = await ghostP;
  assert.equal(ghost.status(), 404);
  const ghostErr = (await ghost.json()).error;
  assert.equal(ghostErr.code, 'user_not_found');
  await card().getByRole('alert').getByText(ghostErr.message, { exact: true }).waitFor();

  // bob (uid 1000) may read /etc but not write /root.
  assert.equal((await exec(['sh', '-c', 'echo bob:x:1000:1000::/tmp:/bin/sh >> /etc/passwd; chmod 755 /root'])).exit_code, 0);
  await field.fill('bob');
  await page.getByRole('button', { name: 'Use', exact: true }).click();
  await until('bob in the URL', () => here() === `/distros/${NAME}/files?path=/root&user=bob`);
  await card().locator('[data-testid=file-row][data-name="two.txt"]').waitFor();
  const refusedP = page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === `${FILES}/root`);
  const posts = await recording('POST', `${FILES}/root`, async (seen) => {
    await card().getByTestId('files-input').setInputFiles([{ name: 'bob.txt', mimeType: 'text/plain', buffer: Buffer.from('bob\n') }]);
    await card().locator('[data-testid=upload][data-name="bob.txt"][data-status=failed]').waitFor();
    await until('the POST', () => seen.length === 1);
  });
  assert.equal(new URL(posts[0].url()).searchParams.get('user'), 'bob');
  const refused = await refusedP;
  assert.equal(refused.status(), 403);
  const refusedErr = (await refused.json()).error;
  assert.equal(refusedErr.code, 'permission_denied');
  assert.equal(await card().locator('[data-testid=upload][data-name="bob.txt"]').getByRole('alert').textContent(), `bob.txt: ${refusedErr.message}`);
  assert.equal((await stat('/root/bob.txt')).status, 404, 'nothing was written');
  // Back to the default user: the page drops ?user=.
  await field.fill('root');
  await page.getByRole('button', { name: 'Use', exact: true }).click();
  await until('no user in the URL', () => here() === `/distros/${NAME}/files?path=/root`);
  await card().locator('[data-testid=file-row][data-name="two.txt"]').waitFor();
});

test('narrow window: the files table fits without Mode, Owner and Modified', async () => {
  await page.setViewportSize({ width: 420, height: 800 });
  try {
    await card().getByRole('button', { name: 'Clear' }).click();
    await card().locator('[data-testid=file-row][data-name="two.txt"]').waitFor();
    const r = card().locator('[data-testid=file-row][data-name="two.txt"]');
    for (const col of ['mode', 'owner', 'mtime']) assert.equal(await r.locator(`td.files-col-${col}`).isVisible(), false, col);
    const box = await r.boundingBox();
    assert.ok(box.height < 60, `one line per entry (${box.height}px)`);
    assert.ok(await r.getByRole('button', { name: 'Delete two.txt' }).isVisible());
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px`);
    await page.screenshot({ path: join(outDir, 'files-narrow.png') });
  } finally {
    await page.setViewportSize({ width: 1280, height: 800 });
  }
});

test('no script errors on the files page', () => {
  // Expected: the refused rename (409), the unknown user (404), bob's refused upload (403).
  const real = problems.filter((p) => !/Failed to load resource: the server responded with a status of (409|404|403)/.test(p));
  assert.deepEqual(real, []);
});
