// One device: telemetry chart, reported beside desired (with an ETag-checked change form), a
// direct-method form (methods.js), recent alerts and the audit trail; live from the SSE stream.
import { loadDeviceAlerts } from './alerts.js';
import { api, ApiError } from './api.js';
import { drawChart, loadExplanations, loadSeries } from './chart.js';
import { ago, anomalyBadge, el, explainText, healthBadge, json, num } from './format.js';
import { bindMethodForm } from './methods.js';
import { renderRul } from './rul.js';

export async function renderTwin(main, live, id) {
  main.replaceChildren(document.getElementById('twin-template').content.cloneNode(true));
  const $ = (s) => main.querySelector(s);
  let twin;
  let etag;
  // The ETag of the twin as it was when the operator started typing a change: live refreshes must
  // not silently move it, or a change made meanwhile by someone else would be overwritten unseen.
  let editEtag = null;

  const chartForm = $('#chart-form');
  const status = $('#desired-status');

  const fill = () => {
    for (const n of main.querySelectorAll('[data-id]')) n.textContent = twin.deviceId;
    const badge = (sel, make, attr) => {
      const b = make(twin);
      b.setAttribute(attr, '');
      $(sel).replaceWith(b);
    };
    badge('[data-health]', healthBadge, 'data-health');
    badge('[data-anomaly]', anomalyBadge, 'data-anomaly');
    $('[data-summary]').textContent =
      `site ${twin.site} · ${twin.deviceType ?? 'untyped'} · model ${twin.model ?? '—'} · ${num(twin.readings, 0)} readings · last seen ${ago(twin.lastSeen)}`;
    // Data of this device that was refused or could not be stored: counted on the twin (GET /v1/quarantine has the rows).
    const q = twin.quarantine;
    const qNote = $('[data-quarantine]');
    qNote.hidden = !q || q.count === 0;
    if (q && q.count > 0)
      qNote.textContent = `${num(q.count, 0)} row${q.count === 1 ? '' : 's'} of this device's data in quarantine · last: ${q.lastReason ?? '—'}${q.lastAt ? `, ${ago(q.lastAt)}` : ''}`;
    const metrics = Object.entries(twin.reported ?? {});
    $('#reported tbody').replaceChildren(
      ...metrics.map(([m, r]) =>
        el(
          'tr',
          {},
          el('td', { text: m }),
          el('td', { text: `${num(r.value)} ${r.unit}` }),
          el('td', { text: num(r.score, 2) }),
          el('td', { text: ago(r.ts), title: r.ts }),
        ),
      ),
    );
    $('#reported-props').textContent = json(twin.reportedProperties ?? {});
    $('#desired-doc').textContent = json(twin.desired ?? {});
    const a = twin.applied;
    $('#applied').textContent = a
      ? a.inSync
        ? `Applied by the device: version ${a.version}${a.at ? `, ${ago(a.at)}` : ''}.`
        : `Device has applied version ${a.version}; desired is version ${twin.desired.$version}.`
      : 'The device has not reported an applied version yet.';
    const select = chartForm.elements.metric;
    if (select.options.length === 0) for (const [m] of metrics) select.append(el('option', { value: m, text: m }));
  };

  const loadTwin = async () => {
    const r = await api(`/v1/twins/${encodeURIComponent(id)}`);
    twin = r.data;
    etag = r.etag ?? twin.etag;
    fill();
  };

  const loadChart = async () => {
    const metric = chartForm.elements.metric.value;
    if (!metric) return;
    const windowMs = Number(chartForm.elements.window.value);
    const [series, explained] = await Promise.all([loadSeries(id, metric, windowMs), loadExplanations(id, metric, windowMs)]);
    // An alert marker's explanation: the alerts of this metric that fall in its point's bucket.
    const explainAt = (i) => {
      const from = series.xs[i] * 1000;
      const to = i + 1 < series.xs.length ? series.xs[i + 1] * 1000 : Infinity;
      return explained.filter((a) => a.t >= from && a.t < (series.bucket === 'raw' ? from + 1 : to));
    };
    drawChart($('#chart'), series, metric, twin.reported?.[metric]?.unit, (i) =>
      explainAt(i)
        .map((a) => explainText(a.explain))
        .join('\n'),
    );
    // The same explanations as a list under the chart (the markers' tooltips, for keyboards and readers).
    $('#chart-explain').replaceChildren(
      ...explained
        .filter((a) => a.explain)
        .map((a) => el('li', { 'data-explain': a.metric, title: a.ts }, `${ago(a.ts)} · ${num(a.value)} · ${explainText(a.explain)}`)),
    );
    const alerts = series.alerts.filter((a) => a !== null).length;
    $('#chart').setAttribute(
      'aria-label',
      `${metric} over the last ${chartForm.elements.window.selectedOptions[0].text}: ${series.points} points, ${alerts} alert${alerts === 1 ? '' : 's'}`,
    );
    $('#chart').dataset.alerts = String(alerts);
    $('#chart-note').textContent =
      `${series.points} points from ${series.source}${series.truncated ? ' (truncated)' : ''}${alerts ? ` · ${alerts} alert marker${alerts === 1 ? '' : 's'} (red)` : ''}`;
  };

  const loadLists = async () => {
    void loadDeviceAlerts($('#device-alerts'), $('#device-alerts-status'), id);
    const from = new Date(Date.now() - 7 * 86_400_000).toISOString();
    const [alerts, audit] = await Promise.all([
      api(`/v1/anomalies?device=${encodeURIComponent(id)}&from=${from}&limit=50`).catch(() => ({ data: { items: [] } })),
      api(`/v1/twins/${encodeURIComponent(id)}/audit?limit=50`).catch(() => ({ data: { items: [] } })),
    ]);
    $('#alerts').replaceChildren(
      ...(alerts.data.items.length
        ? alerts.data.items.map((a) =>
            el(
              'li',
              { 'data-alert': a.metric, title: a.ts, 'data-explained': a.explain ? 'yes' : undefined },
              `${ago(a.ts)} · ${a.metric} = ${num(a.value)} ${a.unit} · score ${num(a.score, 2)}${a.explain ? ` · ${explainText(a.explain)}` : ''}`,
            ),
          )
        : [el('li', { class: 'muted', text: 'No alerts in the last 7 days.' })]),
    );
    const items = audit.data.items ?? [];
    $('#audit').replaceChildren(
      ...(items.length
        ? items.map((e) =>
            el('li', {}, `${ago(e.at)} · ${e.actor} (${e.role}) · ${e.action} ${e.detail ? JSON.stringify(e.detail).slice(0, 160) : ''}`),
          )
        : [el('li', { class: 'muted', text: 'No changes recorded.' })]),
    );
  };

  $('#desired-patch').addEventListener('input', () => {
    editEtag ??= etag;
  });

  $('#desired-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    let patch;
    try {
      patch = JSON.parse(e.target.elements.patch.value);
      if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) throw new Error('a JSON object');
    } catch {
      status.textContent = 'The change must be a JSON object.';
      status.className = 'error';
      return;
    }
    status.className = '';
    status.textContent = 'Applying…';
    try {
      const r = await api(`/v1/twins/${encodeURIComponent(id)}/desired`, {
        method: 'PATCH',
        body: patch,
        headers: { 'if-match': editEtag ?? etag },
      });
      twin = r.data;
      etag = r.etag ?? twin.etag;
      editEtag = null;
      fill();
      status.textContent = `Saved as desired version ${twin.desired.$version}; waiting for the device.`;
      void loadLists();
    } catch (err) {
      status.className = 'error';
      if (err instanceof ApiError && err.status === 412) {
        status.textContent = 'Conflict: someone changed this twin meanwhile (412). It is reloaded above — review and apply again.';
        await loadTwin();
        // The operator has now seen the current version: applying again is a deliberate overwrite.
        editEtag = etag;
        void loadLists();
      } else if (err instanceof ApiError && err.status === 401) {
        status.textContent = 'Changing desired state needs an operator token: use the Token button.';
        document.getElementById('token-button').click();
      } else if (err instanceof ApiError && err.status === 403) status.textContent = 'Your token may read but not change desired state.';
      else status.textContent = `Not saved: ${err.message}`;
    }
  });

  bindMethodForm(main, id, () => void loadLists());
  chartForm.addEventListener('input', () => void loadChart());
  const loadRul = () => renderRul($('#rul'), twin);
  await loadTwin();
  await Promise.all([loadChart(), loadLists(), loadRul()]);

  let timer = null;
  live.onEvent = (e) => {
    if (e.device !== id) return;
    timer ??= setTimeout(async () => {
      timer = null;
      await loadTwin().catch(() => undefined);
      if (e.type === 'anomaly' || e.type === 'desired' || e.type === 'alert') void loadLists();
      if (e.type === 'prediction') void loadRul().catch(() => undefined);
    }, 400);
  };
  // History lands in the lakehouse in micro-batches, after the live event: re-read it periodically.
  const refreshChart = setInterval(() => {
    void loadChart().catch(() => undefined);
    void loadLists().catch(() => undefined);
  }, 10_000);
  // uPlot draws at a fixed size: follow the window (laptop ↔ tablet rotation).
  let resizeTimer = null;
  const onResize = () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => void loadChart().catch(() => undefined), 150);
  };
  window.addEventListener('resize', onResize);
  return () => {
    clearInterval(refreshChart);
    window.removeEventListener('resize', onResize);
  };
}
