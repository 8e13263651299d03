export function ago(iso) {
  if (!iso) return '—';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function num(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  return Number(v).toLocaleString(undefined, { maximumFractionDigits: digits });
}

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

const HEALTH = { online: 'ok', stale: 'warn', offline: 'bad' };

export function healthBadge(twin) {
  const status = twin.health?.status ?? 'unknown';
  return el('span', { class: `badge ${HEALTH[status] ?? ''}`, text: status });
}

export function anomalyBadge(twin) {
  const a = twin.anomaly ?? {};
  if (a.anomalous) return el('span', { class: 'badge bad', text: `anomaly ${num(a.score, 2)}${a.metric ? ` · ${a.metric}` : ''}` });
  return el('span', { class: 'badge ok', text: a.score === null || a.score === undefined ? 'normal' : `normal ${num(a.score, 2)}` });
}

/**
 * An alert's explanation in one line: its top feature groups with signed contributions to the
 * surprise (exact Shapley values, docs/anomaly-detection.md) and the part of the detector that fired.
 */
export function explainText(explain) {
  if (!explain || !Array.isArray(explain.groups)) return '';
  const parts = explain.groups.map((g) => `${g.group} ${g.contribution >= 0 ? '+' : '−'}${num(Math.abs(g.contribution), 2)}`);
  return `why: ${parts.join(', ')} (${explain.detector})`;
}

export function json(v) {
  return JSON.stringify(v, null, 2);
}
