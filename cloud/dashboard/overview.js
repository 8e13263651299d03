// Fleet overview: sites, then devices with health, anomaly state, outbox depth and model; live.
import { api } from './api.js';
import { ago, anomalyBadge, el, healthBadge, num } from './format.js';

export async function renderOverview(main, live) {
  main.replaceChildren(document.getElementById('overview-template').content.cloneNode(true));
  const form = main.querySelector('#filters');
  const tbody = main.querySelector('#twins tbody');
  const more = main.querySelector('#more');
  const empty = main.querySelector('#twins-empty');
  let twins = [];
  let next = null;

  const { data: sites } = await api('/v1/sites');
  const siteSelect = form.elements.site;
  main.querySelector('#sites').replaceChildren(
    ...sites.items.map((s) => {
      siteSelect.append(el('option', { value: s.site, text: s.site }));
      return el('li', {}, el('strong', { text: s.site }), el('span', { class: 'muted', text: `${s.devices} devices · ${s.anomalous} anomalous · seen ${ago(s.lastSeen)}` }));
    }),
  );

  const row = (t) => {
    const outbox = t.reportedProperties?.outbox?.rows;
    const desiredKeys = Object.keys(t.desired ?? {}).filter((k) => !k.startsWith('$'));
    const sync = t.applied ? (t.applied.inSync ? 'in sync' : `pending v${t.desired.$version}`) : desiredKeys.length ? 'pending' : '—';
    return el(
      'tr',
      { 'data-device': t.deviceId },
      el('th', { scope: 'row' }, el('a', { href: `#/twins/${encodeURIComponent(t.deviceId)}`, text: t.deviceId })),
      el('td', { text: t.site }),
      el('td', {}, healthBadge(t)),
      el('td', { text: ago(t.lastSeen), title: t.lastSeen }),
      el('td', {}, anomalyBadge(t)),
      el('td', { text: outbox === undefined ? '—' : `${num(outbox, 0)} rows` }),
      el('td', { text: t.model ?? t.reportedProperties?.versions?.model ?? '—' }),
      el('td', { text: sync }),
    );
  };

  const matches = (t) => {
    const q = form.elements.q.value.trim().toLowerCase();
    if (!q) return true;
    const hay = [t.deviceId, t.deviceType ?? '', ...Object.entries(t.tags ?? {}).map(([k, v]) => `${k}:${v}`)].join(' ').toLowerCase();
    return hay.includes(q);
  };

  const draw = () => {
    const shown = twins.filter(matches);
    tbody.replaceChildren(...shown.map(row));
    empty.hidden = shown.length > 0;
    more.hidden = next === null;
  };

  const load = async (append = false) => {
    const q = new URLSearchParams({ limit: '200' });
    if (siteSelect.value) q.set('site', siteSelect.value);
    if (form.elements.anomalous.checked) q.set('anomalous', 'true');
    if (append && next) q.set('cursor', next);
    const { data } = await api(`/v1/twins?${q}`);
    twins = append ? twins.concat(data.items) : data.items;
    next = data.next;
    draw();
  };

  form.addEventListener('input', (e) => (e.target.name === 'q' ? draw() : load()));
  form.addEventListener('submit', (e) => e.preventDefault());
  more.addEventListener('click', () => load(true));
  await load();

  // Live: refresh one row when its twin changes (cheap point read), re-list for new devices.
  const pending = new Set();
  let timer = null;
  live.onEvent = (e) => {
    pending.add(e.device);
    timer ??= setTimeout(async () => {
      timer = null;
      const ids = [...pending];
      pending.clear();
      for (const id of ids) {
        const i = twins.findIndex((t) => t.deviceId === id);
        if (i < 0) {
          await load();
          return;
        }
        try {
          twins[i] = (await api(`/v1/twins/${encodeURIComponent(id)}`)).data;
        } catch {
          // keep the old row: a transient error must not blank the table
        }
      }
      draw();
    }, 500);
  };
}
