// Remaining useful life on the twin page: one chart per asset of the failure model's predictions
// over time, with the device's alert threshold as a line, and the newest prediction per asset.
import { api } from './api.js';
import { ago, el, num } from './format.js';

const DAY = 86_400_000;

/** The device's threshold: what its failure model reports applying, else none known. */
function thresholdOf(twin) {
  const t = twin.reportedProperties?.failure?.threshold;
  return typeof t === 'number' ? t : null;
}

async function history(id, asset, windowMs) {
  const q = new URLSearchParams({ asset, from: new Date(Date.now() - windowMs).toISOString(), limit: '10000' });
  const { data } = await api(`/v1/twins/${encodeURIComponent(id)}/predictions?${q}`);
  return data.items;
}

function draw(target, items, threshold, unit) {
  target.replaceChildren();
  const xs = items.map((p) => Date.parse(p.at) / 1000);
  const ys = items.map((p) => p.rulCycles);
  const line = xs.map(() => threshold);
  const alerts = items.map((p) => (p.alert ? p.rulCycles : null));
  const opts = {
    width: Math.max(300, target.clientWidth || 800),
    height: 200,
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(max ?? 0, threshold ?? 0) * 1.05 || 1] } },
    axes: [{}, { label: `remaining life (${unit}s)` }],
    series: [
      {},
      { label: 'remaining life', stroke: '#1f6feb', width: 1.5 },
      { label: 'threshold', stroke: '#cf222e', width: 1, dash: [6, 4], points: { show: false } },
      { label: 'below threshold', stroke: '#cf222e', width: 0, points: { show: true, size: 6, fill: '#cf222e' } },
    ],
  };
  return new window.uPlot(opts, [xs, ys, line, alerts], target);
}

/** Fills the RUL section (hidden when the device runs no failure model). */
export async function renderRul(section, twin, windowMs = 30 * DAY) {
  const assets = Object.entries(twin.predictions ?? {});
  section.hidden = assets.length === 0;
  if (assets.length === 0) return;
  const threshold = thresholdOf(twin);
  section.querySelector('[data-rul-note]').textContent =
    threshold === null ? 'Threshold not reported by the device.' : `Alert below ${num(threshold)} steps (dashed line).`;
  const list = section.querySelector('[data-rul-assets]');
  list.replaceChildren();
  for (const [asset, p] of assets) {
    const chart = el('div', { class: 'chart rul-chart', role: 'img', 'data-rul-chart': asset });
    const head = el(
      'h3',
      {},
      `${asset}: ${num(p.rulCycles, 1)} ${p.unit}s `,
      el('span', { class: `badge ${p.alert ? 'bad' : 'ok'}`, text: p.alert ? 'below threshold' : 'ok' }),
      el('span', { class: 'muted', text: ` · ${p.model} · ${ago(p.at)}` }),
    );
    list.append(el('div', { class: 'rul-asset', 'data-asset': asset }, head, chart));
    const items = await history(twin.deviceId, asset, windowMs);
    draw(chart, items, threshold, p.unit);
    const below = items.filter((i) => i.alert).length;
    chart.setAttribute('aria-label', `${asset}: ${items.length} predictions over 30 days, ${below} below the threshold`);
    chart.dataset.points = String(items.length);
  }
}
