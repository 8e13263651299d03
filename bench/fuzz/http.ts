/**
 * HTTP fuzzing against a running cloud, seeded: malformed and mistyped JSON to every writing
 * route, huge and gzip-bomb bodies, wrong content types, and path and query injection (`../`,
 * `%00`, SQL, DuckDB table functions, shell and template syntax, overlong values) in ids, metric
 * names and every query parameter of every reading route. Each answer is checked on the spot:
 * never a 5xx, every error is `{code, message}` with a known EDGETWIN_ERR_* code, and nothing
 * from outside the lakehouse (a file read through an injected table function) or from another
 * device ever comes back.
 */
import { gzipSync } from 'node:zlib';
import { request } from 'undici';
import { between, pick, rng, type Rng } from '../chaos/rng.js';
import { ERROR_CODES } from './harness.js';

export interface HttpFuzzOptions {
  cloudUrl: string;
  seed: number;
  requests: number;
  /** The cloud's http.bodyLimitBytes. */
  bodyLimitBytes: number;
  tokens: { collector: string; operator: string; viewer: string };
  site: string;
  /** A device with stored readings, whose queries the injections ride on. */
  device: string;
}

export interface HttpFuzzFigures {
  http_requests: number;
  http_errors: number;
  /** Answers that broke a rule (a 5xx, an error without a known code, leaked data); must be 0. */
  http_violations: number;
  http_violation_samples: string[];
  /** Violations by what went wrong: `500 <message>`, `no code <code>`, `leak`, `no answer`, `other device`. */
  http_violations_by_kind: Record<string, number>;
  http_by_status: Record<string, number>;
}

export const INJECTIONS = [
  '../',
  '../../etc/passwd',
  '..%2F..%2Fetc%2Fpasswd',
  '%2e%2e%2f',
  '%00',
  'a%00b',
  '\u0000',
  "'",
  '"',
  "' OR '1'='1",
  "' OR 1=1 --",
  "'; DROP TABLE twins; --",
  "x') UNION ALL SELECT * FROM read_csv('/etc/passwd') --",
  "read_text('/etc/passwd')",
  "' || (SELECT content FROM read_text('/etc/passwd')) || '",
  '*',
  '%',
  '_',
  '\\',
  '$(id)',
  '`id`',
  '{{7*7}}',
  '${7*7}',
  '<script>alert(1)</script>',
  '😀',
  'ÿþ',
  ' ',
  '',
  '-1',
  '0',
  '1e309',
  'NaN',
  'Infinity',
  '99999999999999999999',
  'm0;DELETE',
  'm0\nm1',
  'a'.repeat(5000),
  '/v1/twins',
  'null',
  'true',
  '[]',
  '{}',
];

const READ_ROUTES = (device: string): ((inj: string) => string)[] => {
  const e = encodeURIComponent;
  return [
    (i) => `/v1/twins/${e(i)}`,
    (i) => `/v1/twins/${i}`,
    (i) => `/v1/twins/${e(device)}/telemetry?metric=${e(i)}`,
    (i) => `/v1/twins/${e(device)}/telemetry?metric=good&from=${e(i)}`,
    (i) => `/v1/twins/${e(device)}/telemetry?metric=good&to=${e(i)}&bucket=1m`,
    (i) => `/v1/twins/${e(device)}/telemetry?metric=good&bucket=${e(i)}`,
    (i) => `/v1/twins/${e(device)}/telemetry?metric=good&limit=${e(i)}`,
    (i) => `/v1/twins/${e(i)}/telemetry?metric=good`,
    (i) => `/v1/twins?site=${e(i)}`,
    (i) => `/v1/twins?tag=${e(i)}&type=${e(i)}`,
    (i) => `/v1/twins?cursor=${e(i)}&limit=${e(i)}`,
    (i) => `/v1/twins?lastSeenBefore=${e(i)}&anomalous=${e(i)}`,
    (i) => `/v1/anomalies?device=${e(i)}&site=${e(i)}`,
    (i) => `/v1/quarantine?reason=${e(i)}&device=${e(i)}`,
    (i) => `/v1/quality?batchId=${e(i)}&from=${e(i)}`,
    (i) => `/v1/audit?action=${e(i)}&cursor=${e(i)}`,
    (i) => `/v1/twins/${e(i)}/audit`,
    (i) => `/v1/desired?site=${e(i)}&since=${e(i)}`,
    (i) => `/v1/sites?x=${e(i)}`,
    (i) => `/${i}`,
  ];
};

function randomJsonish(r: Rng, depth = 0): unknown {
  switch (between(r, 0, depth > 3 ? 4 : 7)) {
    case 0:
      return null;
    case 1:
      return pick(r, [0, -1, 1.5, 1e308, -1e308, 2 ** 53 + 1]);
    case 2:
      return pick(r, INJECTIONS);
    case 3:
      return r() < 0.5;
    case 4:
      return 'x'.repeat(between(r, 0, 40));
    case 5:
      return Array.from({ length: between(r, 0, 4) }, () => randomJsonish(r, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let k = between(r, 0, 4); k > 0; k--)
        o[
          pick(r, [
            'v',
            'batchId',
            'site',
            'messages',
            'device',
            'epoch',
            'readings',
            'seq',
            'ts',
            'metric',
            'value',
            'unit',
            '$version',
            'a.b',
            '$x',
            '',
          ])
        ] = randomJsonish(r, depth + 1);
      return o;
    }
  }
}

/** A valid envelope with one field replaced by something of the wrong type or shape. */
function mistypedEnvelope(r: Rng, site: string): unknown {
  const env: Record<string, unknown> = {
    v: 1,
    batchId: `fz-${between(r, 0, 1e9)}`,
    site,
    messages: [
      { v: 1, device: 'fuzz-env', epoch: 1, readings: [{ seq: between(r, 1, 1e6), ts: Date.now(), metric: 'm', value: 1, unit: 'u' }] },
    ],
  };
  const msg = (env['messages'] as Record<string, unknown>[])[0]!;
  const reading = (msg['readings'] as Record<string, unknown>[])[0]!;
  const target = pick(r, [env, msg, reading]);
  const key = pick(r, Object.keys(target));
  target[key] = randomJsonish(r);
  return env;
}

function corrupt(r: Rng, text: string): string {
  const i = between(r, 0, Math.max(0, text.length - 1));
  return pick(r, [
    text.slice(0, i),
    text.slice(0, i) + pick(r, ['{', '}', '"', ',', '\\', '\u0000']) + text.slice(i + 1),
    text + pick(r, ['}', ',', 'x']),
  ]);
}

export async function fuzzHttp(o: HttpFuzzOptions): Promise<HttpFuzzFigures> {
  const r = rng(o.seed);
  const f: HttpFuzzFigures = {
    http_requests: 0,
    http_errors: 0,
    http_violations: 0,
    http_violation_samples: [],
    http_violations_by_kind: {},
    http_by_status: {},
  };
  const violation = (what: string, kind: string): void => {
    f.http_violations++;
    f.http_violations_by_kind[kind] = (f.http_violations_by_kind[kind] ?? 0) + 1;
    if (f.http_violation_samples.length < 10) f.http_violation_samples.push(what);
  };
  const routes = READ_ROUTES(o.device);

  const send = async (
    method: 'GET' | 'POST' | 'PATCH',
    path: string,
    token: string,
    body?: string | Buffer,
    headers: Record<string, string> = {},
  ): Promise<void> => {
    f.http_requests++;
    let status: number;
    let text: string;
    try {
      const res = await request(`${o.cloudUrl}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...headers },
        body,
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
      });
      status = res.statusCode;
      text = await res.body.text();
    } catch (err) {
      // A URL undici will not put on the wire is no request at all.
      if ((err as { code?: string }).code === 'UND_ERR_INVALID_ARG' || err instanceof TypeError) {
        f.http_requests--;
        return;
      }
      // Only an over-limit body may be cut off by the server before it is all sent.
      if (!(body && body.length > o.bodyLimitBytes)) violation(`${method} ${path.slice(0, 120)}: no answer (${String(err)})`, 'no answer');
      return;
    }
    f.http_by_status[status] = (f.http_by_status[status] ?? 0) + 1;
    const where = `${method} ${path.slice(0, 120)} → ${status}`;
    let parsed: { code?: unknown; message?: unknown } = {};
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch {
      // not JSON: judged below where it matters
    }
    if (status >= 500 && status !== 503)
      violation(`${where}: ${text.slice(0, 200)}`, `${status} ${String(parsed.message ?? '').slice(0, 60)}`);
    if (status >= 400) {
      f.http_errors++;
      const code = parsed.code;
      if (typeof code !== 'string' || !ERROR_CODES.has(code))
        violation(`${where}: error without a known code: ${text.slice(0, 200)}`, `no code ${typeof code === 'string' ? code : 'non-JSON'}`);
    }
    if (/root:.*:0:0:/.test(text)) violation(`${where}: /etc/passwd leaked`, 'leak');
    if (status === 200 && path.includes('/telemetry') && text.includes('"device"')) {
      // A history query answers only for the device in its path.
      const devices = [...text.matchAll(/"device":"([^"]*)"/g)].map((m) => m[1]);
      if (devices.some((d) => d !== o.device) && path.startsWith(`/v1/twins/${encodeURIComponent(o.device)}/`))
        violation(`${where}: another device's history`, 'other device');
    }
  };

  for (let i = 0; i < o.requests; i++) {
    const json = { 'content-type': 'application/json' };
    switch (between(r, 0, 9)) {
      case 0:
      case 1:
      case 2: {
        const inj = pick(r, INJECTIONS);
        await send('GET', pick(r, routes)(inj), pick(r, [o.tokens.viewer, o.tokens.operator]));
        break;
      }
      case 3:
        await send('POST', '/v1/ingest', o.tokens.collector, corrupt(r, JSON.stringify(mistypedEnvelope(r, o.site))), json);
        break;
      case 4:
        await send('POST', '/v1/ingest', o.tokens.collector, JSON.stringify(mistypedEnvelope(r, o.site)), json);
        break;
      case 5: {
        const id = pick(r, [o.device, pick(r, INJECTIONS)]);
        const body = pick(r, [
          JSON.stringify(randomJsonish(r)),
          corrupt(r, '{"samplingIntervalMs":500}'),
          JSON.stringify({ [pick(r, ['$x', 'a.b', 'a b', ''])]: 1 }),
          JSON.stringify({ deep: JSON.parse('{"a":'.repeat(40) + '1' + '}'.repeat(40)) }),
        ]);
        await send('PATCH', `/v1/twins/${encodeURIComponent(id)}/desired`, o.tokens.operator, body, {
          ...json,
          'if-match': pick(r, ['*', '"0"', 'garbage', '']),
        });
        break;
      }
      case 6:
        await send('PATCH', `/v1/twins/${encodeURIComponent(o.device)}`, o.tokens.operator, JSON.stringify(randomJsonish(r)), {
          ...json,
          'if-match': '*',
        });
        break;
      case 7: {
        // Wrong content type, bad encoding, bytes that are not UTF-8.
        const v = between(r, 0, 3);
        if (v === 0)
          await send('POST', '/v1/ingest', o.tokens.collector, 'v=1&batchId=x', { 'content-type': 'application/x-www-form-urlencoded' });
        else if (v === 1)
          await send('POST', '/v1/ingest', o.tokens.collector, Buffer.from('not gzip at all'), { ...json, 'content-encoding': 'gzip' });
        else if (v === 2) await send('POST', '/v1/ingest', o.tokens.collector, Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), json);
        else
          await send('POST', '/v1/ingest', o.tokens.collector, Buffer.from(JSON.stringify(mistypedEnvelope(r, o.site))), {
            ...json,
            'content-encoding': pick(r, ['br', 'deflate', 'x-unknown']),
          });
        break;
      }
      case 8: {
        // Bodies over the limit: plain, and a gzip bomb that is small on the wire.
        if (r() < 0.5)
          await send('POST', '/v1/ingest', o.tokens.collector, Buffer.alloc(o.bodyLimitBytes + between(r, 1, 65536), 0x20), json);
        else
          await send('POST', '/v1/ingest', o.tokens.collector, gzipSync(Buffer.alloc(o.bodyLimitBytes * 4, 0x20)), {
            ...json,
            'content-encoding': 'gzip',
          });
        break;
      }
      default:
        // Tokens that are no tokens.
        await send('GET', '/v1/twins', pick(r, ['', 'x', o.tokens.viewer.slice(0, -1), `${o.tokens.viewer}x`, "' OR '1'='1"]));
    }
  }
  return f;
}
