// Import a distro from a tarball: drop or pick the file, name it, pick the
// version (and for version 2 the largest its disk may grow to). A .img file is
// a raw ext4 image, which only a version 2 distro can be. The bar shows the bytes sent (XHR upload progress), then the server's
// operation (its `operation` events) until the distro is there.
import { useEffect, useRef, useState } from 'preact/hooks';
import { errorMessage, nameProblem, uploadDistro, type Operation, type Upload } from '../api';
import { bytes, nameFromFile, parseSize } from '../format';
import { navigate, distroHref } from '../router';
import { applyOperation, live, settings, useStore, waitOperation, refreshIfNotLive } from '../store';
import { ErrorBox, Icon, Modal, Progress, Spinner } from '../ui';

type Phase = 'form' | 'uploading' | 'unpacking' | 'done' | 'failed';

export function ImportDialog({ initialFile, onClose }: { initialFile?: File; onClose: () => void }) {
  const st = useStore(settings);
  const l = useStore(live);
  const [file, setFile] = useState<File | null>(initialFile ?? null);
  const [name, setName] = useState(initialFile ? nameFromFile(initialFile.name) : '');
  const [nameEdited, setNameEdited] = useState(false);
  const [version, setVersion] = useState(st?.default_version ?? 1);
  // Empty: the server's default size.
  const [size, setSize] = useState('');
  const [phase, setPhase] = useState<Phase>('form');
  const [sent, setSent] = useState(0);
  const [error, setError] = useState('');
  const [op, setOp] = useState<Operation | null>(null);
  const [dragging, setDragging] = useState(false);
  const upload = useRef<Upload | null>(null);
  // The bar never goes back: the server's count of bytes read trails the
  // browser's count of bytes sent by a socket buffer or so.
  const shown = useRef(0);
  const fileInput = useRef<HTMLInputElement>(null);

  useEffect(() => () => upload.current?.abort(), []);

  const pick = (f: File | undefined | null) => {
    if (!f) return;
    setFile(f);
    setError('');
    if (!nameEdited || !name) setName(nameFromFile(f.name));
  };

  const raw = !!file && /\.img$/i.test(file.name);
  // A raw image is a version 2 distro's disk, whatever the radio said.
  const effVersion = raw ? 2 : version;
  const sizeBytes = size.trim() ? parseSize(size) : 0;
  const sizeProblem = effVersion === 2 && size.trim() && !(sizeBytes > 0) ? 'A size such as 256G or 512M.' : '';
  const problem = nameProblem(name);
  // (While importing, the new distro itself is in the list, Installing.)
  const taken = (phase === 'form' || phase === 'failed') && [...l.distros.values()].some((d) => d.name === name);
  const canSubmit = !!file && !problem && !sizeProblem && !taken && phase !== 'uploading' && phase !== 'unpacking';

  // The server's view of this import, from the event stream (it arrives while
  // the body is still uploading, and after).
  const serverOp =
    (op && l.operations.get(op.id)) ||
    [...l.operations.values()].find((o) => o.kind === 'import' && o.distro === name && o.status === 'running') ||
    op;

  const submit = async (e: Event) => {
    e.preventDefault();
    if (!canSubmit || !file) return;
    setPhase('uploading');
    setError('');
    setSent(0);
    shown.current = 0;
    const up = uploadDistro(
      file,
      name,
      effVersion,
      (s) => {
        setSent(s);
        if (s >= file.size) setPhase((p) => (p === 'uploading' ? 'unpacking' : p));
      },
      { sizeBytes: effVersion === 2 && sizeBytes > 0 ? sizeBytes : undefined, rawImage: raw },
    );
    upload.current = up;
    try {
      let res = await up.done;
      applyOperation(res);
      setOp(res);
      if (res.status === 'running') {
        setPhase('unpacking');
        res = await waitOperation(res.id);
        setOp(res);
      }
      if (res.status === 'failure') {
        setError(res.error || 'The import failed.');
        setPhase('failed');
      } else {
        setPhase('done');
      }
      refreshIfNotLive();
    } catch (err) {
      setError(errorMessage(err));
      setPhase('failed');
    } finally {
      upload.current = null;
    }
  };

  const total = file?.size ?? 0;
  let value = 0;
  let max = 1;
  let label = '';
  let indeterminate = false;
  if (phase === 'uploading') {
    value = sent;
    max = total;
    label = `Uploading: ${bytes(sent)} of ${bytes(total)}`;
  } else if (phase === 'unpacking') {
    const p = serverOp?.progress;
    if (p && p.total > 0) {
      value = p.done;
      max = p.total;
      label = `Unpacking: ${bytes(p.done)} of ${bytes(p.total)}`;
    } else {
      indeterminate = true;
      label = 'Unpacking…';
    }
  } else if (phase === 'done') {
    value = max = 1;
    label = `Imported ${name}.`;
  }

  if (!indeterminate && max > 0) {
    shown.current = Math.max(shown.current, value / max);
    value = shown.current;
    max = 1;
  }

  const close = () => {
    upload.current?.abort();
    onClose();
  };
  const working = phase === 'uploading' || phase === 'unpacking';

  return (
    <Modal title="Import a distro" onClose={close} wide>
      <form class="modal-body" onSubmit={submit}>
        <label
          class={`dropzone${dragging ? ' dragging' : ''}${file ? ' has-file' : ''}`}
          onDragOver={(e) => {
            e.preventDefault();
            setDragging(true);
          }}
          onDragLeave={() => setDragging(false)}
          onDrop={(e) => {
            e.preventDefault();
            setDragging(false);
            if (!working) pick(e.dataTransfer?.files[0]);
          }}
        >
          <input
            ref={fileInput}
            class="sr-only"
            type="file"
            name="tarball"
            accept=".tar,.tar.gz,.tgz,.tar.bz2,.tbz2,.tar.zst,.tzst,.tar.xz,.txz,.img,application/x-tar,application/gzip,application/x-bzip2,application/zstd,application/x-xz"
            disabled={working}
            onChange={(e) => pick((e.target as HTMLInputElement).files?.[0])}
          />
          <Icon name="upload" size={28} />
          {file ? (
            <span>
              <strong class="mono">{file.name}</strong> <span class="muted">({bytes(file.size)})</span>
              <br />
              <span class="muted small">Drop another file or click to choose again.</span>
            </span>
          ) : (
            <span>
              <strong>Drop a root file system tarball here</strong> or click to choose one.
              <br />
              <span class="muted small">
                tar, tar.gz, tar.bz2, tar.zst or tar.xz — for example from an OCI image export or mmdebstrap — or a version 2 distro's .img disk image.
              </span>
            </span>
          )}
        </label>

        <div class="form-row">
          <label class="field grow">
            <span class="field-label">Name</span>
            <input
              type="text"
              name="name"
              value={name}
              spellcheck={false}
              autocomplete="off"
              disabled={working}
              aria-invalid={(name && problem) || taken ? true : undefined}
              onInput={(e) => {
                setName((e.target as HTMLInputElement).value);
                setNameEdited(true);
              }}
            />
            {name && problem && <span class="field-hint">{problem}</span>}
            {taken && <span class="field-hint">A distro named {name} exists already.</span>}
          </label>
          <fieldset class="field" disabled={working || raw}>
            <legend class="field-label">Version</legend>
            <div class="segmented">
              {[1, 2].map((v) => (
                <label key={v}>
                  <input type="radio" name="version" value={v} checked={effVersion === v} onChange={() => setVersion(v)} />
                  <span>v{v}</span>
                </label>
              ))}
            </div>
          </fieldset>
          {effVersion === 2 && (
            <label class="field">
              <span class="field-label">Largest disk size</span>
              <input
                type="text"
                name="size"
                value={size}
                placeholder="server default"
                spellcheck={false}
                autocomplete="off"
                disabled={working}
                aria-invalid={sizeProblem ? true : undefined}
                onInput={(e) => setSize((e.target as HTMLInputElement).value)}
              />
              {sizeProblem ? (
                <span class="field-hint">{sizeProblem}</span>
              ) : (
                sizeBytes > 0 && <span class="field-hint muted">{bytes(sizeBytes)}</span>
              )}
            </label>
          )}
        </div>
        <p class="muted small">
          {raw
            ? 'A disk image becomes a version 2 distro: it runs in the utility VM with its own kernel.'
            : effVersion === 1
              ? 'Version 1 shares the host kernel; its files are a plain directory on the host.'
              : 'Version 2 runs in the utility VM with its own kernel and a virtual disk, sparse: it takes the space its files need, and grows up to the largest size.'}
        </p>

        {(working || phase === 'done') && (
          <div class="import-progress">
            <Progress value={value} max={max} label="Import progress" indeterminate={indeterminate} />
            <p class="small" role="status">
              {working && <Spinner />} {label}
            </p>
          </div>
        )}
        <ErrorBox error={error} />

        <div class="modal-actions">
          {phase === 'done' ? (
            <>
              <button
                type="button"
                class="btn"
                onClick={() => {
                  onClose();
                  navigate(distroHref(name));
                }}
              >
                Open {name}
              </button>
              <button type="button" class="btn btn-primary" onClick={onClose} autoFocus>
                Done
              </button>
            </>
          ) : (
            <>
              <button type="button" class="btn" onClick={close}>
                {working ? 'Cancel import' : 'Cancel'}
              </button>
              <button type="submit" class="btn btn-primary" disabled={!canSubmit}>
                {working ? <Spinner /> : <Icon name="upload" />}
                Import
              </button>
            </>
          )}
        </div>
      </form>
    </Modal>
  );
}
