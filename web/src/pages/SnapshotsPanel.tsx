// A distro's snapshots (GET /distros/{name}/snapshots): copies of its files
// taken while it is stopped. Take one (an optional name, checked in the page
// with the distro-name rule), restore one (asks first: it replaces the
// distro's files) or delete one (asks first). The snapshot and restore
// operations show as a bar from the `operation` events; the list is loaded
// again when one of them ends, and after a delete.
import { useCallback, useEffect, useState } from 'preact/hooks';
import { api, errorMessage, nameProblem, type Distro, type Operation, type Snapshot } from '../api';
import { ago, bytes, dateTime } from '../format';
import { applyOperation, live, useStore, type Live } from '../store';
import { confirmAction, ErrorBox, Icon, Progress, Spinner, toast } from '../ui';

const KINDS = ['snapshot', 'restore'];

/** The snapshot and restore operations of the distro named name that the store knows. */
function snapshotOps(l: Live, name: string): Operation[] {
  return [...l.operations.values()]
    .filter((o) => KINDS.includes(o.kind) && o.distro === name)
    .sort((a, b) => (a.created_at ?? '').localeCompare(b.created_at ?? ''));
}

/** Why a snapshot name typed in the form is refused, or '' (empty: the server names it). */
export function snapshotNameProblem(v: string): string {
  return v.trim() === '' ? '' : nameProblem(v.trim());
}

export function SnapshotsPanel({ d }: { d: Distro }) {
  const l = useStore(live);
  const [list, setList] = useState<Snapshot[] | null>(null);
  const [loadError, setLoadError] = useState('');
  const [snapName, setSnapName] = useState('');
  const [error, setError] = useState('');
  const [posting, setPosting] = useState(false);
  const name = d.name;

  const ops = snapshotOps(l, name);
  const op = ops[ops.length - 1];
  const working = op?.status === 'running';
  // Changes whenever one of this distro's snapshot or restore operations ends.
  const endedKey = ops
    .filter((o) => o.status !== 'running')
    .map((o) => o.id)
    .join(',');
  const connected = l.conn.state === 'live';

  const load = useCallback(async () => {
    try {
      setList(await api.snapshots(name));
      setLoadError('');
    } catch (e) {
      setLoadError(errorMessage(e));
    }
  }, [name]);
  useEffect(() => {
    load();
  }, [load, endedKey, connected]);

  const problem = snapshotNameProblem(snapName);
  const take = async (e: Event) => {
    e.preventDefault();
    if (posting) return;
    if (problem) {
      setError(problem);
      return;
    }
    setPosting(true);
    setError('');
    try {
      const o = await api.takeSnapshot(name, snapName.trim() || undefined);
      applyOperation(o);
      setSnapName('');
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setPosting(false);
    }
  };

  const restore = (s: Snapshot) =>
    confirmAction({
      title: `Restore ${name} from ${s.name}?`,
      message: (
        <>
          <p>
            The files of <strong>{name}</strong> are replaced by those of the snapshot <strong>{s.name}</strong>, taken{' '}
            {dateTime(s.created_at)}. Whatever changed in it since then is lost, unless you take a snapshot of it first.
          </p>
          <p class={d.state === 'Stopped' ? 'muted small' : 'warn-text'}>
            {d.state === 'Running' ? `${name} is running: terminate it first, since only a stopped distro can be restored.` : `${name} must be stopped.`}
          </p>
        </>
      ),
      confirmLabel: 'Restore',
      danger: true,
      action: async () => applyOperation(await api.restoreSnapshot(name, s.name)),
    });

  const remove = (s: Snapshot) =>
    confirmAction({
      title: `Delete the snapshot ${s.name}?`,
      message: (
        <p>
          The snapshot <strong>{s.name}</strong> of {name} ({bytes(s.bytes)}) is deleted. It cannot be undone; {name} itself does not change.
        </p>
      ),
      confirmLabel: 'Delete',
      danger: true,
      action: async () => {
        await api.deleteSnapshot(name, s.name);
        toast('info', `Deleted the snapshot ${s.name}.`);
        await load();
      },
    });

  return (
    <section class="card" aria-labelledby="snapshots-h" data-testid="snapshots">
      <h2 id="snapshots-h">Snapshots</h2>
      <p class={d.state === 'Running' ? 'small warn-text' : 'muted small'} data-testid="snapshots-note">
        A snapshot is a copy of the distro's files. The distro must be stopped to take or restore one
        {d.state === 'Running' ? `: ${name} is running, terminate it first.` : '.'}
      </p>
      <ErrorBox error={loadError} />
      {list === null ? (
        !loadError && <Spinner label="Loading snapshots" />
      ) : list.length === 0 ? (
        <p class="muted small" data-testid="snapshots-empty">
          No snapshots yet.
        </p>
      ) : (
        <ul class="snapshot-list" aria-label={`Snapshots of ${name}`}>
          {list.map((s) => (
            <li key={s.name} class="snapshot" data-testid="snapshot" data-name={s.name}>
              <div class="snapshot-info">
                <span class="mono break snapshot-name">{s.name}</span>
                <span class="muted small">
                  {bytes(s.bytes)} · <span title={dateTime(s.created_at)}>{ago(s.created_at)}</span> · version {s.version}
                </span>
              </div>
              <div class="snapshot-actions">
                <button type="button" class="btn btn-sm" disabled={working} aria-label={`Restore ${s.name}`} onClick={() => restore(s)}>
                  <Icon name="refresh" />
                  Restore
                </button>
                <button type="button" class="btn btn-sm btn-danger-ghost" disabled={working} aria-label={`Delete ${s.name}`} onClick={() => remove(s)}>
                  <Icon name="trash" />
                  Delete
                </button>
              </div>
            </li>
          ))}
        </ul>
      )}
      <form class="snapshot-form" onSubmit={take} noValidate>
        <label class="field grow">
          <span class="field-label">Snapshot name (optional)</span>
          <input
            type="text"
            name="snapshot_name"
            value={snapName}
            placeholder="snap-YYYYMMDD-HHMMSS"
            spellcheck={false}
            autocomplete="off"
            aria-invalid={problem ? true : undefined}
            aria-describedby="snapshot-name-hint"
            onInput={(e) => {
              setSnapName((e.target as HTMLInputElement).value);
              setError('');
            }}
          />
          <span id="snapshot-name-hint" class={`field-hint${problem ? '' : ' muted'}`}>
            {problem || 'Empty: named after the time it is taken.'}
          </span>
        </label>
        <button type="submit" class="btn btn-sm" disabled={posting || working}>
          {posting ? <Spinner /> : <Icon name="plus" />}
          Take snapshot
        </button>
      </form>
      <ErrorBox error={error} />
      {op && <SnapshotOperation op={op} />}
    </section>
  );
}

const WORDS: Record<string, { running: string; failed: string; done: string }> = {
  snapshot: { running: 'Taking a snapshot', failed: 'The snapshot failed', done: 'Snapshot taken.' },
  restore: { running: 'Restoring the snapshot', failed: 'The restore failed', done: 'Restored from the snapshot.' },
};

/** The latest snapshot or restore: a bar while it runs, then what it did or the server's reason, as text. */
function SnapshotOperation({ op }: { op: Operation }) {
  const words = WORDS[op.kind] ?? WORDS.snapshot;
  const attrs = { class: 'disk-progress', 'data-testid': 'snapshot-status', 'data-kind': op.kind, 'data-status': op.status };
  if (op.status === 'failure') {
    return (
      <div {...attrs}>
        <ErrorBox error={`${words.failed}: ${op.error || 'no reason given'}`} />
      </div>
    );
  }
  if (op.status === 'success') {
    return (
      <div {...attrs}>
        <p class="small ok-text" role="status">
          <Icon name="check" size={14} /> {words.done}
        </p>
      </div>
    );
  }
  const { done, total } = op.progress;
  return (
    <div {...attrs}>
      <Progress value={done} max={total} label={words.running} indeterminate={total <= 0} />
      <p class="small" role="status">
        <Spinner /> {words.running}
        {total > 0 ? `: ${Math.floor((done / total) * 100)}%` : '…'}
      </p>
    </div>
  );
}
