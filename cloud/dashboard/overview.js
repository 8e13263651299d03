// Fleet overview: sites (with their collector's spool depth), then devices with health, anomaly
// state, outbox depth and model; live.
import { api } from './api.js';
import { ago, anomalyBadge, bytes, el, healthBadge, num } from './format.js';

/** One site card: devices, and the collector's heartbeat (spool depth, sinks) with its age. */
function siteCard(s) {
  const st = s.status;
  const parts = [
    el('strong', { text: s.site }),
    el('span', { class: 'muted', text: `${s.devices} devices · ${s.anomalous} anomalous · seen ${ago(s.lastSeen)}` }),
  ];
  if (!st) {
    parts.push(el('span', { class: 'spool muted', 'data-spool': '', text: 'collector has not reported' }));
  } else {
    // The cloud's own age figure plus the time since this page got it: no browser/cloud clock skew.
    const ageMs = st.ageMs + (Date.now() - st.localAt);
    const stale = ageMs > st.staleAfterMs;
    const lag = Object.entries(st.sinks ?? {})
      .filter(([, k]) => k.lagRows > 0 || !k.ok)
      .map(([n, k]) => `${n} ${k.ok ? '' : 'failing, '}${num(k.lagRows, 0)} behind`);
    parts.push(
      el('span', {
        class: 'spool',
        'data-spool': '',
        'data-rows': st.spool.rows,
        text: `spool ${num(st.spool.rows, 0)} rows · ${bytes(st.spool.bytes)}`,
      }),
      el('span', {
        class: 'muted',
        text: `${st.devices.connected} connected · collector ${st.collectorVersion}${lag.length ? ` · ${lag.join(', ')}` : ''}`,
      }),
      el('span', {
        class: `badge ${stale ? 'warn' : 'ok'}`,
        'data-heartbeat': stale ? 'stale' : 'fresh',
        title: st.receivedAt,
        text: `${stale ? 'stale' : 'reported'} ${ago(new Date(Date.now() - ageMs).toISOString())}`,
      }),
    );
  }
  return el('li', { 'data-site': s.site }, ...parts);
}

export async function renderOverview(main, live) {
  main.replaceChildren(document.getElementById('overview-template').content.cloneNode(true));
  const form = main.querySelector('#filters');
  const tbody = main.querySelector('#twins tbody');
  const more = main.querySelector('#more');
  const empty = main.querySelector('#twins-empty');
  let twins = [];
  let next = null;

  const siteSelect = form.elements.site;
  const siteList = main.querySelector('#sites');
  let sites = [];
  const drawSites = () => siteList.replaceChildren(...sites.map(siteCard));
  const loadSites = async () => {
    const r = await api('/v1/sites');
    const localAt = Date.now();
    sites = r.data.items.map((s) => (s.status ? { ...s, status: { ...s.status, localAt } } : s));
    const known = new Set([...siteSelect.options].map((o) => o.value));
    for (const s of sites) if (!known.has(s.site)) siteSelect.append(el('option', { value: s.site, text: s.site }));
    drawSites();
  };
  await loadSites();

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
    if (e.type === 'site') {
      // A heartbeat carries the whole status: no read needed, unless the site is new to this page.
      const s = sites.find((x) => x.site === e.site);
      if (!s) return void loadSites().catch(() => undefined);
      s.status = { ...e.data, ageMs: 0, localAt: Date.now() };
      drawSites();
      return;
    }
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
  // Heartbeat ages move with the clock: a silent site turns stale without any event.
  const ticker = setInterval(drawSites, 5000);
  return () => clearInterval(ticker);
}
