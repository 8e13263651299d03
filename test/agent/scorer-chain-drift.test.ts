/**
 * Issue 16 in the agent, both committed models at once: the anomaly scorer reports each scored
 * reading's input, raw surprise (error) and score (output) to the drift recorder, which sends one
 * fixed-bin histogram per (model version, stream, quantity) once the interval has ended (the output
 * histogram is exactly the histogram of the scores); and the failure model runs beside anomaly
 * scoring in one batch (ScorerChain): every measurement scored, one prediction per completed asset
 * step, both models' histograms in the batch after the interval.
 */
import t from 'tap';
import { driftDefaults } from '../../agent/drift/config.js';
import { DriftRecorder } from '../../agent/drift/drift-recorder.js';
import { assetsDefaults } from '../../agent/assets/config.js';
import { failureDefaults } from '../../agent/failure/config.js';
import { FailurePredictor } from '../../agent/failure/failure-predictor.js';
import { ScorerChain } from '../../agent/scoring/chain.js';
import { OnnxScorer } from '../../agent/scoring/onnx-scorer.js';
import type { SourceReading } from '../../agent/types.js';
import { Histogram } from '../../common/drift/histogram.js';
import { ANOMALY_DRIFT_BINS } from '../../common/drift/specs.js';
import { pickModel, readManifest } from '../../common/models/manifest.js';
import { fromRoot } from '../../models/eval/repo.js';
import { failureModel, syntheticRows } from '../helpers/rul.js';

const manifestFile = fromRoot('models/manifest.json');
const T0 = Date.UTC(2024, 0, 1);
const HOUR = 3_600_000;

function wave(metric: string, n: number, offset: number): SourceReading[] {
  return Array.from({ length: n }, (_, i) => ({
    ts: T0 + i * 60_000,
    metric,
    value: offset + 10 * Math.sin((2 * Math.PI * i) / 120) + ((i * 7919) % 13) / 13,
    unit: 'C',
  }));
}

t.test('the anomaly scorer feeds input, error and output histograms per stream to the drift recorder', async (t) => {
  let now = 10 * HOUR + 1;
  const recorder = new DriftRecorder({ ...driftDefaults, intervalMs: HOUR }, { now: () => now });
  const entry = pickModel(readManifest(manifestFile), '');
  const scorer = await OnnxScorer.fromConfig({ manifestFile }, { observer: recorder });
  t.teardown(() => scorer.close());
  const a = wave('temp', 400, 50);
  const b = wave('pressure', 250, 3);
  await scorer.score([...a, ...b]);
  t.same(recorder.collect(), [], 'nothing before the interval ends');
  now = 11 * HOUR;
  const out = recorder.collect();
  const find = (stream: string, q: string) => out.find((r) => r.metric === stream && r.drift?.quantity === q);
  for (const [stream, readings] of [
    ['temp', a],
    ['pressure', b],
  ] as const) {
    // A stream's first reading has no past to forecast from: it is not a model input.
    const scored = readings.slice(1);
    for (const q of ['input', 'error', 'output'] as const) {
      const r = find(stream, q);
      t.match(r, { kind: 'drift', model: entry.version, value: scored.length }, `${stream} ${q}: one value per scored reading`);
      t.same(Histogram.unpack(r!.drift!).spec, ANOMALY_DRIFT_BINS[q], `${stream} ${q}: the anomaly bins`);
    }
    t.same(
      Array.from(Histogram.unpack(find(stream, 'output')!.drift!).counts),
      Array.from(
        Histogram.of(
          ANOMALY_DRIFT_BINS.output,
          scored.map((r) => r.score!),
        ).counts,
      ),
      `${stream}: the output histogram is the histogram of the scores`,
    );
  }
  t.equal(out.length, 6, 'two streams × three quantities');
});

t.test("the failure model beside anomaly scoring: scores, predictions and both models' histograms in one batch", async (t) => {
  let now = 20 * HOUR + 1;
  const recorder = new DriftRecorder({ ...driftDefaults, intervalMs: HOUR }, { now: () => now });
  const anomaly = await OnnxScorer.fromConfig({ manifestFile }, { observer: recorder });
  const { entry, path } = failureModel();
  const failure = await FailurePredictor.load(
    entry,
    path,
    failureDefaults,
    { ...assetsDefaults, list: [{ id: 'engine-1' }] },
    { drift: recorder },
  );
  const chain = new ScorerChain({ anomaly, failure, drift: recorder });
  t.teardown(() => chain.close());
  t.same(chain.versions(), { model: anomaly.modelVersion, failureModel: entry.version });
  const { features, center, scale } = entry.featureRecipe;
  const steps = 40;
  const batch: SourceReading[] = syntheticRows(100, steps, 2, center, scale).flatMap((row, i) =>
    features.map((f, k) => ({ ts: T0 + i * 60_000, metric: `engine-1.${f}`, value: row[k]!, unit: '1' })),
  );
  await chain.score(batch);
  const measurements = batch.filter((r) => r.kind === undefined);
  t.equal(measurements.length, steps * features.length);
  t.ok(
    measurements.every((r) => typeof r.score === 'number' && r.model === anomaly.modelVersion),
    'every measurement scored by the anomaly model',
  );
  const predictions = batch.filter((r) => r.kind === 'prediction');
  t.equal(predictions.length, steps, 'one prediction per completed step of the asset');
  t.match(predictions[0], { metric: 'engine-1.rul', asset: 'engine-1', model: entry.version, unit: entry.unit });
  t.notOk(
    batch.some((r) => r.kind === 'drift'),
    'no histogram before the interval ends',
  );
  now = 21 * HOUR;
  const next: SourceReading[] = [];
  await chain.score(next);
  const models = new Set(next.filter((r) => r.kind === 'drift').map((r) => r.model));
  t.same([...models].sort(), [anomaly.modelVersion, entry.version].sort(), "both models' histograms, at the next batch");
  const rulOut = next.find((r) => r.model === entry.version && r.drift?.quantity === 'output')!;
  t.equal(rulOut.value, steps, 'the failure output histogram counts every prediction');
});
