/**
 * HTTP fuzzing against a real cloud process (seeded; `EDGETWIN_FUZZ_FACTOR=10` or `npm run fuzz`
 * for the long run): malformed and mistyped JSON, huge and gzip-bomb bodies, wrong content types,
 * path and query injection (`../`, `%00`, SQL and DuckDB table functions) on every route, while a
 * good collector ingests throughout. No 5xx, every error a known code, nothing leaked, nothing lost.
 */
import t from 'tap';
import { fuzzFactor as factor, runFuzzSuite } from './helpers/fuzz.js';

/**
 * Findings of this suite that belong to the cloud (issue 5), reported to the lead: 500s from
 * `GET /v1/twins?cursor=Infinity` ("datatype mismatch"), from telemetry `to=` beyond the Date
 * range ("Invalid time value") and `limit=Infinity` ("LIMIT Infinity" in the SQL); fastify's own
 * 400/414 bodies (FST_ERR_BAD_URL, FST_ERR_MAX_PARAM_LENGTH) without an EDGETWIN_ERR_* code.
 * Fixed (cloud/server.ts: frameworkErrors and a finite-number guard; params.ts: date range); kept as a regression check.
 */
const KNOWN = [/^500 (datatype mismatch|Invalid time value|Binder Error: Referenced column "Infinity")/, /^no code FST_ERR_/];

t.test('the cloud answers hostile HTTP with stable errors, leaks nothing, loses nothing', { timeout: 170_000 * factor }, async (t) => {
  const f = runFuzzSuite('http', 4321);
  const byKind = f['http_violations_by_kind'] as Record<string, number>;
  const known = Object.entries(byKind).filter(([k]) => KNOWN.some((re) => re.test(k)));
  const other = Object.entries(byKind).filter(([k]) => !KNOWN.some((re) => re.test(k)));
  t.ok(f['http_requests'] as number >= 550 * factor, `${f['http_requests']} requests`);
  t.ok(f['http_errors'] as number > 0.5 * (f['http_requests'] as number), 'most were refused');
  t.same(other, [], `no 5xx, no unknown error code, no leaked file or other device's data (samples: ${JSON.stringify(f['http_violation_samples'])})`);
  t.same(known, [], 'earlier findings stay fixed (non-finite numbers, dates out of range, FST_* codes)');
  const knownCount = known.reduce((s, [, n]) => s + n, 0);
  t.ok(
    Number(f['http_errors_counted']) >= Number(f['http_errors']) - knownCount,
    `errors counted in edgetwin_cloud_http_errors_total (${f['http_errors_counted']} counted, ${f['http_errors']} seen, ${knownCount} known findings; by status ${JSON.stringify(f['http_by_status'])})`,
  );
  t.same(f.unknown_codes, [], 'every counted error code is a known one');
  t.equal(f.crashes, 0, 'the cloud never exited');
  t.ok(f.fresh_client_ok, 'a good reader is served afterwards');
  t.ok(f.good_acked > 100, `the good collector kept ingesting (${f.good_acked} readings acknowledged)`);
  t.equal(f.good_lost, 0, 'every acknowledged good reading is stored');
});
