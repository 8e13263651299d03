/**
 * The committed failure model: digest and size (≤ 1 MB), model card, tensors as the manifest says,
 * the agent's code (AssetWindow: scaling, smoothing, padding; FailureModel: ONNX) giving PyTorch's
 * own predictions for the trainer's synthetic engines, outputs clamped for any input, drift
 * references for every input and the output, and a damaged file refused.
 */
import { copyFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { driftSpecsOf, RUL_STREAM } from '../../common/drift/specs.js';
import { Histogram } from '../../common/drift/histogram.js';
import { AssetWindow } from '../../common/models/asset-window.js';
import { FailureModel } from '../../common/models/failure-model.js';
import { sha256 } from '../../common/models/manifest.js';
import { mulberry32 } from '../../common/random.js';
import { fromRoot } from '../../models/eval/repo.js';
import { failureModel, syntheticRows } from '../helpers/rul.js';

const { entry, path, bytes } = failureModel();

t.test('the file, its manifest entry and its card', async (t) => {
  t.equal(sha256(bytes), entry.sha256);
  t.equal(bytes.length, entry.bytes);
  t.ok(bytes.length <= 1024 * 1024, `model file ${bytes.length} bytes <= 1 MB`);
  const card = fromRoot('models', entry.name, 'MODEL_CARD.md');
  t.ok(existsSync(card) && readFileSync(card, 'utf8').includes(entry.version), 'a model card naming this version');
  const { window, features } = entry.featureRecipe;
  t.same(entry.inputs[0]!.shape, ['batch', window, features.length]);
  t.same(entry.outputs[0]!.shape, ['batch', 1]);
  t.match(entry.metrics, { crossValidation: { folds: Number, evaluationEngines: Number, rmsePooled: Number, phm08PerEngine: Number } });
  // The target for the shipped model: RMSE on the last cycle of held-out engines <= 14.
  const cv = (entry.metrics as { crossValidation: { rmsePooled: number; evaluationEngines: number } }).crossValidation;
  t.ok(cv.rmsePooled <= 14, `cross-validated RMSE ${cv.rmsePooled} <= 14`);
  t.ok(cv.evaluationEngines >= 100, `${cv.evaluationEngines} held-out evaluation engines`);
});

t.test("the agent's code gives PyTorch's predictions (synthetic engines, padded and full windows)", async (t) => {
  const model = await FailureModel.load(entry, path);
  t.teardown(() => model.close());
  const checks = (entry.metrics as { torchReference: { seed: number; rows: number; drift: number; rul: number }[] }).torchReference;
  t.ok(checks.length >= 4);
  const r = entry.featureRecipe;
  for (const c of checks) {
    const w = new AssetWindow(r);
    for (const row of syntheticRows(c.seed, c.rows, c.drift, r.center, r.scale)) w.push(row);
    const buf = new Float32Array(model.windowSize);
    w.write(buf, 0);
    const [rul] = await model.predict(buf, 1);
    t.ok(Math.abs(rul! - c.rul) < 1e-3, `seed ${c.seed}, ${c.rows} steps: ${rul!.toFixed(4)} vs torch ${c.rul.toFixed(4)}`);
  }
});

t.test('outputs are clamped to [0, rulCap] for any input', async (t) => {
  const model = await FailureModel.load(entry, path);
  t.teardown(() => model.close());
  const rows = 64;
  const rand = mulberry32(5);
  const x = Float32Array.from({ length: rows * model.windowSize }, (_, i) => (i < model.windowSize ? 0 : (rand() - 0.5) * 200));
  const out = await model.predict(x, rows);
  t.equal(out.length, rows);
  t.ok(
    out.every((v) => v >= 0 && v <= entry.rulCap),
    'within [0, cap]',
  );
});

t.test('drift references: every input feature and the output and error, with the bins the agent uses', async (t) => {
  const specs = driftSpecsOf(entry);
  const ref = entry.drift!.reference!;
  for (const f of entry.featureRecipe.features) {
    const h = Histogram.unpack(ref.streams[f]!.input!);
    t.same(h.spec, specs.input, `${f}: input bins`);
    t.ok(h.total > 10_000, `${f}: ${h.total} values`);
  }
  t.same(Histogram.unpack(ref.streams[RUL_STREAM]!.output!).spec, specs.output);
  t.same(Histogram.unpack(ref.streams[RUL_STREAM]!.error!).spec, specs.error);
});

t.test('a damaged model file is refused before onnxruntime sees it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rul-model-'));
  const copy = join(dir, 'm.onnx');
  copyFileSync(path, copy);
  const b = readFileSync(copy);
  b[b.length - 10] ^= 0xff;
  writeFileSync(copy, b);
  await t.rejects(FailureModel.load(entry, copy), { code: 'EDGETWIN_ERR_MODEL', details: { expected: entry.sha256 } });
  const wrong = { ...entry, inputs: [{ ...entry.inputs[0]!, shape: ['batch', 7, 3] }] };
  await t.rejects(FailureModel.load(wrong, path), { code: 'EDGETWIN_ERR_MODEL' });
});
