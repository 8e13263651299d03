/**
 * Asset steps (agent/assets/) and the drift recorder (agent/drift/), without a model: when a step
 * is complete (by timestamp, by interval), forward-filling, late and incomplete steps, discovery by
 * metric name and its limit; drift histograms sent once per interval, by an injected clock, with
 * the bins of the model that reported them.
 */
import t from 'tap';
import { AssetSteps, type AssetState, type SkipReason } from '../../agent/assets/asset-steps.js';
import { assetsDefaults, type AssetsConfig } from '../../agent/assets/config.js';
import { driftDefaults } from '../../agent/drift/config.js';
import { DriftRecorder } from '../../agent/drift/drift-recorder.js';
import { ANOMALY_DRIFT_BINS, failureDriftBins } from '../../common/drift/specs.js';
import { Histogram } from '../../common/drift/histogram.js';
import { readingProblem } from '../../common/wire/record.js';
import { createRegistry } from '../../common/metrics.js';

function collect(cfg: Partial<AssetsConfig>, features: string[]) {
  const steps = new AssetSteps({ ...assetsDefaults, ...cfg }, features);
  const done: { asset: string; ts: number; values: number[] }[] = [];
  const skipped: SkipReason[] = [];
  const add = (metric: string, ts: number, value: number): void =>
    steps.add(
      metric,
      ts,
      value,
      (s: AssetState, at: number) => done.push({ asset: s.id, ts: at, values: [...s.values] }),
      (r) => skipped.push(r),
    );
  return { steps, done, skipped, add };
}

t.test('by timestamp: a step completes when every feature has its value for that time', async (t) => {
  const { done, skipped, add } = collect({ list: [{ id: 'e1', metrics: { b: 'other.b' } }] }, ['a', 'b']);
  add('e1.a', 1000, 1);
  t.same(done, [], 'one feature of two: not yet');
  add('other.b', 1000, 2);
  t.same(done, [{ asset: 'e1', ts: 1000, values: [1, 2] }], 'both: complete at once, metrics mapped per feature');
  add('e1.b', 2000, 5);
  t.same(done.length, 1, 'e1.b is not a metric of this asset (b reads other.b)');
  add('other.b', 2000, 3);
  add('e1.a', 3000, 4);
  t.same(
    done[1],
    { asset: 'e1', ts: 2000, values: [1, 3] },
    'a later time completes the open step; a missing feature keeps its last value',
  );
  add('e1.a', 2500, 9);
  t.same(skipped, ['late'], 'a reading older than the open step is late');
  add('unrelated', 5000, 1);
  t.equal(done.length, 2, 'other metrics are ignored');
});

t.test('a step in which some feature never had a value is incomplete and skipped', async (t) => {
  const { done, skipped, add } = collect({ list: [{ id: 'e1' }] }, ['a', 'b']);
  add('e1.a', 1000, 1);
  add('e1.a', 2000, 1);
  t.same(skipped, ['incomplete']);
  add('e1.b', 2000, 7);
  t.same(done, [{ asset: 'e1', ts: 2000, values: [1, 7] }]);
});

t.test('by interval: the mean per feature over the bucket, complete when a later bucket begins', async (t) => {
  const { done, add } = collect({ list: [{ id: 'p', step: { by: 'interval', ms: 60_000 } }] }, ['x', 'y']);
  add('p.x', 0, 1);
  add('p.x', 30_000, 3);
  add('p.y', 59_999, 10);
  t.same(done, [], 'every feature present, but the bucket is still open');
  add('p.x', 60_000, 100);
  t.same(done, [{ asset: 'p', ts: 60_000, values: [2, 10] }], 'means of the bucket, stamped with its end');
});

t.test('discovery by metric name, and the asset limit', async (t) => {
  const { done, skipped, add, steps } = collect({ discover: { pattern: '^(engine-[0-9]+)\\.(.+)$' }, maxAssets: 2 }, ['s2']);
  add('engine-1.s2', 1, 1);
  add('engine-2.s2', 1, 2);
  add('engine-3.s2', 1, 3);
  add('engine-1.s99', 2, 3);
  t.same(
    done.map((d) => d.asset),
    ['engine-1', 'engine-2'],
  );
  t.same(skipped, ['over_limit'], 'a third asset is over maxAssets: counted, not tracked');
  t.equal(steps.size, 2);
});

t.test('drift: one histogram per (model, stream, quantity), sent when the interval has ended', async (t) => {
  let now = 3_600_000 * 10 + 5;
  const registry = createRegistry('test');
  const rec = new DriftRecorder({ ...driftDefaults, intervalMs: 3_600_000, maxHistograms: 3 }, { now: () => now, registry });
  rec.define('rul-1', failureDriftBins(125));
  for (let i = 0; i < 100; i++) rec.observe('fc-1', 'temp', 'output', i / 100);
  rec.observe('fc-1', 'temp', 'input', 0.5);
  rec.observe('rul-1', 's2', 'input', 0.25);
  rec.observe('rul-1', 's3', 'input', 0.25);
  rec.observe('fc-1', 'temp', 'error', NaN);
  t.same(rec.collect(), [], 'nothing before the interval ends');
  now = 3_600_000 * 11;
  const out = rec.collect();
  t.equal(out.length, 3, 'three histograms (the fourth was over maxHistograms; NaN is not counted)');
  for (const r of out) t.equal(readingProblem({ ...r, seq: 1 }), undefined, 'each is a valid wire reading');
  const temp = out.find((r) => r.metric === 'temp' && r.drift?.quantity === 'output')!;
  t.match(temp, { ts: 3_600_000 * 11, value: 100, unit: '1', model: 'fc-1', kind: 'drift' });
  t.equal(temp.drift!.from, 3_600_000 * 10, 'the interval is aligned to multiples of intervalMs');
  t.same(
    Histogram.unpack(temp.drift!).counts,
    Histogram.of(
      ANOMALY_DRIFT_BINS.output,
      Array.from({ length: 100 }, (_, i) => i / 100),
    ).counts,
  );
  const s2 = out.find((r) => r.metric === 's2')!;
  t.match(s2.drift, { lo: -4, hi: 4, bins: 64 }, "a defined model's bins");
  t.same(rec.collect(), [], 'a fresh interval');
  t.match(await registry.metrics(), /edgetwin_drift_values_uncounted_total\{reason="max_histograms"[^}]*\} 1/);
});
