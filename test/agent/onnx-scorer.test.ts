/** The agent's Scorer on the committed model: in-place annotation, isolation, robustness, swap. */
import t from 'tap';
import { OnnxScorer } from '../../agent/scoring/onnx-scorer.js';
import { LEARNING_SCORE } from '../../agent/scoring/likelihood.js';
import { modelPath, pickModel, readManifest } from '../../common/models/manifest.js';
import type { SourceReading } from '../../agent/types.js';
import { createRegistry } from '../../common/metrics.js';
import { fromRoot } from '../../models/eval/repo.js';
import { rng } from '../../models/train/synth.js';

const manifestFile = fromRoot('models/manifest.json');
const entry = pickModel(readManifest(manifestFile), '');
const T0 = Date.UTC(2024, 0, 1);

/** A 5-minute stream: a daily wave with seeded noise, `n` readings. */
function wave(metric: string, n: number, seed = 1, from = 0): SourceReading[] {
  const r = rng(seed);
  const out: SourceReading[] = [];
  for (let i = from; i < from + n; i++) {
    const noise = (r() + r() + r() - 1.5) * 2;
    out.push({ ts: T0 + i * 300_000, metric, value: 50 + 20 * Math.sin((2 * Math.PI * i) / 288) + noise, unit: 'C' });
  }
  return out;
}

async function scoreAll(scorer: OnnxScorer, readings: SourceReading[], batch: (i: number) => number): Promise<void> {
  for (let at = 0, k = 0; at < readings.length; k++) {
    const n = batch(k);
    await scorer.score(readings.slice(at, at + n));
    at += n;
  }
}

t.test('every reading gets a score in [0, 1] and the model version, in place', async (t) => {
  const scorer = await OnnxScorer.fromConfig({ manifestFile });
  t.teardown(() => scorer.close());
  t.equal(scorer.modelVersion, entry.version);
  t.equal(scorer.alertThreshold, entry.thresholds.alert, 'the shipped threshold by default');
  const readings = wave('temp', 3000);
  await scoreAll(scorer, readings, () => 500);
  for (const r of readings) {
    if (!(typeof r.score === 'number' && r.score >= 0 && r.score <= 1)) t.fail(`bad score ${r.score}`);
    if (r.model !== entry.version) t.fail('model not set');
  }
  t.equal(readings[0]!.score, LEARNING_SCORE, 'the first reading has no past: learning score');
  t.ok(
    readings.slice(0, 300).every((r) => r.score === LEARNING_SCORE && !r.alert),
    'no alert while learning',
  );
  const late = readings.slice(1000);
  const alerts = late.filter((r) => r.alert).length;
  t.ok(alerts / late.length < 0.005, `ordinary readings rarely alert (${alerts} of ${late.length})`);
});

t.test('a spike and a stuck sensor are alerts; alert is set exactly above the threshold', async (t) => {
  const scorer = await OnnxScorer.fromConfig({ manifestFile });
  t.teardown(() => scorer.close());
  const readings = wave('temp', 3000);
  await scoreAll(scorer, readings, () => 1000);
  const spike = wave('temp', 1, 9, 3000)[0]!;
  spike.value += 200;
  await scorer.score([spike]);
  t.ok(spike.alert, `spike score ${spike.score}`);
  t.equal(spike.score, 1, 'far outside the range ever seen');
  // Then the sensor sticks at its last normal value for a day, where the wave should move.
  const stuck = wave('temp', 288, 10, 3001).map((r) => ({ ...r, value: 50 }));
  await scorer.score(stuck);
  t.ok(
    stuck.some((r) => r.alert),
    `stuck sensor noticed (max score ${Math.max(...stuck.map((r) => r.score!))})`,
  );
  for (const r of [...readings, spike, ...stuck])
    if (r.score! >= scorer.alertThreshold !== (r.alert === true)) t.fail('alert must mean score >= threshold');
});

t.test('streams are independent and batching does not change a score', async (t) => {
  const a = wave('a', 1500, 1);
  const b = wave('b', 1500, 2).map((r) => ({ ...r, value: r.value * 1000 }));
  const alone = await OnnxScorer.fromConfig({ manifestFile });
  t.teardown(() => alone.close());
  const a1 = a.map((r) => ({ ...r }));
  const b1 = b.map((r) => ({ ...r }));
  await alone.score(a1);
  await alone.score(b1);
  // Interleaved a/b in uneven batches, through a second scorer.
  const mixed = await OnnxScorer.fromConfig({ manifestFile });
  t.teardown(() => mixed.close());
  const inter: SourceReading[] = [];
  a.forEach((r, i) => inter.push({ ...r }, { ...b[i]! }));
  const sizes = rng(3);
  await scoreAll(mixed, inter, () => 1 + Math.floor(sizes() * 300));
  let worst = 0;
  inter.forEach((r, i) => {
    const ref = i % 2 === 0 ? a1[i / 2]! : b1[(i - 1) / 2]!;
    worst = Math.max(worst, Math.abs(r.score! - ref.score!));
  });
  t.ok(worst < 1e-4, `largest difference ${worst}`);
});

t.test('rows per inference call (maxBatchRows) do not change a single bit of a score', async (t) => {
  // Three streams, one of them still learning in the first batch, in agent-sized batches.
  const base = [...wave('a', 2500, 4), ...wave('b', 2500, 5), ...wave('c', 400, 6)].sort((x, y) => x.ts - y.ts);
  const scores: number[][] = [];
  for (const maxBatchRows of [16_384, 1024, 7]) {
    const scorer = await OnnxScorer.fromConfig({ manifestFile, maxBatchRows });
    t.teardown(() => scorer.close());
    const readings = base.map((r) => ({ ...r }));
    await scoreAll(scorer, readings, () => 5000);
    t.ok(
      readings.every((r) => r.score !== undefined),
      `maxBatchRows ${maxBatchRows}: every reading scored`,
    );
    scores.push(readings.map((r) => r.score!));
  }
  t.same(scores[1], scores[0], '1024 rows per call: the same scores as 16384');
  t.same(scores[2], scores[0], '7 rows per call: the same scores as 16384');
});

t.test('bad readings stay unscored and do not disturb the stream', async (t) => {
  const clean = wave('m', 800);
  const ref = await OnnxScorer.fromConfig({ manifestFile });
  t.teardown(() => ref.close());
  const cleanCopy = clean.map((r) => ({ ...r }));
  await ref.score(cleanCopy);

  const scorer = await OnnxScorer.fromConfig({ manifestFile });
  t.teardown(() => scorer.close());
  const bad = [
    { ts: T0, metric: 'm', value: Number.NaN, unit: '' },
    { ts: T0, metric: 'm', value: Number.POSITIVE_INFINITY, unit: '' },
    { ts: Number.NaN, metric: 'm', value: 1, unit: '' },
    { ts: T0, metric: undefined as unknown as string, value: 1, unit: '' },
    null as unknown as SourceReading,
  ];
  const mixed = [...clean.slice(0, 400).map((r) => ({ ...r })), ...bad, ...clean.slice(400).map((r) => ({ ...r }))];
  await t.resolves(scorer.score(mixed));
  for (const r of bad.slice(0, 4)) t.equal(r.score, undefined, 'left unscored');
  const good = mixed.filter((r) => r && Number.isFinite(r.value) && Number.isFinite(r.ts) && typeof r.metric === 'string');
  t.same(
    good.map((r) => r.score),
    cleanCopy.map((r) => r.score),
    'same scores as without the bad readings',
  );
});

t.test('streams beyond maxStreams stay unscored; metrics count what happened', async (t) => {
  const registry = createRegistry('test');
  const scorer = await OnnxScorer.fromConfig({ manifestFile, maxStreams: 2 }, { registry });
  t.teardown(() => scorer.close());
  const readings = [...wave('x', 5), ...wave('y', 5), ...wave('z', 5)];
  await scorer.score(readings);
  t.ok(readings.slice(0, 10).every((r) => r.score !== undefined));
  t.ok(
    readings.slice(10).every((r) => r.score === undefined),
    'the third metric is not scored',
  );
  const metric = await registry.getSingleMetricAsString('edgetwin_scoring_readings_total');
  t.match(metric, /result="scored"[^\n]* 10/);
  t.match(metric, /result="unscored"[^\n]* 5/);
});

t.test('a new model loads beside the old one and swaps between batches', async (t) => {
  const scorer = await OnnxScorer.load(entry, modelPath(manifestFile, entry), {});
  const v2 = { ...entry, version: `${entry.version}-candidate` };
  const next = await scorer.prepare(v2, modelPath(manifestFile, entry));
  t.equal(scorer.modelVersion, entry.version, 'preparing changes nothing');
  // Queued in this order without waiting: the swap lands between the two batches.
  const first = wave('s', 600);
  const second = wave('s', 600, 1, 600);
  const p1 = scorer.score(first);
  const swapped = scorer.swap(next);
  const p2 = scorer.score(second);
  const [, prev] = await Promise.all([p1, swapped, p2]);
  t.ok(
    first.every((r) => r.model === entry.version),
    'the batch before the swap: old model',
  );
  t.ok(
    second.every((r) => r.model === v2.version),
    'the batch after: new model, none dropped',
  );
  t.equal(scorer.modelVersion, v2.version);
  t.equal(prev.version, entry.version, 'the previous model is handed back for rollback');
  // Roll back, then release the candidate.
  const candidate = await scorer.swap(prev);
  t.equal(scorer.modelVersion, entry.version);
  await candidate.close();
  const after = wave('s', 10, 1, 1200);
  await scorer.score(after);
  t.ok(after.every((r) => r.model === entry.version));

  const tampered = { ...entry, sha256: '0'.repeat(64) };
  await t.rejects(scorer.prepare(tampered, modelPath(manifestFile, entry)), { code: 'EDGETWIN_ERR_MODEL' });
  t.equal(scorer.modelVersion, entry.version, 'a model that fails to load changes nothing');
  await scorer.close();
});
