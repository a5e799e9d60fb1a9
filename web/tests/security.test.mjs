// A hostile page on another localhost port — what a dev server inside a distro
// is — while the dashboard is signed in, in the same browser. The page tries
// every way a page can make the browser talk to subsys: <img>, fetch with and
// without credentials, a form POST, a WebSocket and an EventSource, and reads
// document.cookie and its own storage. Nothing may run, be read or change;
// checked afterwards through the API. A control shows the same calls from the
// dashboard's own origin do run, so the probes could see an attack succeed.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createServer } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildRootfsTar } from './lib/rootfs.mjs';
import { execIn, importDistro } from './lib/distro.mjs';
import { freePort, launchBrowser, shutdown, startServer } from './lib/harness.mjs';

const DISTRO = 'victim';
let srv;
let ctx;
let page;
let tmp;
let hostile;
let hostilePort;

const exec = (argv) => execIn(srv, DISTRO, argv);
const exists = async (path) => (await exec(['test', '-e', path])).exit_code === 0;

// The attack page. TARGETS are the server's two loopback names; every attack
// records what it saw in window.results, and window.done is set at the end.
function hostilePage(serverPort) {
  return `<!doctype html><meta charset="utf-8"><title>totally a dev server</title>
<body><script>
const results = (window.results = []);
const note = (what, v) => results.push({ what, v: String(v) });
const TARGETS = ['http://localhost:${serverPort}', 'http://127.0.0.1:${serverPort}'];
const cmd = (m) => encodeURIComponent('touch /tmp/pwned-' + m);
const settle = (p, ms = 3000) => Promise.race([p, new Promise((r) => setTimeout(() => r('timeout'), ms))]);
(async () => {
  note('cookie', document.cookie);
  note('storage', JSON.stringify(Object.assign({}, localStorage)));
  let i = 0;
  for (const T of TARGETS) {
    i++;
    // <img>: a GET with whatever the browser adds by itself.
    await settle(new Promise((r) => { const im = new Image(); im.onload = () => r('img loaded'); im.onerror = () => r('img error'); im.src = T + '/api/v1/distros/${DISTRO}/terminal?user=root&command=' + cmd('img' + i); })).then((v) => note('img', v));
    // fetch, with credentials, no-cors: fire and forget, reply opaque.
    await settle(fetch(T + '/api/v1/distros/${DISTRO}/exec', { method: 'POST', mode: 'no-cors', credentials: 'include', headers: { 'Content-Type': 'text/plain' }, body: JSON.stringify({ argv: ['touch', '/tmp/pwned-fetchnc' + i] }) }).then((r) => 'type ' + r.type + ' status ' + r.status, (e) => 'error ' + e)).then((v) => note('fetch no-cors', v));
    // fetch, cors, with and without credentials: an attempt to read.
    for (const credentials of ['include', 'omit']) {
      await settle(fetch(T + '/api/v1/distros', { credentials }).then(async (r) => 'status ' + r.status + ' body ' + (await r.text()).slice(0, 80), (e) => 'error ' + e)).then((v) => note('fetch read ' + credentials, v));
      await settle(fetch(T + '/api/v1/distros/${DISTRO}/exec', { method: 'POST', credentials, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ argv: ['touch', '/tmp/pwned-fetch' + credentials + i] }) }).then((r) => 'status ' + r.status, (e) => 'error ' + e)).then((v) => note('fetch exec ' + credentials, v));
    }
    // A form POST into a frame.
    await settle(new Promise((r) => {
      const f = document.createElement('iframe'); f.name = 'sink' + i; f.onload = () => r('form loaded'); document.body.append(f);
      const form = document.createElement('form'); form.method = 'POST'; form.target = f.name; form.enctype = 'text/plain';
      form.action = T + '/api/v1/distros/${DISTRO}/exec';
      const inp = document.createElement('input'); inp.name = '{"argv":["touch","/tmp/pwned-form' + i + '"],"x":"'; inp.value = '"}'; form.append(inp);
      document.body.append(form); form.submit();
    })).then((v) => note('form', v));
    // A WebSocket to a terminal that would run a command.
    await settle(new Promise((r) => {
      const ws = new WebSocket(T.replace('http', 'ws') + '/api/v1/distros/${DISTRO}/terminal?user=root&command=' + cmd('ws' + i));
      ws.onopen = () => r('ws open'); ws.onerror = () => r('ws error'); ws.onmessage = (e) => r('ws message ' + e.data);
    })).then((v) => note('websocket', v));
    // The event stream.
    await settle(new Promise((r) => {
      const es = new EventSource(T + '/api/v1/events', { withCredentials: true });
      es.onopen = () => r('es open'); es.onerror = () => { es.close(); r('es error'); }; es.addEventListener('snapshot', (e) => r('es snapshot ' + e.data.slice(0, 80)));
    })).then((v) => note('eventsource', v));
  }
  window.done = true;
})();
</script>`;
}

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'subsys-webtest-sec-'));
  srv = await startServer({ logName: 'server-security.log' });
  await importDistro(srv, DISTRO, 1, buildRootfsTar(tmp));
  const st = await srv.api('POST', `/api/v1/distros/${DISTRO}/start`);
  assert.equal(st.status, 200, `start: ${st.text}`);

  const serverPort = new URL(srv.base).port;
  hostilePort = await freePort();
  hostile = createServer((req, res) => {
    // A cookie of the hostile origin's own: document.cookie on that page shows
    // it, so an empty reading of subsys's cookies is not a blind probe.
    res.writeHead(200, { 'Content-Type': 'text/html', 'Set-Cookie': 'hostile-probe=1; Path=/' });
    res.end(hostilePage(serverPort));
  });
  await new Promise((r) => hostile.listen(hostilePort, '127.0.0.1', r));

  ctx = await launchBrowser();
  page = ctx.pages()[0] ?? (await ctx.newPage());
  page.setDefaultTimeout(15_000);
  // Signed in on both loopback names, as an admin who used either would be.
  for (const base of [srv.base, srv.base.replace('127.0.0.1', 'localhost')]) {
    await page.goto(`${base}/#token=${encodeURIComponent(srv.token)}`);
    await page.locator('.conn-ok').waitFor();
  }
});

after(async () => {
  await ctx?.close();
  hostile?.close();
  await shutdown(srv);
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test('control: the dashboard origin with its session does run a command', async () => {
  const r = await page.evaluate(async (d) => {
    const s = localStorage.getItem('subsys.session');
    const res = await fetch(`/api/v1/distros/${d}/exec`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${s}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ argv: ['touch', '/tmp/control'] }),
    });
    return res.status;
  }, DISTRO);
  assert.equal(r, 200);
  assert.ok(await exists('/tmp/control'), 'the control marker shows through the API');
});

for (const host of ['localhost', '127.0.0.1']) {
  test(`a page on ${host}:<another port> runs nothing, reads nothing, changes nothing`, async () => {
    const p = await ctx.newPage();
    try {
      await p.goto(`http://${host}:${hostilePort}/`);
      await p.waitForFunction(() => window.done === true, null, { timeout: 60_000 });
      const results = await p.evaluate(() => window.results);
      const by = (w) => results.filter((r) => r.what === w).map((r) => r.v);
      // It can read cookies of localhost (its own probe), and none of ours.
      assert.deepEqual(by('cookie'), ['hostile-probe=1'], 'document.cookie shows the page its own cookie and nothing of subsys');
      assert.deepEqual(by('storage'), ['{}'], 'the session is not in this origin’s storage');
      for (const v of by('fetch read include').concat(by('fetch read omit'))) {
        assert.ok(!v.includes('"name"'), `a cross-origin read got data: ${v}`);
      }
      for (const v of by('fetch exec include').concat(by('fetch exec omit'))) {
        assert.ok(!/status 2/.test(v), `a cross-origin exec succeeded: ${v}`);
      }
      for (const v of by('websocket')) assert.notEqual(v, 'ws open', 'a cross-origin websocket opened');
      for (const v of by('eventsource')) assert.ok(!v.startsWith('es snapshot') && v !== 'es open', `the event stream opened: ${v}`);
    } finally {
      await p.close();
    }
    // Through the API: no marker, no terminal session, the distro as it was.
    const ls = await exec(['ls', '/tmp']);
    assert.ok(!/pwned/.test(ls.stdout), `attack markers in /tmp: ${ls.stdout}`);
    const terms = await srv.api('GET', `/api/v1/distros/${DISTRO}/terminals`);
    assert.deepEqual(terms.json ?? [], [], 'no terminal session was opened');
    const d = await srv.api('GET', `/api/v1/distros/${DISTRO}`);
    assert.equal(d.json.state, 'Running');
  });
}

test('the dashboard is still signed in and live after the attacks', async () => {
  await page.reload();
  await page.locator('.conn-ok').waitFor();
});
