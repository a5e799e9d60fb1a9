// Builds the tiny busybox root file system the browser tests import: the host's
// static busybox as bin/busybox, a symlink per applet the tests use, and an
// /etc/passwd with root. Written with the host's tar (owner root, numeric ids).
import { execFileSync } from 'node:child_process';
import { mkdirSync, copyFileSync, symlinkSync, writeFileSync, mkdtempSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BUSYBOX = process.env.SUBSYS_TEST_BUSYBOX || '/usr/bin/busybox';
const APPLETS = ['sh', 'ash', 'ls', 'cat', 'echo', 'stty', 'sleep', 'yes', 'head', 'base64', 'id',
  'hostname', 'env', 'true', 'false', 'touch', 'test', 'pwd', 'mkdir', 'rm', 'ps', 'uname', 'tail', 'wc', 'seq', 'clear', 'reset', 'tty',
  // Listeners for the ports tests.
  'httpd', 'nc', 'killall'];

/** Returns the path of a new .tar holding the busybox root file system. */
export function buildRootfsTar(dir = mkdtempSync(join(tmpdir(), 'subsys-rootfs-'))) {
  const root = join(dir, 'rootfs');
  for (const d of ['bin', 'etc', 'root', 'tmp', 'proc', 'sys', 'dev', 'run', 'mnt', 'usr/bin']) {
    mkdirSync(join(root, d), { recursive: true });
  }
  chmodSync(join(root, 'tmp'), 0o1777);
  copyFileSync(BUSYBOX, join(root, 'bin/busybox'));
  chmodSync(join(root, 'bin/busybox'), 0o755);
  for (const a of APPLETS) symlinkSync('busybox', join(root, 'bin', a));
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(join(root, 'etc/group'), 'root:x:0:\n');
  writeFileSync(join(root, 'etc/profile'), 'export PATH=/bin:/usr/bin\n');
  const tar = join(dir, 'busybox-rootfs.tar');
  execFileSync('tar', ['-C', root, '--owner=0', '--group=0', '--numeric-owner', '-cf', tar, '.']);
  return tar;
}

/** A file that is not an archive, for the error path of the import dialog. */
export function buildBadTar(dir) {
  const p = join(dir, 'not-an-archive.tar');
  writeFileSync(p, 'this is not a tarball\n'.repeat(100));
  return p;
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(buildRootfsTar());
