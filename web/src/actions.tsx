// What a user can do to a distro, shared by the list and the distro page. The
// destructive ones (terminate, unregister) ask first. State changes arrive back
// through the event stream; only when it is down do we apply replies ourselves.
import { api, nameProblem, type Distro } from './api';
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

export const makeDefault = (d: Distro) => withToast(async () => settle(await api.update(d.name, { default: true })));

/** States in which the distro is busy with long work and takes no actions. */
export const busy = (d: Distro) => d.state !== 'Running' && d.state !== 'Stopped';
