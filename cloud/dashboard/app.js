// edgetwin dashboard: a hash router over two views and one live SSE connection.
import { ApiError, setToken, streamUrl, takeTokenFromHash, token } from './api.js';
import { el } from './format.js';
import { openAlertCount, renderAlerts } from './alerts.js';
import { renderDrift } from './drift.js';
import { renderOverview } from './overview.js';
import { renderTwin } from './twin.js';

const main = document.getElementById('main');
const liveBadge = document.getElementById('live');
const dialog = document.getElementById('token-dialog');
const live = { onEvent: null, source: null };
let cleanup = null;

function connectStream() {
  live.source?.close();
  const es = new EventSource(streamUrl());
  live.source = es;
  const on = (text, cls) => {
    liveBadge.textContent = text;
    liveBadge.className = `live ${cls}`;
  };
  es.onopen = () => on('live', 'on');
  es.onerror = () => on('reconnecting…', 'off');
  for (const type of ['twin', 'anomaly', 'desired', 'reported', 'site', 'alert', 'prediction']) {
    es.addEventListener(type, (m) => {
      try {
        const e = JSON.parse(m.data);
        if (e.type === 'alert') void refreshAlertCount();
        live.onEvent?.(e);
      } catch {
        // a malformed event is skipped; the next one refreshes the view anyway
      }
    });
  }
}

/** The header's Alerts link shows how many alerts fire now. */
async function refreshAlertCount() {
  const badge = document.getElementById('alert-count');
  try {
    const n = await openAlertCount();
    badge.textContent = n ? String(n) : '';
    badge.hidden = n === 0;
  } catch {
    badge.hidden = true;
  }
}

async function route() {
  cleanup?.();
  cleanup = null;
  live.onEvent = null;
  const m = /^#\/twins\/(.+)$/.exec(location.hash);
  try {
    if (/^#\/alerts/.test(location.hash)) cleanup = (await renderAlerts(main, live)) ?? null;
    else if (/^#\/drift/.test(location.hash)) cleanup = (await renderDrift(main)) ?? null;
    else if (m) cleanup = (await renderTwin(main, live, decodeURIComponent(m[1]))) ?? null;
    else cleanup = (await renderOverview(main, live)) ?? null;
    main.focus();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      main.replaceChildren(el('p', {}, 'This API needs a token. ', el('button', { type: 'button', id: 'ask-token', text: 'Enter token' })));
      document.getElementById('ask-token').addEventListener('click', () => dialog.showModal());
      if (!dialog.open) dialog.showModal();
      return;
    }
    main.replaceChildren(el('p', { class: 'error', role: 'alert', text: `Could not load: ${err.message}` }));
  }
}

document.getElementById('token-button').addEventListener('click', () => {
  document.getElementById('token-input').value = token();
  dialog.showModal();
});
document.getElementById('token-cancel').addEventListener('click', () => dialog.close());
document.getElementById('token-form').addEventListener('submit', () => {
  setToken(document.getElementById('token-input').value.trim());
  connectStream();
  void route();
});

takeTokenFromHash();
window.addEventListener('hashchange', () => void route());
connectStream();
void route();
void refreshAlertCount();
setInterval(() => void refreshAlertCount(), 30_000);
