/**
 * HTTP fuzzing against a real cloud process (seeded; `EDGETWIN_FUZZ_FACTOR=10` or `npm run fuzz`
 * for the long run): malformed and mistyped JSON, huge and gzip-bomb bodies, wrong content types,
 * path and query injection (`../`, `%00`, SQL and DuckDB table functions) on every route, while a
 * good collector ingests throughout. No 5xx, every error a known code, nothing leaked, nothing lost.
 */
import t from 'tap';
import { fuzzFactor as factor, runFuzzSuite } from '../helpers/fuzz.js';

t.test('the cloud answers hostile HTTP with stable errors, leaks nothing, loses nothing', { timeout: 170_000 * factor }, async (t) => {
  const f = runFuzzSuite('http', 4321);
  t.ok((f['http_requests'] as number) >= 550 * factor, `${f['http_requests']} requests`);
  t.ok((f['http_errors'] as number) > 0.5 * (f['http_requests'] as number), 'most were refused');
  // Reliability.md findings 2 and 3 (non-finite numbers, dates out of range, fastify's own errors) fixed: a regression check now.
  t.same(
    f['http_violations_by_kind'],
    {},
    `no 5xx, no error without an EDGETWIN_ERR_* code, no leaked file or other device's data (samples: ${JSON.stringify(f['http_violation_samples'])})`,
  );
  t.ok(
    (f['http_errors_counted'] as number) >= (f['http_errors'] as number),
    `every error counted in edgetwin_cloud_http_errors_total (${f['http_errors_counted']} counted, ${f['http_errors']} seen; by status ${JSON.stringify(f['http_by_status'])})`,
  );
  t.same(f.unknown_codes, [], 'every counted error code is a known one');
  t.equal(f.crashes, 0, 'the cloud never exited');
  t.ok(f.fresh_client_ok, 'a good reader is served afterwards');
  t.ok(f.good_acked > 100, `the good collector kept ingesting (${f.good_acked} readings acknowledged)`);
  t.equal(f.good_lost, 0, 'every acknowledged good reading is stored');
});
