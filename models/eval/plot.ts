/**
 * One self-contained HTML page per evaluated file (inline SVG, no script, no dependency): the
 * series, NAB's anomaly windows, our score, the alert threshold and the detections, so one can see
 * at a glance why a window was caught, caught late or missed.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { NabSeries } from './nab-data.js';
import { probationLength } from './nab-score.js';

const W = 1200;
const H = 220;

/** Min/max per pixel column keeps spikes visible however long the series is. */
function envelope(values: ArrayLike<number>, y: (v: number) => number): string {
  const n = values.length;
  const pts: string[] = [];
  for (let px = 0; px < W; px++) {
    const a = Math.floor((px * n) / W);
    const b = Math.max(a + 1, Math.floor(((px + 1) * n) / W));
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = a; i < Math.min(b, n); i++) {
      lo = Math.min(lo, values[i]!);
      hi = Math.max(hi, values[i]!);
    }
    if (lo <= hi) pts.push(`${px},${y(hi).toFixed(1)} ${px},${y(lo).toFixed(1)}`);
  }
  return pts.join(' ');
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

export function plotHtml(
  series: NabSeries,
  scores: ArrayLike<number>,
  windows: ReadonlyArray<readonly [number, number]>,
  threshold: number,
): string {
  const n = series.values.length;
  const x = (i: number): number => (i / Math.max(1, n - 1)) * W;
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of series.values) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  const span = hi - lo || 1;
  const yv = (v: number): number => H - 10 - ((v - lo) / span) * (H - 20);
  const ys = (s: number): number => H - 10 - s * (H - 20);
  const shades = windows
    .filter(([s]) => s >= 0)
    .map(
      ([s, r]) =>
        `<rect x="${x(s).toFixed(1)}" y="0" width="${Math.max(1, x(r) - x(s)).toFixed(1)}" height="${H}" fill="#f4b6b6" opacity="0.5"/>`,
    );
  const probation = probationLength(n);
  const marks: string[] = [];
  for (let i = probation; i < n; i++) {
    if (scores[i]! >= threshold)
      marks.push(`<circle cx="${x(i).toFixed(1)}" cy="${yv(series.values[i]!).toFixed(1)}" r="3" fill="none" stroke="#c00"/>`);
  }
  return `<!doctype html><meta charset="utf-8"><title>${esc(series.key)}</title>
<body style="font:13px sans-serif;margin:16px">
<h3>${esc(series.key)}</h3>
<p>${n} rows; red bands: NAB windows; blue: value; orange: anomaly score (0..1); dashed: alert threshold ${threshold.toFixed(4)};
circles: detections after the probation period (${probation} rows, grey).</p>
<svg width="${W}" height="${2 * H + 10}" style="border:1px solid #ccc">
<rect x="0" y="0" width="${x(probation).toFixed(1)}" height="${2 * H + 10}" fill="#eee"/>
<g>${shades.join('')}<polyline fill="none" stroke="#1f77b4" stroke-width="1" points="${envelope(series.values, yv)}"/>${marks.join('')}</g>
<g transform="translate(0,${H + 10})">${shades.join('')}<polyline fill="none" stroke="#ff7f0e" stroke-width="1" points="${envelope(scores, ys)}"/>
<line x1="0" x2="${W}" y1="${ys(threshold).toFixed(1)}" y2="${ys(threshold).toFixed(1)}" stroke="#555" stroke-dasharray="4 3"/></g>
</svg></body>
`;
}

export function writePlot(
  dir: string,
  series: NabSeries,
  scores: ArrayLike<number>,
  windows: ReadonlyArray<readonly [number, number]>,
  threshold: number,
): string {
  const path = join(dir, series.category, series.file.replace(/\.csv$/, '.html'));
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, plotHtml(series, scores, windows, threshold));
  return path;
}
