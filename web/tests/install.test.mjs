// Browser tests of installing a distro (POST /distros/install) against a real
// `subsys serve`: the catalog page (/install) from GET /catalog, the empty
// dashboard's one-click "Install Debian", the tarball-URL form's checks in the
// page, a real install from a URL (the busybox root file system, served by a
// small HTTP server of the test's own over plain http, pinned by its SHA-256)
// that ends in a distro which runs, a real install of an image from a registry
// of the test's own (crane registry serve on 127.0.0.1, built from
// go-containerregistry), and the server's refusals and failures,
// shown as text. No mmdebstrap build runs: the one-click install's POST is
// answered by page.route with operations of the test's own. Run with the other
// browser tests: npm test (as root). The tests run in order and share one
// server and one browser.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createHash } from 'node:crypto';
import { execFileSync, spawn } from 'node:child_process';
import { createServer, request as httpRequest } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildRootfsTar } from './lib/rootfs.mjs';
import { bytes, freePort, lines, openPage, outDir, shutdown, startServer, until, waitTermOpen, waitTermText, webDir } from './lib/harness.mjs';

const NAME = 'busybox-rootfs';
const MiB = 2 ** 20;
let srv;
let ctx;
let page;
let problems;
let tmp;
let tarBytes;
let sha;
let web;
let tarURL;
/** Requests the tarball server answered. */
const served = [];

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'subsys-webtest-install-'));
  tarBytes = readFileSync(buildRootfsTar(tmp));
  sha = createHash('sha256').update(tarBytes).digest('hex');
  // The tarball, slowly (64 KiB every 50 ms), so the page's progress shows.
  web = createServer((req, res) => {
    served.push(req.url);
    if (req.url !== `/${NAME}.tar`) {
      res.writeHead(404).end('not here\n');
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/x-tar', 'Content-Length': tarBytes.length });
    let off = 0;
    const next = () => {
      if (res.destroyed) return;
      if (off >= tarBytes.length) return void res.end();
      res.write(tarBytes.subarray(off, off + 64 * 1024));
      off += 64 * 1024;
      setTimeout(next, 50);
    };
    next();
  });
  const port = await freePort();
  await new Promise((r) => web.listen(port, '127.0.0.1', r));
  tarURL = `http://127.0.0.1:${port}/${NAME}.tar`;
  srv = await startServer({ logName: 'server-install.log' });
  ({ ctx, page, problems } = await openPage(srv));
});

after(async () => {
  await ctx?.close();
  await shutdown(srv);
  await new Promise((r) => (web ? web.close(r) : r()));
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const installPosts = (p = page) => {
  const posts = [];
  const on = (r) => r.method() === 'POST' && r.url().endsWith('/api/v1/distros/install') && posts.push(r.postData());
  p.on('request', on);
  return { posts, stop: () => p.off('request', on) };
};

const urlForm = () => page.getByRole('region', { name: 'From a tarball URL' });
const status = (scope) => scope.getByTestId('install-status');

async function gotoInstall() {
  await page.goto(`${srv.base}/install`);
  await page.getByRole('heading', { name: 'Install a distro', level: 1 }).waitFor();
}

test('the Install page lists the server’s catalog: sizes, and why what it cannot build is disabled', async () => {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Install' }).click();
  await page.getByRole('heading', { name: 'Install a distro', level: 1 }).waitFor();
  assert.equal(new URL(page.url()).pathname, '/install');
  assert.equal(await page.title(), 'Install · subsys');
  const r = await srv.api('GET', '/api/v1/catalog');
  assert.equal(r.status, 200, r.text);
  const list = r.json;
  assert.ok(list.some((e) => e.source === 'debian:bookworm'), `debian:bookworm is in the catalog: ${r.text}`);
  await page.locator('.catalog li[data-source="debian:bookworm"]').waitFor();
  assert.equal(await page.locator('.catalog li[data-source]').count(), list.length);
  for (const e of list) {
    const card = page.locator(`.catalog li[data-source="${e.source}"]`);
    assert.equal(await card.getByRole('heading', { level: 3 }).textContent(), e.title);
    if (e.kind === 'oci') {
      // A suggested image: its size is not known before the pull.
      assert.match(await card.textContent(), /· OCI image/);
      assert.doesNotMatch(await card.textContent(), /about/);
    } else assert.match(await card.textContent(), new RegExp(`about ${bytes(e.approx_bytes).replace('.', '\\.')}`));
    const btn = card.getByRole('button', { name: `Install ${e.title}…` });
    assert.equal(await btn.isDisabled(), !e.available, `${e.source}: disabled exactly when unavailable`);
    if (!e.available) {
      const why = card.locator('.release-why');
      assert.equal(await why.textContent(), e.why);
      assert.equal(await btn.getAttribute('aria-describedby'), await why.getAttribute('id'));
    }
  }
  await page.screenshot({ path: join(outDir, 'install.png'), fullPage: true });
});

test('what the catalog says is text, never markup', async () => {
  const evil = '<img src=x onerror="window.__pwned=1">';
  await page.route('**/api/v1/catalog', (route) =>
    route.fulfill({
      status: 200,
      contentType: 'application/json',
      body: JSON.stringify([
        { source: 'evil:one', distribution: 'evil', suite: 'one', title: `${evil}Evil 1`, approx_bytes: 3 * MiB, available: true },
        { source: 'evil:two', distribution: 'evil', suite: 'two', title: 'Evil 2', approx_bytes: 1, available: false, why: `<b>no</b>${evil}` },
      ]),
    }),
  );
  try {
    await gotoInstall();
    const one = page.locator('.catalog li[data-source="evil:one"]');
    await one.waitFor();
    assert.equal(await one.getByRole('heading', { level: 3 }).textContent(), `${evil}Evil 1`);
    assert.equal(await page.locator('.catalog li[data-source="evil:two"] .release-why').textContent(), `<b>no</b>${evil}`);
    await one.getByRole('button', { name: `Install ${evil}Evil 1…` }).click();
    const dlg = page.getByRole('dialog', { name: `Install ${evil}Evil 1` });
    await dlg.waitFor();
    await dlg.getByRole('button', { name: 'Cancel' }).click();
    await dlg.waitFor({ state: 'hidden' });
    assert.equal(await page.locator('main img, main b').count(), 0, 'no element made from the server’s strings');
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
  } finally {
    await page.unroute('**/api/v1/catalog');
  }
});

test('the empty dashboard installs Debian in one click: it posts {"source":"debian:bookworm"} and shows the progress in place', async () => {
  const done = 5 * MiB + 300 * 1024;
  await page.route('**/api/v1/distros/install', (route) =>
    route.fulfill({
      status: 202,
      contentType: 'application/json',
      headers: { Location: '/api/v1/operations/op-fake-1' },
      body: JSON.stringify({
        id: 'op-fake-1',
        kind: 'install',
        distro: 'debian',
        status: 'running',
        progress: { done, total: 0 },
        error: '',
        created_at: new Date().toISOString(),
      }),
    }),
  );
  try {
    await page.goto(srv.base);
    const empty = page.getByRole('region', { name: 'No distros yet' });
    await empty.waitFor();
    // The catalog and the import dialog are a click away.
    assert.equal(await empty.getByRole('link', { name: 'choose another release or a tarball URL' }).getAttribute('href'), '/install');
    await empty.getByRole('button', { name: 'import a tarball from this computer' }).click();
    const imp = page.getByRole('dialog', { name: 'Import a distro' });
    await imp.waitFor();
    await imp.getByRole('button', { name: 'Cancel' }).click();
    await imp.waitFor({ state: 'hidden' });

    const btn = empty.getByRole('button', { name: 'Install Debian' });
    await until('the catalog to enable the button', async () => !(await btn.isDisabled()));
    const sent = page.waitForRequest((r) => r.url().endsWith('/api/v1/distros/install') && r.method() === 'POST');
    await btn.click();
    assert.deepEqual((await sent).postDataJSON(), { source: 'debian:bookworm' });
    const st = status(empty);
    await st.waitFor();
    assert.equal(await st.getAttribute('data-status'), 'running');
    const bar = st.getByRole('progressbar', { name: 'Installing debian' });
    assert.equal(await bar.getAttribute('aria-valuenow'), null, 'a build’s size is unknown: the bar is indeterminate');
    assert.match(await bar.getAttribute('class'), /progress-indeterminate/);
    assert.match(await st.getByRole('status').textContent(), new RegExp(`Building debian with mmdebstrap: ${bytes(done).replace('.', '\\.')} received`));
    assert.equal(await btn.count(), 0, 'the button gives way to the progress');
    // Shown in place, not twice.
    assert.equal(await page.getByRole('region', { name: 'Activity' }).count(), 0);
    await page.screenshot({ path: join(outDir, 'install-quick.png') });
  } finally {
    await page.unroute('**/api/v1/distros/install');
  }
});

test('a refused or failed one-click install shows the server’s words as text', async () => {
  const evil = '<img src=x onerror="window.__pwned=1">';
  let reply = {
    status: 501,
    contentType: 'application/json',
    body: JSON.stringify({ error: { code: 'unsupported', message: `${evil} mmdebstrap is not installed` } }),
  };
  await page.route('**/api/v1/distros/install', (route) => route.fulfill(reply));
  try {
    await page.goto(srv.base);
    const empty = page.getByRole('region', { name: 'No distros yet' });
    const btn = empty.getByRole('button', { name: 'Install Debian' });
    await until('the catalog to enable the button', async () => (await btn.count()) > 0 && !(await btn.isDisabled()));
    await btn.click();
    const alert = empty.getByRole('alert');
    await alert.waitFor();
    assert.equal(await alert.textContent(), `${evil} mmdebstrap is not installed`);
    // A build that starts and fails: its error, from the operation, as text too.
    reply = {
      status: 202,
      contentType: 'application/json',
      body: JSON.stringify({
        id: 'op-fake-2',
        kind: 'install',
        distro: 'debian',
        status: 'failure',
        progress: { done: 1024, total: 0 },
        error: `mmdebstrap: ${evil}E: cannot reach the mirror`,
      }),
    };
    await btn.click();
    const st = status(empty);
    await st.waitFor();
    assert.equal(await st.getAttribute('data-status'), 'failure');
    assert.equal(await st.getByRole('alert').textContent(), `Installing debian failed: mmdebstrap: ${evil}E: cannot reach the mirror`);
    assert.equal(await page.locator('main img').count(), 0);
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    // Dismissed, the button is back.
    await st.getByRole('button', { name: 'Dismiss' }).click();
    await btn.waitFor();
  } finally {
    await page.unroute('**/api/v1/distros/install');
  }
});

test('the forms refuse a bad URL, a bad SHA-256 and a bad package name in the page, without a POST', async () => {
  const { posts, stop } = installPosts();
  try {
    await gotoInstall();
    const form = urlForm();
    const url = form.getByRole('textbox', { name: 'Tarball URL' });
    const sum = form.getByRole('textbox', { name: /SHA-256/ });
    const submit = form.getByRole('button', { name: 'Install from URL' });
    // The problem is the field's description (aria-describedby), not part of its name.
    const hintOf = (field) => field.evaluate((el) => document.getElementById(el.getAttribute('aria-describedby') ?? '')?.textContent ?? '');
    const cases = [
      ['ftp://example.org/rootfs.tar', '', url, 'Use an https:// address'],
      // Not http(s):// nor a path: an image reference, checked as one.
      ['-example.org/rootfs', '', url, 'Not an image reference'],
      ['alpine:3.20', '0'.repeat(64), url, 'pinned by its digest'],
      ['https://example.org/root fs.tar', '', url, 'no spaces'],
      [tarURL, '', url, 'A plain http:// download can be changed by anyone on the way'],
      [tarURL, 'abc', sum, 'A SHA-256 is 64 hexadecimal digits'],
      [tarURL, 'g'.repeat(64), sum, 'A SHA-256 is 64 hexadecimal digits'],
      ['https://example.org/', '', form.getByRole('textbox', { name: 'Name' }), 'no file name'],
    ];
    for (const [u, s, field, want] of cases) {
      await url.fill(u);
      await sum.fill(s);
      await submit.click();
      await until(`“${want}” for ${u} ${s}`, async () => (await hintOf(field)).includes(want));
      assert.equal(await field.getAttribute('aria-invalid'), 'true', `${u} ${s}`);
    }
    // The name placeholder follows the URL, or the image, as the server makes it.
    await url.fill(tarURL);
    await sum.fill('');
    assert.equal(await form.getByRole('textbox', { name: 'Name' }).getAttribute('placeholder'), NAME);
    await url.fill('127.0.0.1:5000/team/my_image:1@sha256:' + 'a'.repeat(64));
    assert.equal(await form.getByRole('textbox', { name: 'Name' }).getAttribute('placeholder'), 'my_image');
    await url.fill('oci:debian:bookworm');
    assert.equal(await form.getByRole('textbox', { name: 'Name' }).getAttribute('placeholder'), 'debian');

    // A release's extra packages.
    await page.getByRole('button', { name: /^Install Debian 12 \(bookworm\)/ }).click();
    const dlg = page.getByRole('dialog', { name: 'Install Debian 12 (bookworm)' });
    await dlg.waitFor();
    assert.equal(await dlg.getByRole('textbox', { name: 'Name' }).inputValue(), 'debian');
    const extra = dlg.getByRole('textbox', { name: 'Extra packages' });
    await extra.fill('curl, Bad_Name');
    await dlg.getByText('“Bad_Name” is not a Debian package name').waitFor();
    assert.equal(await extra.getAttribute('aria-invalid'), 'true');
    await dlg.getByRole('button', { name: 'Install', exact: true }).click();
    await extra.fill('curl, --root=/');
    await dlg.getByText('“--root=/” is not a Debian package name').waitFor();
    await dlg.getByRole('button', { name: 'Install', exact: true }).click();
    await extra.fill('curl, git ca-certificates, libstdc++6');
    assert.equal(await extra.getAttribute('aria-invalid'), null);
    await dlg.getByRole('button', { name: 'Cancel' }).click();
    await dlg.waitFor({ state: 'hidden' });
    await page.waitForTimeout(200);
  } finally {
    stop();
  }
  assert.deepEqual(posts, [], 'nothing was sent');
});

test('a tarball installs from a URL: the bytes received, then the distro, which runs', async () => {
  await gotoInstall();
  const form = urlForm();
  await form.getByRole('textbox', { name: 'Tarball URL' }).fill(tarURL);
  // sha256sum's lowercase or not: the page sends lowercase.
  await form.getByRole('textbox', { name: /SHA-256/ }).fill(` ${sha.toUpperCase()} `);
  await form.getByRole('radio', { name: 'v1' }).check();
  await form.getByText(`Empty: ${NAME}, from the file name.`).waitFor();
  const sent = page.waitForRequest((r) => r.url().endsWith('/api/v1/distros/install') && r.method() === 'POST');
  const reply = page.waitForResponse((r) => r.url().endsWith('/api/v1/distros/install'));
  const before = served.length;
  await form.getByRole('button', { name: 'Install from URL' }).click();
  assert.deepEqual((await sent).postDataJSON(), { source: tarURL, name: NAME, version: 1, sha256: sha });
  const res = await reply;
  assert.equal(res.status(), 202, await res.text());
  const st = status(form);
  // The download, as it goes: bytes of the whole (the server sends a length), on a bar that has a value.
  const progress = new RegExp(`Downloading ${NAME}: .+ of ${bytes(tarBytes.length).replace('.', '\\.')} \\(\\d+%\\)`);
  await until(
    'the download’s progress',
    async () => {
      const s = await st.getAttribute('data-status', { timeout: 100 }).catch(() => null);
      if (s && s !== 'running') throw new Error(`the install ended (${s}) before the page showed its progress`);
      if (!progress.test((await st.textContent({ timeout: 100 }).catch(() => '')) ?? '')) return false;
      // A download of known length has a determinate bar.
      const now = await st.getByRole('progressbar').getAttribute('aria-valuenow', { timeout: 100 }).catch(() => null);
      return now !== null && Number(now) > 0;
    },
    20_000,
    30,
  );
  await until('the install’s end', async () => (await st.getAttribute('data-status')) !== 'running', 60_000);
  assert.equal(await st.getAttribute('data-status'), 'success', await st.textContent());
  assert.match(await st.getByRole('status').textContent(), new RegExp(`Installed ${NAME}`));
  assert.deepEqual(served.slice(before), [`/${NAME}.tar`], 'the server downloaded the tarball once');
  // What it started is installed: the form is clear for the next one.
  assert.equal(await form.getByRole('textbox', { name: 'Tarball URL' }).inputValue(), '');
  await st.scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(outDir, 'install-url.png') });
  const d = (await srv.api('GET', `/api/v1/distros/${NAME}`)).json;
  assert.equal(d.version, 1);
  assert.equal(d.state, 'Stopped');

  // The list has it, Stopped, without a reload.
  await page.evaluate(() => (window.__noReload = true));
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Distros' }).click();
  await page.locator(`tr[data-distro="${NAME}"] [data-state="Stopped"]`).waitFor();
  // And it runs: "Open a terminal" from where the install ended.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Install' }).click();
  await status(urlForm()).getByRole('link', { name: 'Open a terminal' }).click();
  await page.waitForURL(new RegExp(`/distros/${NAME}/terminal`));
  await waitTermOpen(page);
  await page.locator('.term-frame .xterm').click();
  await page.keyboard.type('echo installed-$((6*7))\n');
  await waitTermText(page, (t) => lines(t).includes('installed-42'), { what: 'a line "installed-42"' });
  assert.equal(await page.evaluate(() => window.__noReload), true, 'no reload');
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Distros' }).click();
  await page.locator(`tr[data-distro="${NAME}"] [data-state="Running"]`).waitFor();
});

test('a name already taken: the server’s 409 shows word for word', async () => {
  await gotoInstall();
  const form = urlForm();
  await form.getByRole('textbox', { name: 'Tarball URL' }).fill(tarURL);
  await form.getByRole('textbox', { name: /SHA-256/ }).fill(sha);
  await form.getByText(`A distro named ${NAME} exists already`).waitFor();
  const reply = page.waitForResponse((r) => r.url().endsWith('/api/v1/distros/install'));
  await form.getByRole('button', { name: 'Install from URL' }).click();
  const res = await reply;
  assert.equal(res.status(), 409);
  const alert = form.getByRole('alert');
  await alert.waitFor();
  const direct = await srv.api('POST', '/api/v1/distros/install', JSON.stringify({ source: tarURL, name: NAME, version: 1, sha256: sha }), {
    'Content-Type': 'application/json',
  });
  assert.equal(direct.status, 409, direct.text);
  assert.equal(await alert.textContent(), direct.json.error.message);
  assert.equal(await status(form).count(), 0, 'nothing started');
});

test('a tarball whose SHA-256 does not match fails, the page says why, and nothing is left', async () => {
  const form = urlForm();
  await form.getByRole('textbox', { name: 'Name' }).fill('bad-sum');
  await form.getByRole('textbox', { name: /SHA-256/ }).fill('0'.repeat(64));
  const reply = page.waitForResponse((r) => r.url().endsWith('/api/v1/distros/install'));
  await form.getByRole('button', { name: 'Install from URL' }).click();
  const res = await reply;
  assert.equal(res.status(), 202, await res.text());
  const op = await res.json();
  const st = status(form);
  await until('the install’s failure', async () => (await st.getAttribute('data-status').catch(() => '')) === 'failure', 60_000);
  const end = (await srv.api('GET', `/api/v1/operations/${op.id}`)).json;
  assert.equal(end.status, 'failure');
  assert.match(end.error, /sha256|checksum/i);
  assert.equal(await st.getByRole('alert').textContent(), `Installing bad-sum failed: ${end.error}`);
  assert.equal((await srv.api('GET', '/api/v1/distros/bad-sum')).status, 404);
});

test('an image installs from a registry: the form takes its reference, the page names the layer, the distro is there', async () => {
  // A registry of the test's own on 127.0.0.1 (plain http: the server allows
  // that for localhost only), go-containerregistry's, with the busybox root
  // file system pushed as a one-layer image.
  const crane = join(tmp, 'crane');
  execFileSync('go', ['build', '-o', crane, 'github.com/google/go-containerregistry/cmd/crane'], { cwd: join(webDir, '..'), stdio: 'inherit' });
  const port = await freePort();
  const reg = spawn(crane, ['registry', 'serve', '--address', `127.0.0.1:${port}`], { stdio: 'ignore' });
  let slow;
  try {
    await until('the registry to answer', async () => (await fetch(`http://127.0.0.1:${port}/v2/`).catch(() => null))?.ok === true, 20_000);
    execFileSync(crane, ['append', '-f', join(tmp, `${NAME}.tar`), '-t', `127.0.0.1:${port}/test/busybox:1`], { stdio: 'inherit' });
    // The server pulls through a proxy that sends blobs slowly (a chunk
    // every 60 ms), so the page's progress shows.
    slow = createServer((req, res) => {
      const up = httpRequest({ host: '127.0.0.1', port, path: req.url, method: req.method, headers: req.headers }, (ur) => {
        res.writeHead(ur.statusCode, ur.headers);
        if (req.method !== 'GET' || !req.url.includes('/blobs/')) return void ur.pipe(res);
        ur.on('data', (chunk) => {
          ur.pause();
          res.write(chunk, () => setTimeout(() => ur.resume(), 60));
        });
        ur.on('end', () => res.end());
      });
      req.pipe(up);
    });
    const slowPort = await freePort();
    await new Promise((r) => slow.listen(slowPort, '127.0.0.1', r));
    const ref = `127.0.0.1:${slowPort}/test/busybox:1`;

    await gotoInstall();
    const form = urlForm();
    await form.getByRole('textbox', { name: 'Tarball URL' }).fill(ref);
    await form.getByRole('radio', { name: 'v1' }).check();
    await form.getByText('Empty: busybox, from the image’s name.').waitFor();
    const sent = page.waitForRequest((r) => r.url().endsWith('/api/v1/distros/install') && r.method() === 'POST');
    const reply = page.waitForResponse((r) => r.url().endsWith('/api/v1/distros/install'));
    await form.getByRole('button', { name: 'Install from URL or image' }).click();
    assert.deepEqual((await sent).postDataJSON(), { source: ref, name: 'busybox', version: 1 });
    const res = await reply;
    assert.equal(res.status(), 202, await res.text());
    const op = await res.json();
    const st = status(form);
    // The pull, as it goes: compressed bytes of the layers' sum, and the layer.
    await until(
      'the pull’s progress',
      async () => {
        const s = await st.getAttribute('data-status', { timeout: 100 }).catch(() => null);
        if (s && s !== 'running') throw new Error(`the install ended (${s}) before the page showed its progress`);
        return /Pulling busybox: .+ of .+ \(\d+%\) · layer 1 of 1/.test((await st.textContent({ timeout: 100 }).catch(() => '')) ?? '');
      },
      20_000,
      30,
    );
    await until('the install’s end', async () => (await st.getAttribute('data-status').catch(() => 'running')) !== 'running', 60_000);
    assert.equal(await st.getAttribute('data-status'), 'success', await st.textContent());
    assert.match(await st.getByRole('status').textContent(), /Installed busybox/);
    const end = (await srv.api('GET', `/api/v1/operations/${op.id}`)).json;
    assert.equal(end.message, 'layer 1 of 1', JSON.stringify(end));
    assert.ok(end.progress.total > 0 && end.progress.total < readFileSync(join(tmp, `${NAME}.tar`)).length, `compressed layer bytes: ${JSON.stringify(end)}`);
    const d = (await srv.api('GET', '/api/v1/distros/busybox')).json;
    assert.equal(d.version, 1);
  } finally {
    reg.kill();
    await new Promise((r) => (slow ? slow.close(r) : r()));
  }

  // A suggested image's dialog asks for no extra packages, and says it is pulled.
  await gotoInstall();
  const card = page.locator('.catalog li[data-source="alpine:3.20"]');
  await card.getByRole('button', { name: /^Install .*…$/ }).click();
  const dlg = page.getByRole('dialog');
  await dlg.getByText('Pulled by the server from its registry').waitFor();
  assert.equal(await dlg.getByRole('textbox', { name: 'Extra packages' }).count(), 0);
  await dlg.getByRole('button', { name: 'Cancel' }).click();
  await dlg.waitFor({ state: 'hidden' });
});

test('with distros, the dashboard has Install… beside Import…', async () => {
  await page.goto(srv.base);
  await page.locator(`tr[data-distro="${NAME}"]`).waitFor();
  assert.equal(await page.getByText('No distros yet').count(), 0);
  const actions = page.locator('.page-head .page-actions');
  const link = actions.getByRole('link', { name: 'Install…' });
  assert.equal(await link.getAttribute('href'), '/install');
  await actions.getByRole('button', { name: 'Import…' }).waitFor();
  await link.click();
  await page.getByRole('heading', { name: 'Install a distro', level: 1 }).waitFor();
});

test('narrow window: the Install page fits in 420 px', async () => {
  await page.setViewportSize({ width: 420, height: 820 });
  try {
    await gotoInstall();
    await page.locator('.catalog li[data-source="debian:bookworm"]').waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no horizontal scrolling (overflow ${overflow} px)`);
    // The top bar holds every link (Terminals too: a terminal is open) without overlap.
    const bar = await page.evaluate(() => {
      const r = (el) => el.getBoundingClientRect();
      const links = [...document.querySelectorAll('.nav a')].map(r);
      return { links: links.length, navRight: Math.max(...links.map((x) => x.right)), conn: r(document.querySelector('.conn')).left };
    });
    assert.equal(bar.links, 6, 'Distros, Install, Terminals, Port proxy, VM, Settings');
    assert.ok(bar.navRight <= bar.conn, `the links end (${bar.navRight}) before the connection indicator (${bar.conn})`);
    await page.screenshot({ path: join(outDir, 'install-narrow.png'), fullPage: true });
  } finally {
    await page.setViewportSize({ width: 1280, height: 800 });
  }
});

test('no script errors on the page', () => {
  // Expected: the refusals the tests asked for (409, and the injected 501).
  const real = problems.filter((p) => !/Failed to load resource: the server responded with a status of (409|501)/.test(p));
  assert.deepEqual(real, []);
});
