// Talks to the twin API with the operator's bearer token; errors carry the API's stable code.
const TOKEN_KEY = 'edgetwin.token';

export function token() {
  return localStorage.getItem(TOKEN_KEY) || '';
}

export function setToken(t) {
  if (t) localStorage.setItem(TOKEN_KEY, t);
  else localStorage.removeItem(TOKEN_KEY);
}

/** A link like /dashboard/#token=… (printed by the demo) logs the browser in once. */
export function takeTokenFromHash() {
  const m = /[#&?]token=([^&]+)/.exec(location.hash);
  if (!m) return;
  setToken(decodeURIComponent(m[1]));
  history.replaceState(null, '', location.pathname + location.hash.replace(/[#&?]token=[^&]+/, '').replace(/^$/, '#/'));
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(path, { method = 'GET', body, headers = {} } = {}) {
  const h = { accept: 'application/json', ...headers };
  const t = token();
  if (t) h.authorization = `Bearer ${t}`;
  if (body !== undefined) h['content-type'] = 'application/json';
  const res = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { message: text };
  }
  if (!res.ok) throw new ApiError(res.status, data?.code ?? `HTTP_${res.status}`, data?.message ?? res.statusText);
  return { data, etag: res.headers.get('etag') };
}

export function streamUrl(query = '') {
  const t = token();
  const q = new URLSearchParams(query);
  if (t) q.set('access_token', t);
  const s = q.toString();
  return `/v1/stream${s ? `?${s}` : ''}`;
}
