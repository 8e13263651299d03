/**
 * Credentials that hide inside strings rather than in fields the logger's redact paths know: the
 * userinfo of a URL (`mqtt://device:password@host`), a SAS signature or account key in a
 * connection string or query, a bearer token passed as `access_token=`. Every logger scrubs them
 * (common/log.ts); code that prints a URL anywhere else uses `redactUrl`.
 */

const USERINFO = /(\b[a-z][a-z0-9+.-]*:\/\/)[^\s/?#@]+@/gi;
const SECRET_PARAM = /\b(sig|SharedAccessKey|SharedAccessSignature|AccountKey|access_token|password|passwd|token)=([^&;\s"',]+)/gi;
const MAYBE_SECRET = /:\/\/[^\s/?#@]+@|=/;
const MAX_DEPTH = 4;

/** The text with URL userinfo and secret-looking `key=value` parameters replaced. */
export function redactText(s: string): string {
  if (!MAYBE_SECRET.test(s)) return s;
  return s.replace(USERINFO, '$1[redacted]@').replace(SECRET_PARAM, '$1=[redacted]');
}

const USERINFO_WITH_PASSWORD = /\b[a-z][a-z0-9+.-]*:\/\/[^\s/?#@:]*:[^\s/?#@]+@/i;
const HAS_SECRET_PARAM = new RegExp(SECRET_PARAM.source, 'i');

/** Whether the text carries a credential: a URL with `user:password@`, or a secret `key=value` (a bare user name is none). */
export function hasCredential(s: string): boolean {
  return USERINFO_WITH_PASSWORD.test(s) || HAS_SECRET_PARAM.test(s);
}

/** abfss://<filesystem>@<account>.dfs.core.windows.net: that userinfo names a container, it is no credential. */
const ABFS_FILESYSTEM = /^abfss?:\/\/[^\s/?#@:]+@/i;

/**
 * A URL safe to log or print: userinfo (user and password) and secret query parameters (a SAS's
 * `sig`, tokens, keys) replaced; the rest stays, so the line still says where. The one definition
 * for every URL in a log or error (the lakehouse's Blob URLs too).
 */
export function redactUrl(url: string): string {
  const fs = ABFS_FILESYSTEM.exec(url)?.[0];
  return fs ? fs + redactText(url.slice(fs.length)) : redactText(url);
}

/** A copy of `v` with every string scrubbed (objects and arrays up to a small depth); `v` itself when nothing changed. */
export function redactDeep(v: unknown, depth = 0): unknown {
  if (typeof v === 'string') return redactText(v);
  if (v === null || typeof v !== 'object' || depth >= MAX_DEPTH) return v;
  if (v instanceof Error) {
    const message = redactText(v.message);
    const stack = v.stack === undefined ? undefined : redactText(v.stack);
    if (message === v.message && stack === v.stack) return v;
    const copy = new Error(message);
    copy.name = v.name;
    if (stack !== undefined) copy.stack = stack;
    const code = (v as { code?: unknown }).code;
    if (code !== undefined) Object.assign(copy, { code });
    return copy;
  }
  if (Array.isArray(v)) {
    let out: unknown[] | undefined;
    v.forEach((x, i) => {
      const r = redactDeep(x, depth + 1);
      if (r !== x) (out ??= v.slice())[i] = r;
    });
    return out ?? v;
  }
  const proto = Object.getPrototypeOf(v) as unknown;
  if (proto !== Object.prototype && proto !== null) return v; // Buffers, Maps, class instances: left as they are
  let out: Record<string, unknown> | undefined;
  for (const [k, x] of Object.entries(v)) {
    const r = redactDeep(x, depth + 1);
    if (r !== x) (out ??= { ...(v as Record<string, unknown>) })[k] = r;
  }
  return out ?? v;
}
