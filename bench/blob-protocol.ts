/**
 * The Blob REST rules the test server (bench/blob-server.ts) answers by, apart from its storage:
 * who may call (Shared Key signatures verified against the account key; a SAS checked for its
 * signature's presence, expiry and permission, not recomputed), the If-Match / If-None-Match
 * conditions as Azure answers them, and errors as Azure sends them (status, `x-ms-error-code`).
 */
import { createHmac } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

export interface StoredBlob {
  data: Buffer;
  etag: string;
  lastModified: Date;
  contentType: string;
  metadata: Record<string, string>;
}

/** An Azure error answer: HTTP status and the `x-ms-error-code` / XML `<Code>`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export const xmlEscape = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const unquote = (etag: string): string => etag.trim().replace(/^W\//, '').replace(/^"|"$/g, '');

/** The query's pairs as sent (still percent-encoded): a Shared Key signature covers them so. */
export function rawQuery(url: string): [string, string][] {
  const q = url.indexOf('?');
  if (q < 0) return [];
  return url
    .slice(q + 1)
    .split('&')
    .filter(Boolean)
    .map((kv) => {
      const i = kv.indexOf('=');
      return i < 0 ? [kv, ''] : [kv.slice(0, i), kv.slice(i + 1)];
    });
}

/** How a request proved itself, or an HttpError (401 without credentials, 403 with wrong ones). */
export function authenticate(
  req: IncomingMessage,
  url: string,
  query: Map<string, string>,
  segments: string[],
  account: { name: string; key: string },
): 'sharedkey' | 'sas' {
  const auth = req.headers.authorization;
  if (auth?.startsWith('SharedKey ')) {
    const [name, sig] = auth.slice(10).split(':');
    if (name !== account.name || sig !== sharedKeySignature(req, url, account))
      throw new HttpError(403, 'AuthenticationFailed', 'Shared Key signature does not match');
    return 'sharedkey';
  }
  if (query.has('sig')) {
    const se = Date.parse(query.get('se') ?? '');
    if (!(se > Date.now())) throw new HttpError(403, 'AuthenticationFailed', 'SAS expired or without se');
    const sp = query.get('sp') ?? '';
    const need = req.method === 'DELETE' ? 'd' : req.method === 'PUT' ? 'w' : query.get('comp') === 'list' ? 'l' : 'r';
    // A create is allowed with c or w; a container-level list needs l.
    if (!sp.includes(need) && !(need === 'w' && sp.includes('c')))
      throw new HttpError(403, 'AuthorizationPermissionMismatch', `SAS lacks permission ${need}`);
    if (query.get('sr') === 'b' && segments.length < 3)
      throw new HttpError(403, 'AuthorizationResourceTypeMismatch', 'blob SAS used on a container');
    return 'sas';
  }
  throw new HttpError(401, 'NoAuthenticationInformation', 'Server failed to authenticate the request: no Authorization header or SAS');
}

/** Shared Key string-to-sign (Blob service, version 2015-02-21 and later), signed with the account key. */
function sharedKeySignature(req: IncomingMessage, url: string, account: { name: string; key: string }): string {
  const h = (name: string): string => {
    const v = req.headers[name];
    return Array.isArray(v) ? v.join(',') : (v ?? '');
  };
  const len = h('content-length');
  const headers = Object.keys(req.headers)
    .filter((n) => n.startsWith('x-ms-'))
    .sort()
    .map((n) => `${n}:${h(n).trimStart()}\n`)
    .join('');
  const params = rawQuery(url)
    .map(([k, v]) => [k.toLowerCase(), decodeURIComponent(v)] as const)
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([k, v]) => `\n${k}:${v}`)
    .join('');
  const resource = `/${account.name}${url.split('?')[0]}${params}`;
  const toSign = [
    req.method,
    h('content-encoding'),
    h('content-language'),
    len === '0' ? '' : len,
    h('content-md5'),
    h('content-type'),
    h('date'),
    h('if-modified-since'),
    h('if-match'),
    h('if-none-match'),
    h('if-unmodified-since'),
    h('range'),
  ].join('\n');
  return createHmac('sha256', Buffer.from(account.key, 'base64')).update(`${toSign}\n${headers}${resource}`, 'utf8').digest('base64');
}

/** Azure's answers to If-Match / If-None-Match for an operation on an existing (or missing) blob. */
export function checkConditions(req: IncomingMessage, existing: StoredBlob | undefined, creating: boolean): void {
  const ifMatch = req.headers['if-match'];
  const ifNoneMatch = req.headers['if-none-match'];
  if (ifMatch !== undefined) {
    if (!existing) throw new HttpError(creating ? 412 : 404, creating ? 'ConditionNotMet' : 'BlobNotFound', 'If-Match on a missing blob');
    if (ifMatch !== '*' && unquote(ifMatch) !== unquote(existing.etag))
      throw new HttpError(412, 'ConditionNotMet', 'The condition specified using HTTP conditional header(s) is not met.');
  }
  if (ifNoneMatch !== undefined && existing) {
    if (ifNoneMatch === '*') {
      if (creating) throw new HttpError(409, 'BlobAlreadyExists', 'The specified blob already exists.');
      throw new HttpError(412, 'ConditionNotMet', 'The condition specified using HTTP conditional header(s) is not met.');
    }
    if (unquote(ifNoneMatch) === unquote(existing.etag)) {
      throw new HttpError(412, 'ConditionNotMet', 'The condition specified using HTTP conditional header(s) is not met.');
    }
  }
}
