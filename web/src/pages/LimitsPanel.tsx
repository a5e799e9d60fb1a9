// A distro's limits (memory_max, cpu_max, pids_max of GET /distros/{name}),
// each beside what the running distro uses (memory.current, CPU, pids.current
// from its cgroup), editable in place and saved with one PATCH. A size is
// read as the CLI reads one (512M, 2G); an empty field or 0 removes a limit.
// The server checks the bounds and its message is shown as it is. An
// out-of-memory kill, from the `distro-oom` event or the distro's oom_kills
// and last_oom_at, shows as a line.
import { useEffect, useState } from 'preact/hooks';
import { api, errorMessage, type Distro } from '../api';
import { bytes, parseSize, percent, sizeText } from '../format';
import { applyDistro, ooms, useStore } from '../store';
import { ErrorBox, Icon, Spinner, toast } from '../ui';

interface Fields {
  memory: string;
  cpu: string;
  pids: string;
}

function fieldsOf(d: Distro): Fields {
  return {
    memory: d.memory_max ? sizeText(d.memory_max) : '',
    cpu: d.cpu_max ? String(d.cpu_max) : '',
    pids: d.pids_max ? String(d.pids_max) : '',
  };
}

/** The PATCH body for the fields, or the reason one of them is not a number. */
export function limitsBody(f: Fields): { memory_max: number; cpu_max: number; pids_max: number } | string {
  const none = (v: string) => v.trim() === '' || v.trim() === '0' || v.trim().toLowerCase() === 'none';
  const memory_max = none(f.memory) ? 0 : parseSize(f.memory);
  if (!(memory_max >= 0)) return 'Memory: write a size such as 512M or 2G, or leave it empty for no limit.';
  const cpu_max = none(f.cpu) ? 0 : Number(f.cpu.trim());
  if (!isFinite(cpu_max) || cpu_max < 0) return 'CPU: write a number of cores such as 0.5 or 2, or leave it empty for no limit.';
  const pids_max = none(f.pids) ? 0 : Number(f.pids.trim());
  if (!Number.isInteger(pids_max) || pids_max < 0) return 'Processes: write a whole number such as 200, or leave it empty for no limit.';
  return { memory_max, cpu_max, pids_max };
}

/** HH:MM of an ISO time, in the browser's zone. */
function clock(iso: string): string {
  const t = Date.parse(iso);
  return isFinite(t) ? new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }) : '';
}

export function LimitsPanel({ d }: { d: Distro }) {
  const oomEvents = useStore(ooms);
  const [fields, setFields] = useState<Fields>(() => fieldsOf(d));
  const [dirty, setDirty] = useState(false);
  const [error, setError] = useState('');
  const [saving, setSaving] = useState(false);
  const running = d.state === 'Running';

  // What the server holds shows until the user edits; a save or another
  // client's change updates the fields then.
  const key = `${d.memory_max ?? 0}/${d.cpu_max ?? 0}/${d.pids_max ?? 0}`;
  useEffect(() => {
    if (!dirty) setFields(fieldsOf(d));
  }, [key, dirty]);

  const edit = (k: keyof Fields) => (e: Event) => {
    setFields({ ...fields, [k]: (e.target as HTMLInputElement).value });
    setDirty(true);
    setError('');
  };

  const save = async (e: Event) => {
    e.preventDefault();
    if (saving) return;
    const body = limitsBody(fields);
    if (typeof body === 'string') {
      setError(body);
      return;
    }
    setSaving(true);
    setError('');
    try {
      const updated = await api.update(d.name, body);
      applyDistro(updated);
      setFields(fieldsOf(updated));
      setDirty(false);
      toast('info', `Saved the limits of ${d.name}.`);
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setSaving(false);
    }
  };

  // The latest OOM kill: the event's, or the distro's own record (a page
  // opened after it), whichever is later. None once the distro stopped.
  const ev = oomEvents.get(d.id);
  let oomAt = d.last_oom_at ?? '';
  let oomKills = d.oom_kills ?? 0;
  if (ev && running && (!oomAt || Date.parse(ev.at) > Date.parse(oomAt))) {
    oomAt = ev.at;
    oomKills = Math.max(oomKills, ev.oom_kills);
  }

  const use = (s: string) => (running ? s : '—');
  return (
    <section class="card" aria-labelledby="limits-h" data-testid="limits">
      <h2 id="limits-h">Limits</h2>
      {running && oomKills > 0 && (
        <p class="small warn-text" role="status" data-testid="limits-oom">
          <Icon name="warn" size={14} /> Out of memory: a process was killed{oomAt ? ` at ${clock(oomAt)}` : ''}
          {oomKills > 1 ? ` (${oomKills} since it started)` : ''}.
        </p>
      )}
      <form class="limits-form" onSubmit={save} noValidate>
        <label class="field">
          <span class="field-label">Memory</span>
          <input type="text" name="memory_max" value={fields.memory} placeholder="no limit" spellcheck={false} autocomplete="off" onInput={edit('memory')} />
          <span class="field-hint muted" data-testid="limits-memory-use">
            uses {use(bytes(d.memory_bytes ?? 0))}
            {d.memory_max ? ` of ${bytes(d.memory_max)}` : ''}
          </span>
        </label>
        <label class="field">
          <span class="field-label">CPU (cores)</span>
          <input type="text" name="cpu_max" value={fields.cpu} placeholder="no limit" inputMode="decimal" spellcheck={false} autocomplete="off" onInput={edit('cpu')} />
          <span class="field-hint muted">uses {use(percent(d.cpu_percent ?? 0))} of a core</span>
        </label>
        <label class="field">
          <span class="field-label">Processes</span>
          <input type="text" name="pids_max" value={fields.pids} placeholder="no limit" inputMode="numeric" spellcheck={false} autocomplete="off" onInput={edit('pids')} />
          <span class="field-hint muted" data-testid="limits-pids-use">
            {use(String(d.pids ?? 0))} running{d.pids_max ? ` of ${d.pids_max}` : ''}
          </span>
        </label>
        <button type="submit" class="btn btn-sm" disabled={saving || !dirty}>
          {saving ? <Spinner /> : <Icon name="check" />}
          Save
        </button>
      </form>
      <p class="muted small">
        Empty or 0: no limit. A running distro gets new limits at once; below what it uses, memory is reclaimed, then processes
        are killed until it fits.
      </p>
      <ErrorBox error={error} />
    </section>
  );
}
