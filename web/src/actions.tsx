// What a user can do to a distro, shared by the list and the distro page. The
// destructive ones (terminate, unregister) ask first. State changes arrive back
// through the event stream; only when it is down do we apply replies ourselves.
import { api, nameProblem, type Distro, type Operation } from './api';
import { bytes, diskSizeProblem, locationProblem, parseSize, sizeText } from './format';
import { applyDistro, applyOperation, isLive, refreshIfNotLive, waitOperation } from './store';
import { confirmAction, promptAction, toast, withToast } from './ui';

async function settle(d?: Distro) {
  if (d && !isLive()) applyDistro(d);
  await refreshIfNotLive();
}

export const startDistro = (d: Distro) => withToast(async () => settle(await api.start(d.name)));

export const terminateDistro = (d: Distro) =>
  confirmAction({
    title: `Terminate ${d.name}?`,
    message: (
      <p>
        Every process in <strong>{d.name}</strong> stops at once, its terminal sessions included. Unsaved work in them is lost.
      </p>
    ),
    confirmLabel: 'Terminate',
    danger: true,
    action: async () => settle(await api.terminate(d.name)),
  });

export const unregisterDistro = (d: Distro) =>
  confirmAction({
    title: `Unregister ${d.name}?`,
    message: (
      <>
        <p>
          This stops <strong>{d.name}</strong> and deletes it with all its files. It cannot be undone; export it first to keep a copy.
        </p>
        <p class="mono muted small">{d.location}</p>
      </>
    ),
    confirmLabel: 'Unregister',
    danger: true,
    action: async () => {
      await api.unregister(d.name);
      toast('info', `Unregistered ${d.name}.`);
      await settle();
    },
  });

export const cloneDistro = (d: Distro) =>
  promptAction({
    title: `Clone ${d.name}`,
    message: <p>Copies the root file system into a new distro. A running distro is copied as it is now.</p>,
    label: 'Name of the copy',
    initial: `${d.name}-copy`,
    validate: nameProblem,
    confirmLabel: 'Clone',
    action: async (to) => {
      const op = await api.clone(d.name, to);
      applyOperation(op);
      waitOperation(op.id).then((end) => {
        if (end.status === 'failure') toast('error', `Cloning ${d.name} to ${to} failed: ${end.error}`);
        else toast('info', `Cloned ${d.name} to ${to}.`);
        refreshIfNotLive();
      });
    },
  });

export const renameDistro = (d: Distro, onDone?: (renamed: Distro) => void) =>
  promptAction({
    title: `Rename ${d.name}`,
    label: 'New name',
    initial: d.name,
    validate: (v) => nameProblem(v) || (v === d.name ? 'That is its name already.' : ''),
    confirmLabel: 'Rename',
    action: async (to) => {
      const r = await api.update(d.name, { name: to });
      await settle(r);
      onDone?.(r);
    },
  });

export const setDefaultUser = (d: Distro) =>
  promptAction({
    title: `Default user of ${d.name}`,
    message: <p>Terminals and commands run as this user unless they name another. It must exist in the distro's /etc/passwd.</p>,
    label: 'User name',
    initial: d.default_user,
    validate: (v) => (v.trim() ? '' : 'A user name is required.'),
    confirmLabel: 'Save',
    action: async (u) => settle(await api.update(d.name, { default_user: u.trim() })),
  });

/**
 * Turns systemd as the distro's PID 1 on or off (PATCH systemd), as wsl.conf's
 * [boot] systemd does; asks first, and says that a running distro keeps its
 * current init until it is terminated and started again.
 */
export const setSystemd = (d: Distro, on: boolean) =>
  confirmAction({
    title: `${on ? 'Boot' : 'Stop booting'} ${d.name} with systemd?`,
    message: (
      <>
        <p>
          {on
            ? 'At its next start, the distro’s own systemd becomes its PID 1: services start at boot and stop at terminate, and systemctl works. The distro needs systemd installed (apt-get install systemd).'
            : 'At its next start, the subsys agent is the distro’s PID 1 again and no services start at boot.'}
        </p>
        {d.state === 'Running' && <p>{d.name} is running: the change applies once it is terminated and started again.</p>}
      </>
    ),
    confirmLabel: on ? 'Turn on' : 'Turn off',
    action: async () => settle(await api.update(d.name, { systemd: on })),
  });

/**
 * Converts a distro to the other version (POST set-version), as `wsl
 * --set-version` does; asks first, since the distro is stopped for it. A
 * refusal (no version 2 on this server, the distro busy) shows in the dialog
 * with the server's message; the conversion's progress and end arrive as
 * `operation` events, which the distro page shows.
 */
export const convertDistro = (d: Distro) => {
  const to = d.version === 2 ? 1 : 2;
  return confirmAction({
    title: `Convert ${d.name} to version ${to}?`,
    message: (
      <>
        <p>
          {to === 2
            ? `${d.name}'s files are copied into an ext4 disk image, and it runs in the utility VM with its own kernel.`
            : `${d.name}'s files are copied out of its disk image into a directory on the host, and it runs on the host kernel.`}
        </p>
        <p>
          It is stopped first{d.state === 'Running' ? ', with every process in it' : ''}, and needs room for a second copy of its files
          while the conversion runs.
        </p>
      </>
    ),
    confirmLabel: `Convert to version ${to}`,
    action: async () => {
      const op = await api.setVersion(d.name, to);
      applyOperation(op);
      waitOperation(op.id).then((end) => {
        if (end.status === 'failure') toast('error', `Converting ${d.name} to version ${to} failed: ${end.error}`);
        else toast('info', `Converted ${d.name} to version ${to}.`);
        refreshIfNotLive();
      });
    },
  });
};

/**
 * Follows an operation a disk action started: into the store at once (the
 * distro page shows its bar from there, then the `operation` events), and a
 * toast when it ends, with the server's reason when it failed.
 */
function follow(op: Operation, failed: string, done: (end: Operation) => string) {
  applyOperation(op);
  waitOperation(op.id).then((end) => {
    if (end.status === 'failure') toast('error', `${failed}: ${end.error || 'no reason given'}`);
    else toast('info', done(end));
    refreshIfNotLive();
  });
}

/**
 * Sets a version 2 distro's disk size (POST resize): sizes as people write
 * them ("64G", "512M", bytes), checked in the page; a running distro's disk
 * only grows. A refusal shows in the dialog in the server's words; a resize
 * that fails later (its files do not fit) shows on the distro page.
 */
export const resizeDisk = (d: Distro) => {
  const current = d.disk_max_bytes ?? 0;
  const running = d.state === 'Running';
  return promptAction({
    title: `Resize the disk of ${d.name}`,
    message: (
      <>
        <p>
          The disk is {current > 0 ? bytes(current) : 'of unknown size'}
          {d.disk_bytes ? `, of which ${bytes(d.disk_bytes)} is allocated on the host` : ''}. It is sparse: a larger disk takes no more room
          on the host until files fill it.
        </p>
        <p>
          {running
            ? `${d.name} is running, so its disk can only grow now; stop it to shrink the disk.`
            : `${d.name} is stopped: its disk can grow, or shrink down to what its files need.`}
        </p>
      </>
    ),
    label: 'New disk size',
    initial: current > 0 ? sizeText(current) : '',
    placeholder: '64G',
    validate: (v) => diskSizeProblem(v, current, running, d.name),
    hint: (v) => {
      const n = parseSize(v);
      return n > 0 ? `${bytes(n)} (${n.toLocaleString('en-US')} bytes). A size such as 64G, 512M or 1.5T, or bytes.` : '';
    },
    confirmLabel: 'Resize',
    action: async (v) => {
      const size = parseSize(v);
      const op = await api.resize(d.name, size);
      follow(op, `Resizing the disk of ${d.name} failed`, () => `Resized the disk of ${d.name} to ${bytes(size - (size % 4096))}.`);
    },
  });
};

/**
 * Gives a version 2 distro's free disk blocks back to the host (POST
 * compact): nothing in the distro changes, so it does not ask.
 */
export const compactDisk = (d: Distro) =>
  withToast(async () => {
    const op = await api.compact(d.name);
    follow(op, `Compacting the disk of ${d.name} failed`, (end) => compactedText(d.name, end));
  });

/** What a finished compact did, for people. */
export function compactedText(name: string, end: Operation): string {
  const b = end.result?.bytes;
  if (b === undefined) return `Compacted the disk of ${name}.`;
  return b > 0 ? `Compacted the disk of ${name}: ${bytes(b)} given back to the host.` : `Compacted the disk of ${name}: nothing to give back.`;
}

/**
 * Moves a distro's files to another directory on the host (POST move), as
 * `wsl --manage --move` does: absolute, empty or absent, checked for shape in
 * the page; the distro must be stopped (the server's 409 shows in the dialog).
 */
export const moveDistro = (d: Distro) =>
  promptAction({
    title: `Move ${d.name} to another directory`,
    message: (
      <>
        <p>
          Its {d.version === 2 ? 'disk image' : 'files'} move from <span class="mono break">{d.location}</span> into the directory you give: an
          absolute path to an empty directory, or one that does not exist yet. Every directory above it must be one only root can change.
        </p>
        <p class={d.state === 'Stopped' ? undefined : 'warn-text'}>
          {d.state === 'Running'
            ? `${d.name} is running: terminate it first, since only a stopped distro can move.`
            : `${d.name} must stay stopped while it moves; it cannot start until the move ends.`}
        </p>
      </>
    ),
    label: 'New location',
    initial: '',
    placeholder: `/srv/subsys/${d.name}`,
    validate: (v) => locationProblem(v, d.location),
    confirmLabel: 'Move',
    action: async (v) => {
      const location = v.trim();
      const op = await api.move(d.name, location);
      follow(op, `Moving ${d.name} failed`, () => `Moved ${d.name} to ${location}.`);
    },
  });

export const makeDefault = (d: Distro) => withToast(async () => settle(await api.update(d.name, { default: true })));

/** States in which the distro is busy with long work and takes no actions. */
export const busy = (d: Distro) => d.state !== 'Running' && d.state !== 'Stopped';
