/**
 * The small-graph runner (common/models/small-graph.ts: ONNX protobuf reader + WebAssembly SIMD
 * Gemm) against the real onnxruntime on the committed models: the same forecasts within float32
 * rounding for every batch size the scorer uses, and a clear "unsupported" for graphs it cannot run.
 */
import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import t from 'tap';
import { featureCount } from '../../common/models/features.js';
import { isAnomalyEntry, modelPath, readManifest } from '../../common/models/manifest.js';
import { FORECAST_COLUMNS, OnnxModel } from '../../common/models/onnx-model.js';
import { SmallGraph } from '../../common/models/small-graph.js';
import { rng } from '../../models/train/synth.js';
import { fromRoot } from '../../models/eval/repo.js';

const manifestFile = fromRoot('models/manifest.json');
const manifest = readManifest(manifestFile);

for (const entry of manifest.models.filter(isAnomalyEntry)) {
  t.test(`${entry.version}: small graph = onnxruntime`, async (t) => {
    const bytes = readFileSync(modelPath(manifestFile, entry));
    const graph = SmallGraph.compile(bytes);
    if (!(graph instanceof SmallGraph)) throw new Error(`not compiled: ${graph.unsupported}`);
    t.equal(graph.inputName, entry.inputs[0]!.name);
    t.equal(graph.outputName, entry.outputs[0]!.name);
    t.equal(graph.inputWidth, featureCount(entry.featureRecipe));
    const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
    t.teardown(() => session.release());
    const width = graph.inputWidth;
    const random = rng(15);
    let worst = 0;
    // Batch sizes the scorer sends (1 smoke row, odd chunk tails, 64 coalitions, a full 1024 chunk), in
    // an order that makes the runner grow its activations and then reuse them.
    for (const rows of [1, 7, 64, 1024, 3, 1000]) {
      const x = new Float32Array(rows * width);
      for (let i = 0; i < x.length; i++) {
        // Features are clipped to ±16; a few exact zeros and extremes, as real rows have.
        const u = random();
        x[i] = u < 0.05 ? 0 : u < 0.08 ? (u < 0.065 ? 16 : -16) : (random() - 0.5) * 2 * (u < 0.5 ? 2 : 16);
      }
      const ref = (await session.run({ [graph.inputName]: new ort.Tensor('float32', x, [rows, width]) }))[graph.outputName]!
        .data as Float32Array;
      const got = graph.run(x, rows);
      t.equal(got.length, ref.length, `${rows} rows: output size`);
      for (let i = 0; i < ref.length; i++) {
        const d = Math.abs(got[i]! - ref[i]!) / Math.max(1, Math.abs(ref[i]!));
        if (d > worst) worst = d;
      }
    }
    t.ok(worst < 1e-5, `largest difference ${worst.toExponential(2)} (relative, or absolute below 1)`);
  });
}

t.test('graphs it cannot run are named, not guessed', async (t) => {
  const failure = manifest.models.find((e) => !isAnomalyEntry(e))!;
  const got = SmallGraph.compile(readFileSync(modelPath(manifestFile, failure)));
  t.notOk(got instanceof SmallGraph, `${failure.version} (3-D input) is not for this runner`);
  if (!(got instanceof SmallGraph)) t.match(got.unsupported, /input|operator|shape|tensor/);
  const junk = SmallGraph.compile(new Uint8Array([1, 2, 3, 4, 5]));
  t.notOk(junk instanceof SmallGraph, 'bytes that are not ONNX');
});

t.test('OnnxModel: auto runs the forecaster on the small graph; forced engines agree', async (t) => {
  const entry = manifest.models.find(isAnomalyEntry)!;
  const path = modelPath(manifestFile, entry);
  const auto = await OnnxModel.load(entry, path);
  t.teardown(() => auto.close());
  t.equal(auto.engine, 'small-graph');
  t.equal(auto.fallbackReason, undefined);
  const ortModel = await OnnxModel.load(entry, path, { engine: 'onnxruntime' });
  t.teardown(() => ortModel.close());
  t.equal(ortModel.engine, 'onnxruntime');
  const rows = 5;
  const x = Float32Array.from({ length: rows * auto.featureCount }, (_, i) => Math.sin(i) * 3);
  const [a, b] = [await auto.forecast(x, rows), await ortModel.forecast(x, rows)];
  t.equal(a.length, rows * FORECAST_COLUMNS);
  t.ok(
    a.every((v, i) => Math.abs(v - b[i]!) <= 1e-5 * Math.max(1, Math.abs(b[i]!))),
    'same forecasts through OnnxModel',
  );
});
