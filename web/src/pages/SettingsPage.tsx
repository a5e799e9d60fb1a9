// Server-wide settings (GET/PUT /api/v1/settings). The utility VM's settings
// (memory, processors, idle timeout) show when the server has them, that is
// when it can run version 2 distros.
import { useEffect, useState } from 'preact/hooks';
import { api, errorMessage, type Settings } from '../api';
import { bytes, duration } from '../format';
import { settings } from '../store';
import { ErrorBox, Spinner, toast } from '../ui';

const MiB = 1 << 20;

/** Why text is not an install mirror the server takes (empty, or an http://, https:// or file:/// URL), or ''. */
export function installMirrorProblem(text: string): string {
  const t = text.trim();
  if (!t) return '';
  const problem = 'An http://, https:// or file:/// URL, or empty for the server’s own mirror.';
  if (/\s/.test(t)) return problem;
  if (/^file:\/\/\/./i.test(t)) return '';
  if (!/^https?:\/\//i.test(t)) return problem;
  try {
    const u = new URL(t);
    return u.hostname ? '' : problem;
  } catch {
    return problem;
  }
}

/** The utility VM's numeric settings, as the form shows them. */
const VM_FIELDS = [
  {
    key: 'vm_memory_mib',
    label: 'VM memory (MiB)',
    min: 0,
    hint: 'The most memory the utility VM may have, from its next start: 0 is half the host’s, else at least 256. A VM over 2 GiB gets it as its guest needs it.',
  },
  { key: 'vm_processors', label: 'VM processors', min: 0, hint: 'Virtual CPUs of the utility VM at its next start: 0 is all the host’s.' },
  {
    key: 'vm_idle_timeout_s',
    label: 'VM idle timeout (seconds)',
    min: -1,
    hint: 'How long the utility VM stays up with no version 2 distro running; -1 keeps it up.',
  },
] as const;
type VMKey = (typeof VM_FIELDS)[number]['key'];

export function SettingsPage() {
  const [saved, setSaved] = useState<Settings | null>(null);
  const [form, setForm] = useState<{
    default_version: number;
    default_user: string;
    scrollback_mib: string;
    session_timeout_s: string;
    v1_lan_default: Settings['v1_lan_default'];
    vm: Partial<Record<VMKey, string>>;
    /** undefined: the server has no kernel setting. */
    kernel?: string;
    memory_reclaim?: Settings['memory_reclaim'];
    install_mirror: string;
  } | null>(null);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  const fill = (s: Settings) => {
    setSaved(s);
    setForm({
      default_version: s.default_version,
      default_user: s.default_user,
      scrollback_mib: String(+(s.scrollback_bytes / MiB).toFixed(2)),
      session_timeout_s: String(s.session_timeout_s),
      v1_lan_default: s.v1_lan_default ?? 'off',
      vm: Object.fromEntries(VM_FIELDS.filter((f) => typeof s[f.key] === 'number').map((f) => [f.key, String(s[f.key])])),
      kernel: s.kernel,
      memory_reclaim: s.memory_reclaim,
      install_mirror: s.install_mirror ?? '',
    });
  };

  useEffect(() => {
    api.settings().then(fill, (e) => setError(errorMessage(e)));
  }, []);

  if (!form || !saved) {
    return (
      <main class="page narrow" id="main">
        <h1>Settings</h1>
        <ErrorBox error={error} />
        {!error && <Spinner label="Loading settings" />}
      </main>
    );
  }

  const scrollback = Math.round(parseFloat(form.scrollback_mib) * MiB);
  const timeout = parseInt(form.session_timeout_s, 10);
  const problems: Record<string, string> = {};
  if (!form.default_user.trim()) problems.user = 'A user name is required.';
  if (!isFinite(scrollback) || scrollback < 0) problems.scrollback = 'A size in MiB, 0 or more.';
  if (!isFinite(timeout) || timeout < 0 || String(timeout) !== form.session_timeout_s.trim()) problems.timeout = 'Whole seconds, 0 or more.';

  const changes: Partial<Settings> = {};
  if (form.default_version !== saved.default_version) changes.default_version = form.default_version;
  if (form.default_user.trim() !== saved.default_user) changes.default_user = form.default_user.trim();
  if (!problems.scrollback && scrollback !== saved.scrollback_bytes) changes.scrollback_bytes = scrollback;
  if (!problems.timeout && timeout !== saved.session_timeout_s) changes.session_timeout_s = timeout;
  if (form.v1_lan_default !== saved.v1_lan_default) changes.v1_lan_default = form.v1_lan_default;
  // Only the VM settings the server reported are in the form.
  const vmFields = VM_FIELDS.filter((f) => f.key in form.vm);
  for (const f of vmFields) {
    const text = (form.vm[f.key] ?? '').trim();
    const n = parseInt(text, 10);
    if (String(n) !== text || n < f.min || (f.key === 'vm_memory_mib' && n > 0 && n < 256))
      problems[f.key] = f.key === 'vm_memory_mib' ? 'A whole number: 0, or 256 or more.' : `A whole number, ${f.min} or more.`;
    else if (n !== saved[f.key]) changes[f.key] = n;
  }
  if (form.kernel !== undefined) {
    const k = form.kernel.trim();
    if (k && !k.startsWith('/')) problems.kernel = 'An absolute path on the server, or empty for the default.';
    else if (k !== (saved.kernel ?? '')) changes.kernel = k;
  }
  const mirror = form.install_mirror.trim();
  const mirrorProblem = installMirrorProblem(mirror);
  if (mirrorProblem) problems.install_mirror = mirrorProblem;
  else if (mirror !== (saved.install_mirror ?? '')) changes.install_mirror = mirror;
  if (form.memory_reclaim !== undefined && form.memory_reclaim !== saved.memory_reclaim) changes.memory_reclaim = form.memory_reclaim;
  const dirty = Object.keys(changes).length > 0;

  const submit = async (e: Event) => {
    e.preventDefault();
    if (Object.keys(problems).length || !dirty) return;
    setBusy(true);
    setError('');
    try {
      const s = await api.putSettings(changes);
      fill(s);
      settings.set(s);
      toast('info', 'Settings saved.');
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  };

  const set = (k: keyof typeof form) => (e: Event) => setForm({ ...form, [k]: (e.target as HTMLInputElement).value });

  return (
    <main class="page narrow" id="main">
      <h1>Settings</h1>
      <form class="card settings" onSubmit={submit}>
        <fieldset class="field">
          <legend class="field-label">Default version for new distros</legend>
          <div class="segmented">
            {[1, 2].map((v) => (
              <label key={v}>
                <input type="radio" name="default_version" checked={form.default_version === v} onChange={() => setForm({ ...form, default_version: v })} />
                <span>Version {v}</span>
              </label>
            ))}
          </div>
          <span class="field-hint muted">Version 1 shares the host kernel; version 2 runs in the utility VM with its own kernel.</span>
        </fieldset>

        <label class="field">
          <span class="field-label">Default user</span>
          <input type="text" name="default_user" value={form.default_user} onInput={set('default_user')} spellcheck={false} autocomplete="off" aria-invalid={problems.user ? true : undefined} />
          <span class="field-hint muted">{problems.user ?? 'The user new distros run terminals and commands as.'}</span>
        </label>

        <label class="field">
          <span class="field-label">Terminal scrollback (MiB)</span>
          <input type="number" name="scrollback" min="0" step="0.25" value={form.scrollback_mib} onInput={set('scrollback_mib')} aria-invalid={problems.scrollback ? true : undefined} />
          <span class="field-hint muted">
            {problems.scrollback ?? `Output the server keeps per session for reattaching (${bytes(scrollback)}); the browser keeps about ${Math.max(1000, Math.min(100000, Math.round(scrollback / 100))).toLocaleString()} lines.`}
          </span>
        </label>

        <label class="field">
          <span class="field-label">Detached session timeout (seconds)</span>
          <input type="number" name="session_timeout" min="0" step="1" value={form.session_timeout_s} onInput={set('session_timeout_s')} aria-invalid={problems.timeout ? true : undefined} />
          <span class="field-hint muted">
            {problems.timeout ?? `A terminal nobody is attached to is ended after ${duration(isFinite(timeout) ? timeout : 0)}; until then a reload or another window can reattach.`}
          </span>
        </label>

        <fieldset class="field">
          <legend class="field-label">LAN access for version 1 ports</legend>
          <div class="segmented">
            {([
              ['off', 'Only when turned on'],
              ['follow-bind', 'Follow the bind address (WSL 1)'],
            ] as const).map(([v, label]) => (
              <label key={v}>
                <input type="radio" name="v1_lan_default" checked={form.v1_lan_default === v} onChange={() => setForm({ ...form, v1_lan_default: v })} />
                <span>{label}</span>
              </label>
            ))}
          </div>
          <span class="field-hint muted">
            {form.v1_lan_default === 'off'
              ? 'A port reaches other computers only after its LAN toggle is on, even when the program listens on every address.'
              : 'As in WSL 1: a program listening on every address is reachable from your network unless its LAN toggle is off.'}
          </span>
        </fieldset>

        <label class="field">
          <span class="field-label">Install mirror</span>
          <input
            type="text"
            name="install_mirror"
            value={form.install_mirror}
            placeholder="the mirror of the server’s apt sources"
            spellcheck={false}
            autocomplete="off"
            onInput={set('install_mirror')}
            aria-invalid={problems.install_mirror ? true : undefined}
          />
          <span class={`field-hint${problems.install_mirror ? '' : ' muted'}`}>
            {problems.install_mirror ??
              'The Debian mirror Install builds Debian releases from, such as https://deb.debian.org/debian or file:///srv/mirror. Empty: the mirror of the server’s own apt sources, else deb.debian.org.'}
          </span>
        </label>

        {(vmFields.length > 0 || form.kernel !== undefined || form.memory_reclaim !== undefined) && (
          <fieldset class="field" data-testid="vm-settings">
            <legend class="field-label">Utility VM (version 2 distros)</legend>
            {form.memory_reclaim !== undefined && (
              <label class="field">
                <span class="field-label">Memory reclaim</span>
                <select
                  name="memory_reclaim"
                  value={form.memory_reclaim}
                  onChange={(e) => setForm({ ...form, memory_reclaim: (e.target as HTMLSelectElement).value as Settings['memory_reclaim'] })}
                >
                  <option value="gradual">Gradual</option>
                  <option value="dropcache">Drop the cache at once</option>
                  <option value="disabled">Disabled</option>
                </select>
                <span class="field-hint muted">
                  How the utility VM gives its page cache back to this computer once it has been idle for 2 minutes (as WSL’s autoMemoryReclaim);
                  applies to the running VM within 10 seconds.
                </span>
              </label>
            )}
            {form.kernel !== undefined && (
              <label class="field">
                <span class="field-label">Kernel</span>
                <input
                  type="text"
                  name="kernel"
                  value={form.kernel}
                  placeholder="the kernel installed with subsys"
                  spellcheck={false}
                  autocomplete="off"
                  onInput={(e) => setForm({ ...form, kernel: (e.target as HTMLInputElement).value })}
                  aria-invalid={problems.kernel ? true : undefined}
                />
                <span class="field-hint muted">
                  {problems.kernel ?? 'A kernel image, or an unpacked Debian linux-image package directory, on the server; used from the VM’s next start.'}
                </span>
              </label>
            )}
            {vmFields.map((f) => (
              <label class="field" key={f.key}>
                <span class="field-label">{f.label}</span>
                <input
                  type="number"
                  name={f.key}
                  min={f.min}
                  step="1"
                  value={form.vm[f.key]}
                  onInput={(e) => setForm({ ...form, vm: { ...form.vm, [f.key]: (e.target as HTMLInputElement).value } })}
                  aria-invalid={problems[f.key] ? true : undefined}
                />
                <span class="field-hint muted">{problems[f.key] ?? f.hint}</span>
              </label>
            ))}
          </fieldset>
        )}

        <ErrorBox error={error} />
        <div class="form-actions">
          <button type="button" class="btn" disabled={!dirty || busy} onClick={() => fill(saved)}>
            Reset
          </button>
          <button type="submit" class="btn btn-primary" disabled={!dirty || busy || Object.keys(problems).length > 0}>
            {busy && <Spinner />}
            Save
          </button>
        </div>
      </form>
    </main>
  );
}
