// One metric over a window: values (left axis), calibrated anomaly score (right axis, 0..1) and
// alert markers. Raw readings for short windows, gold rollups for long ones.
import { api } from './api.js';

function bucketFor(windowMs) {
  if (windowMs <= 3_600_000) return 'raw';
  if (windowMs <= 86_400_000) return '1m';
  return '1h';
}

export async function loadSeries(device, metric, windowMs) {
  const to = Date.now();
  const from = to - windowMs;
  const bucket = bucketFor(windowMs);
  const q = new URLSearchParams({ metric, from: new Date(from).toISOString(), to: new Date(to).toISOString(), bucket, limit: '20000' });
  const { data } = await api(`/v1/twins/${encodeURIComponent(device)}/telemetry?${q}`);
  const xs = [];
  const values = [];
  const scores = [];
  const alerts = [];
  for (const p of data.points) {
    xs.push(Date.parse(p.ts) / 1000);
    const raw = bucket === 'raw';
    const v = raw ? p.value : p.mean;
    values.push(v);
    const s = raw ? p.score : p.maxScore;
    scores.push(s ?? null);
    alerts.push((raw ? p.alert : p.alerts > 0) ? v : null);
  }
  return { xs, values, scores, alerts, bucket, source: data.source, truncated: data.truncated, points: data.points.length };
}

/** The alerts of one metric in the window, with their explanations (`t`: ms), from the anomalies history. */
export async function loadExplanations(device, metric, windowMs) {
  const to = Date.now();
  const q = new URLSearchParams({ device, from: new Date(to - windowMs).toISOString(), to: new Date(to).toISOString(), limit: '1000' });
  try {
    const { data } = await api(`/v1/anomalies?${q}`);
    return data.items.filter((a) => a.metric === metric).map((a) => ({ ...a, t: Date.parse(a.ts) }));
  } catch {
    return [];
  }
}

/** Draws the chart; `explainAt(i)` gives the text shown when the cursor is on alert marker i. */
export function drawChart(target, series, metric, unit, explainAt = () => '') {
  target.replaceChildren();
  const tip = document.createElement('div');
  tip.className = 'chart-tip';
  tip.hidden = true;
  const width = Math.max(300, target.clientWidth || 800);
  const opts = {
    width,
    height: 280,
    scales: { x: { time: true }, score: { range: [0, 1] } },
    axes: [
      {},
      { label: unit ? `${metric} (${unit})` : metric },
      { scale: 'score', side: 1, label: 'anomaly score', grid: { show: false } },
    ],
    series: [
      {},
      { label: metric, stroke: '#1f6feb', width: 1.5 },
      { label: 'score', scale: 'score', stroke: '#9a6700', width: 1, dash: [4, 3] },
      { label: 'alert', stroke: '#cf222e', width: 0, points: { show: true, size: 8, fill: '#cf222e' } },
    ],
    hooks: {
      setCursor: [
        (u) => {
          const i = u.cursor.idx;
          const text = i !== null && i !== undefined && series.alerts[i] !== null ? explainAt(i) : '';
          tip.hidden = !text;
          if (!text) return;
          tip.textContent = text;
          tip.style.left = `${u.cursor.left + 12}px`;
          tip.style.top = `${u.cursor.top + 12}px`;
        },
      ],
    },
  };
  // uPlot is loaded as a classic script (window.uPlot) so the page needs no bundler.
  const plot = new window.uPlot(opts, [series.xs, series.values, series.scores, series.alerts], target);
  plot.over.append(tip);
  return plot;
}
