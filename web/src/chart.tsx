import { formatMs } from './format.ts';
import { statusKey, statusLabel } from './status.ts';

export interface ChartRun {
  readonly id: string;
  readonly status: string | null;
  readonly durationMs: number | null;
  readonly latenessMs: number | null;
}

/**
 * Duration and lateness of a job's last runs, oldest on the left: two rows of bars in one inline
 * SVG (no chart library, nothing loaded). Each bar has a title with the run's figures; the figure
 * as a whole is described in words for screen readers.
 */
export function RunChart(props: { runs: readonly ChartRun[] }) {
  const runs = props.runs.filter((run) => run.durationMs !== null || run.latenessMs !== null);
  if (runs.length === 0) return <p class="muted">No finished runs to chart yet.</p>;
  const width = 600;
  const rowHeight = 70;
  const labelWidth = 90;
  const gap = 2;
  // At most 40 runs; a few runs get narrow bars too, so that the chart reads as a series.
  const barWidth = Math.min(24, Math.max(2, (width - labelWidth) / runs.length - gap));
  const rows = [
    { key: 'duration', label: 'Duration', values: runs.map((r) => r.durationMs) },
    { key: 'lateness', label: 'Lateness', values: runs.map((r) => r.latenessMs) },
  ];
  const summary = rows
    .map((row) => {
      const known = row.values.filter((v): v is number => v !== null);
      return known.length ? `${row.label}: from ${formatMs(Math.min(...known))} to ${formatMs(Math.max(...known))}` : `${row.label}: none`;
    })
    .join('; ');
  return (
    <figure class="chart">
      <svg viewBox={`0 0 ${width} ${rowHeight * 2 + 30}`} role="img" aria-labelledby="chart-title chart-desc" preserveAspectRatio="xMinYMin meet">
        <title id="chart-title">Duration and lateness of the last {runs.length} runs, oldest first</title>
        <desc id="chart-desc">{summary}</desc>
        {rows.map((row, rowIndex) => {
          const max = Math.max(1, ...row.values.map((v) => Math.max(0, v ?? 0)));
          const top = rowIndex * (rowHeight + 15);
          return (
            <g key={row.key} class={`series-${row.key}`}>
              <text x={0} y={top + 14} class="chart-label">{row.label}</text>
              <text x={0} y={top + 30} class="chart-scale">max {formatMs(max)}</text>
              <line x1={labelWidth} x2={width} y1={top + rowHeight} y2={top + rowHeight} class="chart-axis" />
              {row.values.map((value, i) => {
                const run = runs[i] as ChartRun;
                const height = value === null ? 0 : Math.max(1, (Math.max(0, value) / max) * (rowHeight - 8));
                return (
                  <rect
                    key={run.id}
                    x={labelWidth + i * (barWidth + gap)}
                    y={top + rowHeight - height}
                    width={barWidth}
                    height={height}
                    class={`bar status-${statusKey(run.status)}`}
                  >
                    <title>{`Run ${run.id} (${statusLabel(run.status)}): ${row.label.toLowerCase()} ${formatMs(value)}`}</title>
                  </rect>
                );
              })}
            </g>
          );
        })}
      </svg>
      <figcaption>Duration and lateness of the last {runs.length} runs (oldest on the left).</figcaption>
    </figure>
  );
}
