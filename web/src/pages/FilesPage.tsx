// A distro's files (/distros/NAME/files?path=/etc&user=U): the directory's
// entries (directories first), breadcrumbs, a user the requests run as, upload
// by the Upload button or a drop on the listing (a bar per file), download of a
// file or of a directory as .tar.gz, new folder, rename, delete (asks first),
// and a read-only viewer for small text files. Every name and byte comes from
// the distro: shown as text (visibleName, visibleText), never as markup.
import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { errorMessage } from '../api';
import { bytes, dateTime, visibleName, visibleText } from '../format';
import {
  baseName,
  cleanPath,
  crumbs,
  download,
  fileNameProblem,
  joinPath,
  listDir,
  mkdir,
  modeString,
  parentPath,
  remove,
  rename,
  renameProblem,
  renameTarget,
  sortEntries,
  upload,
  view,
  VIEW_MAX_BYTES,
  type FileInfo,
  type FileList,
  type Viewed,
} from '../files';
import { distroHref, filesHref, navigate, onLinkClick } from '../router';
import { distroByName, live, useStore } from '../store';
import { confirmAction, ErrorBox, Icon, Modal, Progress, promptAction, Spinner, toast } from '../ui';

export function FilesPage({ name, path: rawPath, user }: { name: string; path: string; user: string }) {
  const l = useStore(live);
  const d = distroByName(l, name);
  const path = cleanPath(rawPath);
  if (!d) {
    return (
      <main class="page" id="main">
        <Crumbs name={name} />
        {l.loaded ? (
          <div class="card empty">
            <h1>No distro named {name}</h1>
            <p class="muted">It may have been unregistered or renamed.</p>
            <a class="btn" href="/" onClick={onLinkClick}>
              <Icon name="back" />
              All distros
            </a>
          </div>
        ) : (
          <div class="card empty">
            <Spinner label="Loading" /> Loading…
          </div>
        )}
      </main>
    );
  }
  return <Files name={name} path={path} user={user} defaultUser={d.default_user} running={d.state === 'Running'} />;
}

function Crumbs({ name }: { name: string }) {
  return (
    <nav class="crumbs" aria-label="Breadcrumb">
      <a href="/" onClick={onLinkClick}>
        Distros
      </a>
      <span aria-hidden="true">/</span>
      <a href={distroHref(name)} onClick={onLinkClick}>
        {name}
      </a>
      <span aria-hidden="true">/</span>
      <span aria-current="page">Files</span>
    </nav>
  );
}

interface UploadRow {
  id: number;
  file: string;
  /** Where it goes: the distro, the folder, and the user it is written as. */
  distro: string;
  dir: string;
  user: string;
  sent: number;
  total: number;
  status: 'queued' | 'uploading' | 'done' | 'failed';
  error: string;
}

type Viewer = { path: string; state: 'loading' } | { path: string; state: 'shown'; v: Viewed } | { path: string; state: 'error'; error: string };

let uploadSeq = 0;

/** The server's message about a distro's file, which may quote its name: shown with escapes, as names are. */
const shownError = (e: unknown) => visibleName(errorMessage(e));

/** Runs f, rethrowing its error with the message as shownError has it, for the dialogs that show it. */
async function escaped<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw new Error(shownError(e));
  }
}

function Files({ name, path, user, defaultUser, running }: { name: string; path: string; user: string; defaultUser: string; running: boolean }) {
  const [list, setList] = useState<FileList | null>(null);
  const [error, setError] = useState('');
  const [loading, setLoading] = useState(false);
  const [starting, setStarting] = useState(false);
  const [actionError, setActionError] = useState('');
  const [downloading, setDownloading] = useState('');
  const [uploads, setUploads] = useState<UploadRow[]>([]);
  const [viewer, setViewer] = useState<Viewer | null>(null);
  const [dragging, setDragging] = useState(false);
  const [userText, setUserText] = useState(user || defaultUser);
  const fileInput = useRef<HTMLInputElement>(null);
  const dragDepth = useRef(0);
  const seq = useRef(0);
  // The running flag at the time of a request, read without making load change with it.
  const runningRef = useRef(running);
  runningRef.current = running;

  useEffect(() => setUserText(user || defaultUser), [user, defaultUser]);

  // Only the newest load's answer counts: an older one (another folder) is dropped.
  const load = useCallback(async () => {
    const my = ++seq.current;
    setLoading(true);
    setStarting(!runningRef.current);
    try {
      const r = await listDir(name, path, user);
      if (my !== seq.current) return;
      setList(r);
      setError('');
    } catch (e) {
      if (my !== seq.current) return;
      setList(null);
      setError(shownError(e));
    } finally {
      if (my === seq.current) {
        setLoading(false);
        setStarting(false);
      }
    }
  }, [name, path, user]);
  useEffect(() => {
    setList(null);
    setActionError('');
    load();
  }, [load]);

  // The uploads run one after the other, owned by this page: leaving it aborts the current one.
  const queue = useRef<{ row: UploadRow; file: File }[]>([]);
  const current = useRef<{ abort(): void } | null>(null);
  const gone = useRef(false);
  const loadRef = useRef(load);
  loadRef.current = load;
  const pathRef = useRef(path);
  pathRef.current = path;
  useEffect(
    () => () => {
      gone.current = true;
      queue.current = [];
      current.current?.abort();
    },
    [],
  );
  const patch = (id: number, p: Partial<UploadRow>) => setUploads((rows) => rows.map((r) => (r.id === id ? { ...r, ...p } : r)));
  const pump = async () => {
    if (current.current) return;
    while (queue.current.length && !gone.current) {
      const { row, file } = queue.current.shift()!;
      patch(row.id, { status: 'uploading' });
      const up = upload(row.distro, row.dir, row.user, file, (sent, total) => patch(row.id, { sent, total }));
      current.current = up;
      try {
        await up.done;
        patch(row.id, { status: 'done', sent: 1, total: 1 });
      } catch (e) {
        patch(row.id, { status: 'failed', error: shownError(e) });
      } finally {
        current.current = null;
      }
      if (!gone.current && pathRef.current === row.dir) loadRef.current();
    }
  };
  const startUploads = (files: File[]) => {
    if (!files.length) return;
    const rows = files.map((f) => ({ id: ++uploadSeq, file: f.name, distro: name, dir: path, user, sent: 0, total: f.size, status: 'queued' as const, error: '' }));
    setUploads((old) => [...old, ...rows]);
    queue.current.push(...rows.map((row, i) => ({ row, file: files[i] })));
    pump();
  };

  const hasFiles = (e: DragEvent) => [...(e.dataTransfer?.types ?? [])].includes('Files');
  // A drop that misses the list must not make the browser open the file in place of the page.
  useEffect(() => {
    const stop = (e: DragEvent) => {
      if (hasFiles(e)) e.preventDefault();
    };
    window.addEventListener('dragover', stop);
    window.addEventListener('drop', stop);
    return () => {
      window.removeEventListener('dragover', stop);
      window.removeEventListener('drop', stop);
    };
  }, []);
  const drag = {
    onDragEnter: (e: DragEvent) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      dragDepth.current++;
      setDragging(true);
    },
    onDragOver: (e: DragEvent) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy';
    },
    onDragLeave: () => {
      dragDepth.current = Math.max(0, dragDepth.current - 1);
      if (dragDepth.current === 0) setDragging(false);
    },
    onDrop: (e: DragEvent) => {
      if (!hasFiles(e) || !e.dataTransfer) return;
      e.preventDefault();
      dragDepth.current = 0;
      setDragging(false);
      // A dropped folder arrives as a File that cannot be read: say so instead of a failed upload.
      const files: File[] = [];
      const folders: string[] = [];
      for (const item of [...e.dataTransfer.items]) {
        if (item.kind !== 'file') continue;
        const f = item.getAsFile();
        if (!f) continue;
        if (item.webkitGetAsEntry?.()?.isDirectory) folders.push(f.name);
        else files.push(f);
      }
      setActionError(
        folders.length ? `Folders are not uploaded (${folders.map(visibleName).join(', ')}): drop the files in them, or make the folder here first.` : '',
      );
      startUploads(files);
    },
  };

  const save = async (p: string, archive: boolean) => {
    const label = archive ? `${baseName(p) || 'root'}.tar.gz` : baseName(p);
    setDownloading(visibleName(label));
    setActionError('');
    try {
      await download(name, p, user, archive);
    } catch (e) {
      setActionError(`Could not download ${visibleName(p)}: ${shownError(e)}`);
    } finally {
      setDownloading('');
    }
  };

  const openFile = async (p: string) => {
    setViewer({ path: p, state: 'loading' });
    try {
      const v = await view(name, p, user);
      if ('dir' in v) {
        // A symlink to a directory: walk into it, by the link's own path.
        setViewer(null);
        navigate(filesHref(name, p, user));
        return;
      }
      setViewer((cur) => (cur?.path === p ? { path: p, state: 'shown', v } : cur));
    } catch (err) {
      setViewer((cur) => (cur?.path === p ? { path: p, state: 'error', error: shownError(err) } : cur));
    }
  };

  const newFolder = () =>
    promptAction({
      title: 'New folder',
      message: (
        <p>
          In <span class="mono break">{visibleName(path)}</span>, as {user || defaultUser}.
        </p>
      ),
      label: 'Folder name',
      initial: '',
      confirmLabel: 'Create',
      validate: fileNameProblem,
      action: async (v) => {
        await escaped(() => mkdir(name, joinPath(path, v), user));
        await load();
      },
    });

  const renameEntry = (e: FileInfo, p: string) =>
    promptAction({
      title: `Rename ${visibleName(e.name)}`,
      message: <p class="muted small">A new name in the same folder, or an absolute path to move it to. An existing file is not replaced.</p>,
      label: 'New name',
      initial: e.name,
      confirmLabel: 'Rename',
      validate: (v) => renameProblem(p, v),
      hint: (v) => `Becomes ${visibleName(renameTarget(p, v))}`,
      action: async (v) => {
        await escaped(() => rename(name, p, renameTarget(p, v), user));
        await load();
      },
    });

  const deleteEntry = (e: FileInfo, p: string) => {
    const dir = e.type === 'dir';
    return confirmAction({
      title: `Delete ${visibleName(e.name)}?`,
      message: dir ? (
        <p>
          The folder <strong class="mono break">{visibleName(p)}</strong> and <strong>everything in it</strong> is deleted from {name}. It cannot be undone.
        </p>
      ) : (
        <p>
          <span class="mono break">{visibleName(p)}</span> is deleted from {name}. It cannot be undone.
        </p>
      ),
      confirmLabel: 'Delete',
      danger: true,
      action: async () => {
        await escaped(() => remove(name, p, user, dir));
        toast('info', `Deleted ${visibleName(p)}.`);
        await load();
      },
    });
  };

  const applyUser = (e: Event) => {
    e.preventDefault();
    const u = userText.trim();
    navigate(filesHref(name, path, u === defaultUser ? '' : u));
  };

  const entries = list ? sortEntries(list.entries ?? []) : [];
  const trail = crumbs(path);
  const busyUploads = uploads.some((u) => u.status === 'uploading' || u.status === 'queued');

  return (
    <main class="page" id="main">
      <Crumbs name={name} />
      <div class="page-head">
        <div class="title-row">
          <h1>Files of {name}</h1>
        </div>
        <form class="files-user" onSubmit={applyUser}>
          <label class="field">
            <span class="field-label">User</span>
            <input
              type="text"
              name="files_user"
              value={userText}
              spellcheck={false}
              autocomplete="off"
              aria-describedby="files-user-hint"
              onInput={(e) => setUserText((e.target as HTMLInputElement).value)}
            />
            <span id="files-user-hint" class="field-hint muted">
              Reads and writes as this user of the distro (default: {defaultUser}).
            </span>
          </label>
          <button type="submit" class="btn">
            Use
          </button>
        </form>
      </div>

      <section
        class={`card files-card${dragging ? ' dragging' : ''}`}
        aria-labelledby="files-h"
        data-testid="files"
        aria-busy={loading ? true : undefined}
        {...drag}
      >
        <h2 id="files-h" class="sr-only">
          Contents of {visibleName(path)}
        </h2>
        <div class="files-bar">
          <nav class="files-crumbs" aria-label="Path">
            <ol>
              {trail.map((c, i) => (
                <li key={c.path}>
                  {i === trail.length - 1 ? (
                    <span class="mono" aria-current="page">
                      {visibleName(c.label)}
                    </span>
                  ) : (
                    <a class="mono" href={filesHref(name, c.path, user)} onClick={onLinkClick}>
                      {visibleName(c.label)}
                    </a>
                  )}
                </li>
              ))}
            </ol>
          </nav>
          <div class="files-actions">
            <button type="button" class="btn btn-sm" disabled={path === '/'} aria-label="Up to the parent folder" title="Up" onClick={() => navigate(filesHref(name, parentPath(path), user))}>
              <Icon name="up" />
              <span class="files-action-text">Up</span>
            </button>
            <button type="button" class="btn btn-sm" aria-label="Refresh" title="Refresh" onClick={() => load()}>
              <Icon name="refresh" />
            </button>
            <button type="button" class="btn btn-sm" onClick={newFolder} aria-label="New folder" title="New folder">
              <Icon name="plus" />
              <span class="files-action-text">New folder</span>
            </button>
            <button type="button" class="btn btn-sm" onClick={() => fileInput.current?.click()} aria-label="Upload files" title="Upload files">
              <Icon name="upload" />
              <span class="files-action-text">Upload</span>
            </button>
            <input
              ref={fileInput}
              type="file"
              multiple
              class="sr-only"
              tabIndex={-1}
              aria-label="Files to upload"
              data-testid="files-input"
              onChange={(e) => {
                const input = e.target as HTMLInputElement;
                startUploads([...(input.files ?? [])]);
                input.value = '';
              }}
            />
            <button
              type="button"
              class="btn btn-sm"
              onClick={() => save(path, true)}
              disabled={!!downloading}
              aria-label="Download this folder as .tar.gz"
              title="Download this folder as .tar.gz"
            >
              <Icon name="download" />
              <span class="files-action-text">Download folder</span>
            </button>
          </div>
        </div>
        <p class="muted small files-hint">Drop files on this list to upload them to {visibleName(path)}.</p>
        {downloading && (
          <p class="small" role="status">
            <Spinner /> Downloading {downloading}…
          </p>
        )}
        <ErrorBox error={actionError} />
        {uploads.length > 0 && <Uploads rows={uploads} onClear={busyUploads ? undefined : () => setUploads([])} />}
        <ErrorBox error={error} />
        {loading && !list && (
          <p class="small files-loading" role="status" data-testid="files-loading">
            <Spinner />
            {starting ? ` Starting ${name}… the first request starts it.` : ' Loading…'}
          </p>
        )}
        {list && (
          <div class="table-scroll">
            <table class="data files-table" data-testid="files-table">
              <caption class="sr-only">Contents of {visibleName(path)}</caption>
              <thead>
                <tr>
                  <th scope="col">
                    <span class="sr-only">Type</span>
                  </th>
                  <th scope="col">Name</th>
                  <th scope="col" class="num">
                    Size
                  </th>
                  <th scope="col" class="files-col-mode">
                    Mode
                  </th>
                  <th scope="col" class="files-col-owner">
                    Owner
                  </th>
                  <th scope="col" class="files-col-mtime">
                    Modified
                  </th>
                  <th scope="col">
                    <span class="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {entries.length === 0 && (
                  <tr>
                    <td colSpan={7} class="muted" data-testid="files-empty">
                      This folder is empty.
                    </td>
                  </tr>
                )}
                {entries.map((e) => (
                  <Row
                    key={e.name}
                    e={e}
                    p={joinPath(path, e.name)}
                    href={filesHref(name, joinPath(path, e.name), user)}
                    onOpen={openFile}
                    onDownload={save}
                    onRename={renameEntry}
                    onDelete={deleteEntry}
                    saving={!!downloading}
                  />
                ))}
              </tbody>
            </table>
          </div>
        )}
        {dragging && (
          <div class="files-drop" aria-hidden="true">
            <div>
              <Icon name="upload" size={28} />
              <p>Drop to upload to {visibleName(path)}</p>
            </div>
          </div>
        )}
      </section>
      {viewer && <ViewerDialog viewer={viewer} onClose={() => setViewer(null)} onDownload={() => save(viewer.path, false)} />}
    </main>
  );
}

function Row({
  e,
  p,
  href,
  onOpen,
  onDownload,
  onRename,
  onDelete,
  saving,
}: {
  e: FileInfo;
  p: string;
  href: string;
  onOpen: (p: string) => void;
  onDownload: (p: string, archive: boolean) => void;
  onRename: (e: FileInfo, p: string) => void;
  onDelete: (e: FileInfo, p: string) => void;
  saving: boolean;
}) {
  const shown = visibleName(e.name);
  const dir = e.type === 'dir';
  let nameCell: ComponentChildren;
  if (dir) {
    nameCell = (
      <a class="file-name mono" href={href} onClick={onLinkClick}>
        {shown}
      </a>
    );
  } else if (e.type === 'file' || e.type === 'symlink') {
    nameCell = (
      <button type="button" class="btn-link file-name mono" onClick={() => onOpen(p)} title={e.type === 'file' ? 'View' : 'Open where it points'}>
        {shown}
      </button>
    );
  } else {
    nameCell = <span class="file-name mono">{shown}</span>;
  }
  return (
    <tr data-testid="file-row" data-name={e.name} data-type={e.type}>
      <td class="file-type">
        <span title={e.type} class={`file-icon file-icon-${e.type}`}>
          <Icon name={dir ? 'folder' : e.type === 'symlink' ? 'link' : 'file'} />
          <span class="sr-only">{e.type === 'dir' ? 'folder' : e.type}</span>
        </span>
      </td>
      <td class="file-name-cell">
        {nameCell}
        {e.type === 'symlink' && e.target !== undefined && <span class="muted small mono break"> → {visibleName(e.target)}</span>}
      </td>
      <td class="num" title={dir ? undefined : `${e.size} bytes`}>
        {dir ? '—' : bytes(e.size)}
      </td>
      <td class="mono small files-col-mode" title={e.mode}>
        {modeString(e.type, e.mode)}
      </td>
      <td class="small files-col-owner">
        {visibleName(e.user)}:{visibleName(e.group)}
      </td>
      <td class="small files-col-mtime" title={dateTime(e.mtime)}>
        {dateTime(e.mtime)}
      </td>
      <td class="files-row-actions">
        {(e.type === 'file' || e.type === 'symlink' || dir) && (
          <button
            type="button"
            class="btn btn-sm btn-icon btn-ghost"
            disabled={saving}
            aria-label={dir ? `Download ${shown} as .tar.gz` : `Download ${shown}`}
            title={dir ? 'Download as .tar.gz' : 'Download'}
            onClick={() => onDownload(p, dir)}
          >
            <Icon name="download" />
          </button>
        )}
        <button type="button" class="btn btn-sm btn-icon btn-ghost" aria-label={`Rename ${shown}`} title="Rename" onClick={() => onRename(e, p)}>
          <Icon name="edit" />
        </button>
        <button type="button" class="btn btn-sm btn-icon btn-danger-ghost" aria-label={`Delete ${shown}`} title="Delete" onClick={() => onDelete(e, p)}>
          <Icon name="trash" />
        </button>
      </td>
    </tr>
  );
}

/** The uploads of this page: a bar each, then Uploaded or the server's reason. */
function Uploads({ rows, onClear }: { rows: UploadRow[]; onClear?: () => void }) {
  return (
    <div class="files-uploads" data-testid="uploads">
      <ul aria-label="Uploads">
        {rows.map((r) => {
          const pct = r.total > 0 ? Math.min(100, Math.floor((r.sent / r.total) * 100)) : 0;
          const shown = visibleName(r.file);
          return (
            <li key={r.id} class="files-upload" data-testid="upload" data-name={r.file} data-status={r.status}>
              <div class="files-upload-head">
                <span class="mono break">
                  {shown} <span class="muted small">into {visibleName(r.dir)}</span>
                </span>
                <span class="muted small">
                  {r.status === 'queued'
                    ? 'waiting'
                    : r.status === 'uploading'
                      ? `${pct}%`
                      : r.status === 'done'
                        ? 'Uploaded'
                        : 'Failed'}
                </span>
              </div>
              {r.status === 'failed' ? (
                <ErrorBox error={`${shown}: ${r.error}`} />
              ) : (
                <Progress value={r.status === 'done' ? 1 : r.sent} max={r.status === 'done' ? 1 : r.total || 1} label={`Upload of ${shown}`} />
              )}
            </li>
          );
        })}
      </ul>
      {onClear && (
        <button type="button" class="btn btn-sm btn-ghost" onClick={onClear}>
          Clear
        </button>
      )}
    </div>
  );
}

/** The text of a small text file, read-only and as text; otherwise why not, and Download. */
function ViewerDialog({ viewer, onClose, onDownload }: { viewer: Viewer; onClose: () => void; onDownload: () => void }) {
  const shownPath = visibleName(viewer.path);
  let body: ComponentChildren;
  if (viewer.state === 'loading') {
    body = (
      <p role="status">
        <Spinner /> Reading…
      </p>
    );
  } else if (viewer.state === 'error') {
    body = <ErrorBox error={viewer.error} />;
  } else if (viewer.v.text !== null) {
    body =
      viewer.v.text === '' ? (
        <p class="muted">This file is empty.</p>
      ) : (
        <pre class="file-view" tabIndex={0} aria-label={`Contents of ${shownPath}`} data-testid="file-view">
          {visibleText(viewer.v.text)}
        </pre>
      );
  } else {
    body = (
      <p data-testid="file-not-shown">
        {viewer.v.why === 'large'
          ? `This file is ${isFinite(viewer.v.size) ? bytes(viewer.v.size) : 'of unknown size'}: larger than ${bytes(VIEW_MAX_BYTES)}, too large to show here.`
          : 'This file is not text (it holds NUL bytes or is not UTF-8), so it is not shown here.'}{' '}
        Download it instead.
      </p>
    );
  }
  return (
    <Modal title={baseName(shownPath) || shownPath} onClose={onClose} wide>
      <div class="modal-body">
        <p class="muted small mono break">
          {shownPath}
          {viewer.state === 'shown' && ` · ${bytes(viewer.v.size)}`}
        </p>
        {body}
        <div class="modal-actions">
          <button type="button" class="btn" onClick={onDownload}>
            <Icon name="download" />
            Download
          </button>
        </div>
      </div>
    </Modal>
  );
}
