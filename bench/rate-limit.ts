/**
 * What the API rate limits cost (cloud/api/rate-limit.ts):
 *   npm run bench:ratelimit [-- --rounds 3 --duration-s 3 --connections 16 --json]
 *
 * 1. The bucket itself: ns per `take()` with one key, and with 10,000 keys in rotation (a fleet of
 *    principals or sites), median of `--rounds`.
 * 2. Over HTTP: the real fastify hook order (authenticate → role → limiter) on a small JSON route,
 *    with the limiter off and on (a limit high enough that nothing is refused, so every request
 *    pays the full check), rounds alternating off/on; autocannon on loopback. Median requests/s and
 *    p99 latency side by side, and the ratio. The route is trivial on purpose: the limiter's share
 *    is largest there; a real twin read costs more, so its relative cost is smaller.
 * 3. Fairness: site A floods at 10× its ingest rate while site B sends within its own; counts of
 *    accepted and refused (429) per site over a simulated minute (injected clock).
 */
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import Fastify from 'fastify';
import { ApiRateLimiter, rateLimitDefaults } from '../cloud/api/rate-limit.js';
import { isEdgetwinError } from '../common/errors.js';
import { createRegistry } from '../common/metrics.js';
import { TokenBuckets } from '../common/token-bucket.js';
import { freePort } from './support.js';

interface AutocannonResult {
  requests: { average: number };
  latency: { p99: number };
  non2xx: number;
}
type Autocannon = (opts: Record<string, unknown>) => Promise<AutocannonResult>;
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    'duration-s': { type: 'string', default: '3' },
    connections: { type: 'string', default: '16' },
    json: { type: 'boolean', default: false },
  },
});
const rounds = Number(values.rounds);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const say = (s: string): void => {
  if (!values.json) process.stdout.write(`${s}\n`);
};

function bucketNs(keys: number): number {
  const b = new TokenBuckets(1e9, 1e9);
  const names = Array.from({ length: keys }, (_, i) => `principal-${i}`);
  const n = 2_000_000;
  for (let i = 0; i < 100_000; i++) b.take(names[i % keys]!);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) b.take(names[i % keys]!);
  return Number(process.hrtime.bigint() - t0) / n;
}

async function httpRound(limited: boolean): Promise<{ rps: number; p99Ms: number }> {
  const registry = createRegistry('bench');
  const limits = new ApiRateLimiter({ ...rateLimitDefaults, perPrincipal: { ratePerS: limited ? 1e9 : 0, burst: 1_000_000 } }, registry);
  const principal = { id: 't_bench', name: 'bench', role: 'viewer' as const, site: null };
  const app = Fastify({ logger: false });
  app.addHook('onRequest', (req, _reply, done) => {
    // Stands in for authentication (a cached token lookup) so that only the limiter differs.
    if (req.headers.authorization !== 'Bearer bench') return done(new Error('unauthorized'));
    try {
      limits.principal(principal, req.ip);
      done();
    } catch (err) {
      done(err as Error);
    }
  });
  app.get('/v1/twins/:id', async (req) => ({ deviceId: (req.params as { id: string }).id, reported: { temperature: 21.5 }, version: 3 }));
  const port = await freePort();
  await app.listen({ host: '127.0.0.1', port });
  try {
    const r = await autocannon({
      url: `http://127.0.0.1:${port}/v1/twins/dev-1`,
      connections: Number(values.connections),
      duration: Number(values['duration-s']),
      headers: { authorization: 'Bearer bench' },
    });
    if (r.non2xx > 0) throw new Error(`${r.non2xx} non-2xx answers: the limit refused requests`);
    return { rps: r.requests.average, p99Ms: r.latency.p99 };
  } finally {
    await app.close();
  }
}

function fairness(): { siteA: { accepted: number; refused: number }; siteB: { accepted: number; refused: number } } {
  let now = 0;
  const limits = new ApiRateLimiter(
    { ...rateLimitDefaults, ingestPerSite: { readingsPerS: 10_000, burstReadings: 20_000 } },
    createRegistry('bench'),
    () => now,
  );
  const out = { siteA: { accepted: 0, refused: 0 }, siteB: { accepted: 0, refused: 0 } };
  // One simulated minute in 10 ms steps: A posts 1,000 readings every 10 ms (100k/s), B 100 (10k/s).
  for (let step = 0; step < 6000; step++, now += 10) {
    for (const [site, readings] of [
      ['siteA', 1000],
      ['siteB', 100],
    ] as const) {
      try {
        limits.ingest(site, readings);
        out[site].accepted += readings;
      } catch (err) {
        if (!isEdgetwinError(err)) throw err;
        out[site].refused += readings;
      }
    }
  }
  return out;
}

async function main(): Promise<void> {
  const one: number[] = [];
  const many: number[] = [];
  for (let i = 0; i < rounds; i++) {
    one.push(bucketNs(1));
    many.push(bucketNs(10_000));
  }
  say(`token bucket take(): ${median(one).toFixed(1)} ns (1 key), ${median(many).toFixed(1)} ns (10,000 keys) — median of ${rounds}`);
  const off: { rps: number; p99Ms: number }[] = [];
  const on: { rps: number; p99Ms: number }[] = [];
  for (let i = 0; i < rounds; i++) {
    off.push(await httpRound(false));
    on.push(await httpRound(true));
    say(
      `round ${i + 1}: off ${Math.round(off[i]!.rps)} req/s p99 ${off[i]!.p99Ms} ms | on ${Math.round(on[i]!.rps)} req/s p99 ${on[i]!.p99Ms} ms`,
    );
  }
  const offRps = median(off.map((r) => r.rps));
  const onRps = median(on.map((r) => r.rps));
  const f = fairness();
  const figures = {
    bucket_take_ns_1_key: Number(median(one).toFixed(1)),
    bucket_take_ns_10k_keys: Number(median(many).toFixed(1)),
    http_rps_limiter_off: Math.round(offRps),
    http_rps_limiter_on: Math.round(onRps),
    http_rps_ratio_on_to_off: Number((onRps / offRps).toFixed(3)),
    http_p99_ms_limiter_off: median(off.map((r) => r.p99Ms)),
    http_p99_ms_limiter_on: median(on.map((r) => r.p99Ms)),
    fairness_site_b_accepted_ratio: Number((f.siteB.accepted / (f.siteB.accepted + f.siteB.refused)).toFixed(4)),
    fairness_site_a_accepted_readings_per_s: Math.round(f.siteA.accepted / 60),
  };
  say(
    `HTTP (median of ${rounds}): ${figures.http_rps_limiter_off} req/s without, ${figures.http_rps_limiter_on} with the limiter (ratio ${figures.http_rps_ratio_on_to_off})`,
  );
  say(
    `fairness: flooding site A held to ${figures.fairness_site_a_accepted_readings_per_s} readings/s; site B accepted ${figures.fairness_site_b_accepted_ratio * 100} %`,
  );
  if (values.json) process.stdout.write(`${JSON.stringify(figures)}\n`);
}

await main();
