// Drift of a model version: per cohort, the KS distance of each stream per window against the
// 0.05 line, and the streams that drift now (GET /v1/models/{name}/{version}/drift).
import { api } from './api.js';
import { el, num } from './format.js';

const PALETTE = ['#1f6feb', '#9a6700', '#1a7f37', '#8250df', '#bf3989', '#0969da', '#953800', '#57606a'];

function chart(target, windows, ksLimit, windowMs) {
  target.replaceChildren();
  const xs = windows.map((w) => Date.parse(w.start) / 1000);
  const keys = [...new Set(windows.flatMap((w) => w.streams.map((s) => `${s.stream} ${s.quantity}`)))].slice(0, 24);
  const series = keys.map((k) => windows.map((w) => w.streams.find((s) => `${s.stream} ${s.quantity}` === k)?.ks ?? null));
  const opts = {
    width: Math.max(300, target.clientWidth || 800),
    height: 220,
    // Half a window of margin on each side: one window alone still gets a sensible time axis.
    scales: {
      x: { time: true, range: (_u, min, max) => [min - windowMs / 2000, max + windowMs / 2000] },
      y: { range: (_u, _min, max) => [0, Math.max(max ?? 0, ksLimit) * 1.1] },
    },
    axes: [{}, { label: 'KS distance' }],
    series: [
      {},
      ...keys.map((k, i) => ({ label: k, stroke: PALETTE[i % PALETTE.length], width: 1.2, points: { show: true, size: 4 } })),
      { label: `drift above ${ksLimit} (p < 0.01)`, stroke: '#cf222e', width: 1, dash: [6, 4] },
    ],
  };
  return new window.uPlot(opts, [xs, ...series, xs.map(() => ksLimit)], target);
}

async function showModel(out, name, version) {
  out.replaceChildren(el('p', { class: 'muted', text: 'Loading…' }));
  const { data } = await api(`/v1/models/${encodeURIComponent(name)}/${encodeURIComponent(version)}/drift`);
  out.replaceChildren();
  if (data.cohorts.length === 0) {
    out.append(el('p', { class: 'muted', text: 'No drift histograms for this version yet (agents send them once per drift.intervalMs).' }));
    return;
  }
  for (const c of data.cohorts) {
    const last = c.windows[c.windows.length - 1];
    const drifting = last ? last.streams.filter((s) => s.drift) : [];
    const ref =
      c.reference.manifest ??
      (c.reference.baseline ? `baseline ${c.reference.baseline.from} – ${c.reference.baseline.to}` : 'baseline being collected');
    const target = el('div', {
      class: 'chart',
      role: 'img',
      'data-cohort-chart': c.cohort,
      'aria-label': `KS distance per stream in ${c.cohort}`,
    });
    out.append(
      el(
        'section',
        { class: 'card', 'data-cohort': c.cohort },
        el(
          'h2',
          {},
          `${c.cohort} `,
          el('span', {
            class: `badge ${drifting.length ? 'bad' : 'ok'}`,
            text: drifting.length ? `${drifting.length} drifting` : 'no drift',
          }),
        ),
        el('p', { class: 'muted', text: `Reference: ${ref}. Runbook: ${data.runbook}.` }),
        target,
        drifting.length
          ? el(
              'ul',
              { class: 'list' },
              ...drifting.map((s) =>
                el(
                  'li',
                  { 'data-drifting': `${s.stream} ${s.quantity}` },
                  `${s.stream} ${s.quantity}: KS ${num(s.ks, 3)} (p ${s.p.toExponential(1)}), PSI ${num(s.psi, 3)}, JS ${num(s.js, 3)}, ${num(s.n, 0)} values`,
                ),
              ),
            )
          : el('p', { class: 'muted', text: 'No stream drifts in the newest window.' }),
      ),
    );
    chart(target, c.windows, data.thresholds.ks, data.windowMs);
  }
}

export async function renderDrift(main) {
  main.replaceChildren(document.getElementById('drift-template').content.cloneNode(true));
  const select = main.querySelector('#drift-model');
  const out = main.querySelector('#drift-cohorts');
  const { data } = await api('/v1/models');
  const items = (data.items ?? []).slice().reverse();
  for (const m of items)
    select.append(
      el('option', { value: `${m.name}/${m.version}`, text: `${m.name} ${m.version} (${m.kind ?? 'anomaly'}, ${m.stage ?? ''})` }),
    );
  const show = () => {
    const [name, version] = select.value.split('/');
    if (name && version)
      void showModel(out, name, version).catch((err) => out.replaceChildren(el('p', { class: 'error', text: err.message })));
  };
  select.addEventListener('change', show);
  if (items.length === 0) out.replaceChildren(el('p', { class: 'muted', text: 'The registry has no models.' }));
  else show();
}
