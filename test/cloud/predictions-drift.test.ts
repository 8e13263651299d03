/**
 * Predictions and drift in the cloud's store, on SQLite and a real PostgreSQL (one contract): each
 * prediction and histogram stored once by identity; the twin's newest prediction per asset never
 * replaced by a late one; history paged; drift merged per cohort exactly (D of the stored rows
 * equals D of the pooled values), judged against the manifest's reference or the cohort's own
 * frozen baseline, with an injected clock; the `rul_low` and `model_drift` signals.
 */
import t from 'tap';
import { DriftService } from '../../cloud/drift/drift-service.js';
import { DriftStore } from '../../cloud/drift/drift-store.js';
import { cloudDriftConfigSchema, type CloudDriftConfig } from '../../cloud/drift/config.js';
import { DerivedReadings } from '../../cloud/ingest/derived-readings.js';
import { PredictionStore } from '../../cloud/predictions/prediction-store.js';
import { ChangeFeed } from '../../cloud/store/change-feed.js';
import type { Store } from '../../cloud/store/store.js';
import { configDefaults } from '../../common/config.js';
import { compareHistograms } from '../../common/drift/compare.js';
import { Histogram, type HistogramSpec } from '../../common/drift/histogram.js';
import type { Reading } from '../../common/wire/record.js';
import { driftReading as drift, gauss, rulPrediction } from '../helpers/readings.js';
import { eachStore } from '../helpers/stores.js';

const DAY = 86_400_000;
const SPEC: HistogramSpec = { lo: -4, hi: 4, bins: 64 };

async function ingest(store: Store, site: string, device: string, epoch: number, readings: Reading[], now: number): Promise<void> {
  const d = new DerivedReadings({ predictions: new PredictionStore(store), drift: new DriftStore(store) });
  for (const r of readings) d.take(site, device, epoch, r);
  await store.tx((tx) => d.persist(tx, now));
}

eachStore(t, 'predictions: the cached newest follow a write here at once and one elsewhere through the change feed', async (t, f) => {
  const store = await f.open();
  const feed = new ChangeFeed(store, { pollMs: 60_000 });
  await feed.start();
  t.teardown(() => feed.stop());
  const writer = new PredictionStore(store);
  // Another replica: only the change feed tells it that the device changed.
  const replica = new PredictionStore(store);
  replica.watch(feed);
  const t0 = Date.parse('2026-12-01T00:00:00Z');
  const rul = async (p: PredictionStore): Promise<number | undefined> =>
    (await p.latestMany(['dev-1'])).get('dev-1')?.['engine-1']?.rulCycles;
  t.equal(await rul(writer), undefined, 'none yet (and cached as none)');
  t.equal(await rul(replica), undefined);
  for (const [seq, value] of [
    [1, 120],
    [2, 118],
  ] as const) {
    const d = new DerivedReadings({ predictions: writer, drift: new DriftStore(store) });
    d.take('plant-1', 'dev-1', 1, rulPrediction(seq, t0 + seq * 60_000, 'engine-1', value));
    await store.tx((tx) => d.persist(tx, t0));
    t.equal(await rul(writer), value, 'the writing replica reads its commit at once');
    await feed.wake();
    t.equal(await rul(replica), value, 'the other replica once the change arrives');
  }
});

function driftReading(seq: number, from: number, to: number, stream: string, values: number[], model = 'fc-9'): Reading {
  return drift(seq, from, to, stream, Histogram.of(SPEC, values), model);
}

eachStore(t, 'predictions: stored once, newest per asset, history paged, rul_low', async (t, f) => {
  const store = await f.open();
  const p = new PredictionStore(store);
  const t0 = Date.parse('2026-12-01T00:00:00Z');
  await ingest(
    store,
    'plant-1',
    'dev-1',
    1,
    [rulPrediction(1, t0, 'engine-1', 120), rulPrediction(2, t0 + 60_000, 'engine-1', 118.5), rulPrediction(3, t0, 'engine-2', 40)],
    t0,
  );
  // The same batch again (a retried POST) and a late backlog reading older than the newest.
  await ingest(store, 'plant-1', 'dev-1', 1, [rulPrediction(1, t0, 'engine-1', 120), rulPrediction(2, t0 + 60_000, 'engine-1', 118.5)], t0);
  await ingest(store, 'plant-1', 'dev-1', 0, [rulPrediction(9, t0 + 30_000, 'engine-1', 5, true)], t0);
  const latest = await p.latest('dev-1');
  t.match(latest['engine-1'], {
    rulCycles: 118.5,
    unit: 'cycle',
    model: 'rul-1.2.0',
    alert: false,
    at: new Date(t0 + 60_000).toISOString(),
  });
  t.equal(latest['engine-2']!.rulCycles, 40);
  const page1 = await p.history('dev-1', { asset: 'engine-1', limit: 2 });
  t.same(
    page1.items.map((i) => i.rulCycles),
    [120, 5],
    'oldest first, the retried batch stored once, the late one in its place',
  );
  const page2 = await p.history('dev-1', { asset: 'engine-1', limit: 2, after: page1.next! });
  t.same(
    page2.items.map((i) => i.rulCycles),
    [118.5],
  );
  t.equal(page2.next, null);
  t.same(await p.lowRul(), [], 'the newest predictions are above their thresholds');
  await ingest(store, 'plant-1', 'dev-1', 1, [rulPrediction(4, t0 + 120_000, 'engine-2', 12, true)], t0);
  t.match(await p.lowRul(), [{ key: 'dev-1/engine-2', site: 'plant-1', device: 'dev-1', value: 12, labels: { asset: 'engine-2' } }]);
  t.match(
    await store.all('SELECT type, device FROM changes WHERE type = ? ORDER BY id', ['prediction']),
    [{ type: 'prediction' }, { type: 'prediction' }, { type: 'prediction' }],
    'one change-feed event per asset whose newest prediction changed',
  );
});

eachStore(t, 'drift: exact merge per cohort, baseline frozen, a shifted cohort drifts, signal', async (t, f) => {
  const store = await f.open();
  const drift = new DriftStore(store);
  let now = Date.parse('2026-12-01T00:00:00Z');
  const cfg: CloudDriftConfig = { ...configDefaults(cloudDriftConfigSchema), windowMs: DAY, baselineMs: 2 * DAY };
  let poked = 0;
  const svc = new DriftService(store, drift, cfg, { now: () => now, onDrift: () => poked++ });
  const g = gauss(16);
  const pooled: number[] = [];
  let seq = 0;
  // Two sites, three devices each, one histogram per device per hour for 4 days; site b shifts by 0.3 σ on day 3.
  const start = now;
  for (let h = 0; h < 96; h++) {
    const from = start + h * 3_600_000;
    const to = from + 3_600_000;
    for (const site of ['a', 'b'])
      for (let d = 0; d < 3; d++) {
        const shift = site === 'b' && h >= 72 ? 0.3 : 0;
        const values = Array.from({ length: 150 }, () => g() + shift);
        if (site === 'a' && h >= 72) pooled.push(...values);
        await ingest(store, site, `${site}-${d}`, 1, [driftReading(++seq, from, to, 'temp', values)], to);
      }
  }
  now = start + 4 * DAY + 1;
  const evals = await svc.evaluateAll();
  const aDay3 = evals.find((e) => e.cohort === 'site:a' && e.windowStart === start + 3 * DAY)!;
  const bDay3 = evals.find((e) => e.cohort === 'site:b' && e.windowStart === start + 3 * DAY)!;
  t.notOk(aDay3.drift, `site a unchanged: D ${aDay3.ks?.toFixed(4)}`);
  t.ok(bDay3.drift, `site b shifted 0.3 σ: D ${bDay3.ks?.toFixed(4)} p ${bDay3.p}`);
  t.equal(poked, 1, 'the alert engine is poked when something drifts');

  // The stored rows merge to exactly the pooled values' histogram: same D against the frozen baseline.
  const refs = await drift.references('fc-9', 'site:a');
  t.equal(refs.length, 1, 'baseline frozen after baselineMs');
  const ref = Histogram.unpack(refs[0]!.hist);
  t.equal(aDay3.ks, compareHistograms(Histogram.of(SPEC, pooled), ref).ks, 'merged cohort D equals D over the pooled raw data');
  t.equal(aDay3.n, pooled.length);

  // Re-delivered histograms change nothing (identity), and the figures are stable.
  await ingest(store, 'a', 'a-0', 1, [driftReading(1, start, start + 3_600_000, 'temp', [100, 100, 100])], now);
  const again = await svc.evaluateModel('fc-9');
  t.equal(again.find((e) => e.cohort === 'site:a' && e.windowStart === start + 3 * DAY)!.ks, aDay3.ks);

  const signal = await svc.signal();
  t.match(signal, [{ key: 'fc-9/site:b/temp/input', site: 'b', labels: { runbook: 'docs/runbooks/model-drift.md' } }]);
  const report = await svc.report('fc-9', { from: start, to: now + DAY });
  t.match(report, { thresholds: { ks: 0.05, p: 0.01 }, runbook: 'docs/runbooks/model-drift.md' });
  t.equal((report['cohorts'] as unknown[]).length, 2);
});

eachStore(t, "drift: the manifest's reference is used from the first window", async (t, f) => {
  const store = await f.open();
  const drift = new DriftStore(store);
  const now = Date.parse('2026-12-01T12:00:00Z');
  const g = gauss(17);
  const reference = Histogram.of(SPEC, Array.from({ length: 20_000 }, g));
  const entry = {
    kind: 'failure',
    name: 'rul',
    version: 'rul-9',
    drift: { reference: { source: 'validation', streams: { s2: { input: reference.pack() } } } },
  };
  await store.run(
    "INSERT INTO models (name, version, sha256, bytes, entry, signature, uploaded_at, uploaded_by, kind) VALUES ('rul', 'rul-9', 'x', 1, ?, NULL, 0, 't', 'failure')",
    [JSON.stringify(entry)],
  );
  await ingest(
    store,
    'a',
    'dev',
    1,
    [
      driftReading(
        1,
        now - 3_600_000,
        now - 1000,
        's2',
        Array.from({ length: 10_000 }, () => g() + 0.15),
        'rul-9',
      ),
    ],
    now,
  );
  const svc = new DriftService(store, drift, { ...configDefaults(cloudDriftConfigSchema), windowMs: DAY }, { now: () => now });
  const [e] = await svc.evaluateModel('rul-9');
  t.ok(e!.drift, `a 0.15 σ shift against the shipped reference drifts at once (D ${e!.ks?.toFixed(4)})`);
  t.equal(e!.referenceN, 20_000);
});
