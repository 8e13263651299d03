// Alerts: the fleet's open alerts with acknowledge and silence (#/alerts), and one device's alerts
// on its twin page. Acknowledging and silencing need an operator token; both are audited.
import { api, ApiError } from './api.js';
import { ago, el } from './format.js';

const SEVERITY = { critical: 'bad', warning: 'warn', info: '' };

function stateBadge(a) {
  if (a.state === 'resolved') return el('span', { class: 'badge ok', text: 'resolved' });
  if (a.silenced) return el('span', { class: 'badge', text: 'silenced' });
  if (a.acknowledgedAt) return el('span', { class: 'badge', text: `acked by ${a.acknowledgedBy}` });
  return el('span', { class: `badge ${a.state === 'firing' ? 'bad' : 'warn'}`, text: a.state });
}

function explain(err) {
  if (err instanceof ApiError && (err.status === 401 || err.status === 403)) return 'This needs an operator token: use the Token button.';
  return `Not done: ${err.message}`;
}

/** A table of alerts with Ack / Silence 1 h buttons; `reload` runs after a change. */
export function alertTable(items, status, reload) {
  const act = async (label, fn) => {
    status.className = '';
    status.textContent = `${label}…`;
    try {
      await fn();
      status.textContent = `${label}: done.`;
      await reload();
    } catch (err) {
      status.className = 'error';
      status.textContent = explain(err);
    }
  };
  const rows = items.map((a) => {
    const open = a.state !== 'resolved';
    const ack = el('button', {
      type: 'button',
      class: 'ghost',
      'data-ack': a.id,
      text: 'Acknowledge',
      disabled: !open || Boolean(a.acknowledgedAt),
    });
    ack.addEventListener('click', () =>
      act(`Acknowledging ${a.ruleName} · ${a.key}`, () => api(`/v1/alerts/${encodeURIComponent(a.id)}/ack`, { method: 'POST', body: {} })),
    );
    const silence = el('button', {
      type: 'button',
      class: 'ghost',
      'data-silence': a.id,
      text: 'Silence 1 h',
      disabled: !open || a.silenced,
    });
    silence.addEventListener('click', () =>
      act(`Silencing ${a.ruleName} · ${a.key}`, () =>
        api('/v1/alert-silences', {
          method: 'POST',
          body: {
            ruleId: a.ruleId,
            ...(a.site ? { site: a.site } : {}),
            ...(a.device ? { device: a.device } : {}),
            durationS: 3600,
            comment: `silenced from the dashboard (${a.ruleName} · ${a.key})`,
          },
        }),
      ),
    );
    const what = a.device ? el('a', { href: `#/twins/${encodeURIComponent(a.device)}`, text: a.device }) : a.key;
    return el(
      'tr',
      { 'data-alert-id': a.id, 'data-state': a.state },
      el('td', {}, el('span', { class: `badge ${SEVERITY[a.severity] ?? ''}`, text: a.severity })),
      el('td', {}, a.ruleName),
      el('td', {}, what),
      el('td', {}, a.site ?? '—'),
      el('td', {}, a.summary),
      el('td', { title: a.firedAt ?? a.startedAt }, ago(a.firedAt ?? a.startedAt)),
      el('td', {}, stateBadge(a)),
      el('td', { class: 'actions' }, ack, silence),
    );
  });
  return el(
    'table',
    { class: 'alerts' },
    el('caption', { class: 'sr-only', text: 'Alerts with severity, rule, subject, site, summary, age and state' }),
    el(
      'thead',
      {},
      el(
        'tr',
        {},
        ...['Severity', 'Rule', 'Subject', 'Site', 'Summary', 'Since', 'State', ''].map((h) => el('th', { scope: 'col', text: h })),
      ),
    ),
    el('tbody', {}, ...rows),
  );
}

/** #/alerts: open alerts (or every state), live. */
export async function renderAlerts(main, live) {
  const status = el('p', { role: 'status', 'aria-live': 'polite', id: 'alerts-status' });
  const which = el(
    'select',
    { name: 'state', id: 'alerts-state' },
    el('option', { value: 'open', text: 'open' }),
    el('option', { value: 'firing', text: 'firing' }),
    el('option', { value: 'resolved', text: 'resolved' }),
    el('option', { value: 'all', text: 'all' }),
  );
  const wrap = el('div', { class: 'table-wrap', id: 'alerts-table' });
  const silences = el('ul', { class: 'list', id: 'silences' });
  main.replaceChildren(
    el('h1', { text: 'Alerts' }),
    el('form', { class: 'filters' }, el('label', {}, 'State ', which)),
    status,
    wrap,
    el('h2', { text: 'Active silences' }),
    silences,
  );
  const reload = async () => {
    const [alerts, sil] = await Promise.all([
      api(`/v1/alerts?state=${which.value}&limit=200`),
      api('/v1/alert-silences').catch(() => ({ data: { items: [] } })),
    ]);
    const items = alerts.data.items;
    wrap.replaceChildren(
      items.length ? alertTable(items, status, reload) : el('p', { class: 'muted', id: 'alerts-empty', text: 'No alerts.' }),
    );
    silences.replaceChildren(
      ...(sil.data.items.length
        ? sil.data.items.map((s) =>
            el(
              'li',
              {},
              `${[s.ruleId, s.site, s.device].filter(Boolean).join(' · ')} until ${new Date(s.endsAt).toLocaleString()} — ${s.comment} (${s.createdBy})`,
            ),
          )
        : [el('li', { class: 'muted', text: 'None.' })]),
    );
  };
  which.addEventListener('change', () => void reload());
  await reload();
  let timer = null;
  live.onEvent = (e) => {
    if (e.type !== 'alert') return;
    timer ??= setTimeout(() => {
      timer = null;
      void reload().catch(() => undefined);
    }, 300);
  };
  const refresh = setInterval(() => void reload().catch(() => undefined), 15_000);
  return () => clearInterval(refresh);
}

/** The twin page's alert card: this device's alerts, newest first, with the same actions. */
export async function loadDeviceAlerts(container, status, id) {
  const r = await api(`/v1/alerts?device=${encodeURIComponent(id)}&state=all&limit=20`).catch(() => ({ data: { items: [] } }));
  const reload = () => loadDeviceAlerts(container, status, id);
  container.replaceChildren(
    r.data.items.length ? alertTable(r.data.items, status, reload) : el('p', { class: 'muted', text: 'No alerts for this device.' }),
  );
  return r.data.items.filter((a) => a.state !== 'resolved').length;
}

/** The count in the header's Alerts link. */
export async function openAlertCount() {
  const r = await api('/v1/alerts?state=firing&limit=1000');
  return r.data.items.length;
}
