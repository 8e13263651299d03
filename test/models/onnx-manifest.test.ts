/**
 * The committed models: manifest digests and shapes match the files, and the real onnxruntime
 * session loads each one and returns finite forecasts of the declared shape.
 */
import { copyFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import t from 'tap';
import { HEADS, featureCount } from '../../common/models/features.js';
import { isAnomalyEntry, modelPath, readManifest, readVerifiedModel, sha256 } from '../../common/models/manifest.js';
import { FORECAST_COLUMNS, OnnxModel } from '../../common/models/onnx-model.js';
import { rng } from '../../models/train/synth.js';
import { fromRoot } from '../../models/eval/repo.js';

const manifestFile = fromRoot('models/manifest.json');
const manifest = readManifest(manifestFile);

for (const entry of manifest.models.filter(isAnomalyEntry)) {
  t.test(`model ${entry.version}`, async (t) => {
    const path = modelPath(manifestFile, entry);
    const bytes = readFileSync(path);
    t.equal(sha256(bytes), entry.sha256, 'sha256 of the committed file');
    t.equal(bytes.length, entry.bytes);
    t.ok(existsSync(fromRoot('models', entry.name, 'MODEL_CARD.md')), 'has a model card');
    t.ok(readFileSync(fromRoot('models', entry.name, 'MODEL_CARD.md'), 'utf8').includes(entry.version), 'the card names this version');
    t.ok(entry.version.length <= 64, 'fits the wire record');
    t.ok(entry.thresholds.alert > 0 && entry.thresholds.alert < 1);

    const width = featureCount(entry.featureRecipe);
    t.same(entry.inputs[0]!.shape, ['batch', width], 'input: a batch of feature rows');
    t.same(entry.outputs[0]!.shape, ['batch', FORECAST_COLUMNS], 'output: mu and log b per head');
    t.same(entry.heads, [...HEADS]);

    const session = await ort.InferenceSession.create(bytes);
    t.teardown(() => session.release());
    const [inMeta, outMeta] = [session.inputMetadata[0]!, session.outputMetadata[0]!];
    t.equal(inMeta.name, entry.inputs[0]!.name);
    t.equal(outMeta.name, entry.outputs[0]!.name);
    t.same(inMeta.isTensor && inMeta.shape, entry.inputs[0]!.shape, 'the runtime sees the manifest input shape');
    t.same(outMeta.isTensor && outMeta.shape, entry.outputs[0]!.shape, 'the runtime sees the manifest output shape');

    // Random rows well beyond the clip range, plus all-zero and all-clip rows.
    const rows = 33;
    const r = rng(42);
    const x = Float32Array.from({ length: rows * width }, (_, i) => (i < width ? 0 : i < 2 * width ? 16 : (r() - 0.5) * 64));
    const out = await session.run({ [inMeta.name]: new ort.Tensor('float32', x, [rows, width]) });
    const y = out[outMeta.name]!;
    t.same(y.dims, [rows, FORECAST_COLUMNS]);
    const data = y.data as Float32Array;
    t.ok(data.every(Number.isFinite), 'finite everywhere');
    for (let i = 0; i < rows; i++) {
      for (let h = 0; h < HEADS.length; h++) {
        const logB = data[i * FORECAST_COLUMNS + 2 * h + 1]!;
        if (logB < -7 - 1e-6 || logB > 3 + 1e-6) t.fail(`log b out of its clamp: ${logB}`);
      }
    }
  });
}

t.test('a model file that does not match its manifest is refused before it is loaded', async (t) => {
  const entry = manifest.models.filter(isAnomalyEntry)[0]!;
  const dir = mkdtempSync(join(tmpdir(), 'onnx-manifest-'));
  const copy = join(dir, 'model.onnx');
  copyFileSync(modelPath(manifestFile, entry), copy);
  t.ok(readVerifiedModel(entry, copy).length > 0, 'an intact copy passes');
  const bytes = readFileSync(copy);
  bytes[bytes.length - 1] ^= 0xff;
  writeFileSync(copy, bytes);
  t.throws(() => readVerifiedModel(entry, copy), { code: 'EDGETWIN_ERR_MODEL', details: { expected: entry.sha256 } });
  await t.rejects(OnnxModel.load(entry, copy), { code: 'EDGETWIN_ERR_MODEL' });
  await t.rejects(OnnxModel.load(entry, join(dir, 'missing.onnx')), { code: 'EDGETWIN_ERR_MODEL' });
  // A manifest whose shapes disagree with the file is refused too.
  const wrong = { ...entry, inputs: [{ ...entry.inputs[0]!, shape: ['batch', 3] }] };
  await t.rejects(OnnxModel.load(wrong, modelPath(manifestFile, entry)), { code: 'EDGETWIN_ERR_MODEL' });
});
