// A small line chart in plain SVG: one series over the last ten minutes, gaps
// where there are no samples (the distro was stopped).
/** Samples at times t, taken every interval_s. */
export interface Series<S extends { t: string }> {
  interval_s: number;
  samples: S[];
}

const W = 300;
const H = 90;
const WINDOW_S = 600;

/** A round upper bound for the y axis: 1, 2, 5 × 10^n. */
function niceCeil(v: number): number {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

export function Chart<S extends { t: string }>({
  title,
  metrics,
  pick,
  format,
  minMax,
  cls,
}: {
  title: string;
  metrics: Series<S> | null;
  pick: (s: S) => number;
  format: (v: number) => string;
  minMax: number;
  cls: string;
}) {
  const now = Date.now();
  const samples = (metrics?.samples ?? [])
    .map((s) => ({ t: Date.parse(s.t), v: pick(s) }))
    .filter((s) => isFinite(s.t) && isFinite(s.v) && now - s.t <= WINDOW_S * 1000 + 5000)
    .sort((a, b) => a.t - b.t);
  const interval = (metrics?.interval_s ?? 5) * 1000;
  const peak = samples.reduce((m, s) => Math.max(m, s.v), 0);
  const max = niceCeil(Math.max(minMax, peak * 1.1));
  const x = (t: number) => ((t - (now - WINDOW_S * 1000)) / (WINDOW_S * 1000)) * W;
  const y = (v: number) => H - (v / max) * (H - 2) - 1;

  // Split into runs where samples are at most 2.5 intervals apart.
  const runs: { t: number; v: number }[][] = [];
  for (const s of samples) {
    const run = runs[runs.length - 1];
    if (run && s.t - run[run.length - 1].t <= interval * 2.5) run.push(s);
    else runs.push([s]);
  }
  const line = (r: { t: number; v: number }[]) => r.map((s, i) => `${i ? 'L' : 'M'}${x(s.t).toFixed(1)},${y(s.v).toFixed(1)}`).join('');
  const area = (r: { t: number; v: number }[]) =>
    `${line(r)}L${x(r[r.length - 1].t).toFixed(1)},${H}L${x(r[0].t).toFixed(1)},${H}Z`;
  const last = samples[samples.length - 1];
  const current = last && now - last.t < interval * 3 ? last.v : null;
  const summary =
    samples.length === 0
      ? `${title}: no samples in the last 10 minutes`
      : `${title} over the last 10 minutes: now ${current === null ? 'no data' : format(current)}, peak ${format(peak)}`;

  return (
    <figure class={`chart ${cls}`}>
      <figcaption>
        <span class="chart-title">{title}</span>
        <span class="chart-value">{current === null ? '—' : format(current)}</span>
      </figcaption>
      <div class="chart-plot">
        <svg viewBox={`0 0 ${W} ${H}`} preserveAspectRatio="none" role="img" aria-label={summary}>
          {[0.25, 0.5, 0.75].map((f) => (
            <line key={f} class="chart-grid" x1="0" x2={W} y1={H * f} y2={H * f} vector-effect="non-scaling-stroke" />
          ))}
          {runs.map((r, i) =>
            r.length === 1 ? (
              <circle key={i} class="chart-dot" cx={x(r[0].t)} cy={y(r[0].v)} r="1.5" />
            ) : (
              <g key={i}>
                <path class="chart-area" d={area(r)} />
                <path class="chart-line" d={line(r)} vector-effect="non-scaling-stroke" />
              </g>
            ),
          )}
        </svg>
        <span class="chart-max">{format(max)}</span>
        {samples.length === 0 && <span class="chart-empty">No samples yet</span>}
      </div>
      <div class="chart-axis" aria-hidden="true">
        <span>10 min ago</span>
        <span>peak {format(peak)}</span>
        <span>now</span>
      </div>
    </figure>
  );
}
