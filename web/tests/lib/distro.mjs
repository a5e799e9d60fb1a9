// Distros of a test's server through the REST API: importing a root file
// system and waiting for its operation, and running a command in a distro
// (POST /exec). The tests' set-up uses them; the page under test never does.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

/**
 * Imports the tarball as the distro name of this version through srv's API
 * (POST /distros) and waits for the import's operation (up to 10 long polls of
 * 20 s). Fails the test unless the import is accepted and succeeds.
 */
export async function importDistro(srv, name, version, tarball) {
  const up = await srv.api('POST', `/api/v1/distros?name=${name}&version=${version}`, readFileSync(tarball), {
    'Content-Type': 'application/octet-stream',
  });
  assert.equal(up.status, 202, `import ${name}: ${up.text}`);
  let op = up.json;
  for (let i = 0; i < 10 && op.status === 'running'; i++) op = (await srv.api('GET', `/api/v1/operations/${op.id}?wait=20`)).json;
  assert.equal(op.status, 'success', `import ${name}: ${JSON.stringify(op)}`);
}

/**
 * Runs argv in the distro name through srv's exec API with a timeout in
 * seconds (a stopped distro is started, a version 2 one boots the VM: give
 * the first command time) and returns the reply ({exit_code, stdout, stderr}).
 * Fails the test unless the server runs it, and with exitZero unless it exits 0.
 */
export async function execIn(srv, name, argv, { timeout = 10, exitZero = false } = {}) {
  const r = await srv.api('POST', `/api/v1/distros/${name}/exec`, JSON.stringify({ argv, timeout_s: timeout }), {
    'Content-Type': 'application/json',
  });
  assert.equal(r.status, 200, `exec ${argv.join(' ')}: ${r.text}`);
  if (exitZero) assert.equal(r.json.exit_code, 0, `exec ${argv.join(' ')}: ${JSON.stringify(r.json)}`);
  return r.json;
}

/** The argv that runs script with the distro's /bin/sh. */
export const sh = (script) => ['/bin/sh', '-c', script];
