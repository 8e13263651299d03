/**
 * The manifest entry's `kind` (issue 16): every committed entry names it, the anomaly trainer's entry
 * writer produces it, the schema admits only `anomaly` and `failure` (each on its own entry shape),
 * and an entry without one — every anomaly manifest written before both kinds shared the registry —
 * still reads as an anomaly model, in the manifest reader and in the agent's rollout.
 */
import { dirname } from 'node:path';
import t from 'tap';
import { failureKind, anomalyKind } from '../../agent/rollout/kinds.js';
import { ANOMALY_DRIFT_BINS, driftSpecsOf } from '../../common/drift/specs.js';
import {
  isAnomalyEntry,
  kindOf,
  modelPath,
  parseManifest,
  parseModelEntry,
  pickFailureModel,
  pickModel,
  readManifest,
  type ModelEntry,
} from '../../common/models/manifest.js';
import { fromRoot } from '../../models/eval/repo.js';
import { describeModel } from '../../models/train/manifest-entry.js';

const manifestFile = fromRoot('models/manifest.json');
const manifest = readManifest(manifestFile);
const anomaly = manifest.models.find(isAnomalyEntry)!;
const failure = pickFailureModel(manifest, '');

/** A copy of an entry without its `kind`, as older manifests and uploads have it. */
function withoutKind<E extends { kind?: unknown }>(e: E): Omit<E, 'kind'> {
  const copy = { ...e };
  delete copy.kind;
  return copy;
}

t.test('every committed entry names its kind', async (t) => {
  for (const m of manifest.models) t.ok(m.kind === 'anomaly' || m.kind === 'failure', `${m.version}: kind ${String(m.kind)}`);
  t.equal(anomaly.kind, 'anomaly', 'the forecaster says anomaly');
  t.equal(failure.kind, 'failure', 'the rul model says failure');
});

t.test("the anomaly trainer's entry writer names the kind and matches the committed entry", async (t) => {
  const written = await describeModel({
    name: anomaly.name,
    version: anomaly.version,
    onnxFile: modelPath(manifestFile, anomaly),
    manifestDir: dirname(manifestFile),
    recipe: anomaly.featureRecipe,
    calibration: anomaly.calibration,
    alertThreshold: anomaly.thresholds.alert,
  });
  t.equal(written.kind, 'anomaly');
  t.equal(Object.keys(written)[0], 'kind', 'first, as in the failure entry and models/manifest.json');
  const fromFile = ['kind', 'name', 'version', 'file', 'sha256', 'bytes', 'inputs', 'outputs', 'output', 'heads'] as const;
  for (const k of fromFile) t.same(written[k], anomaly[k], `${k} as committed`);
  t.doesNotThrow(() => parseModelEntry(written), 'valid under the schema');
});

t.test('an entry without kind (older manifests) is an anomaly model', async (t) => {
  const old = withoutKind(anomaly) as ModelEntry;
  t.equal(old.kind, undefined);
  const parsed = parseManifest({ models: [old, failure] }, 'old manifest');
  t.equal(kindOf(parsed.models[0]!), 'anomaly');
  t.ok(isAnomalyEntry(parsed.models[0]!));
  t.equal(pickModel(parsed, ''), parsed.models[0], 'the first anomaly model');
  t.equal(pickModel(parsed, 'forecaster').version, anomaly.version, 'by name');
  t.throws(() => pickFailureModel(parsed, 'forecaster'), { code: 'EDGETWIN_ERR_MODEL', message: /anomaly model, not a failure model/ });
  t.equal(parseModelEntry(old).kind, undefined, 'read as it was: nothing added to what a signature covers');
  t.same(driftSpecsOf(old), ANOMALY_DRIFT_BINS, 'anomaly drift bins');
  // The agent's rollout takes it for the anomaly model and refuses it for the failure model.
  t.equal(anomalyKind.entry(old, old.version), old);
  t.throws(() => failureKind.entry(old, old.version), { code: 'EDGETWIN_ERR_MODEL', details: { kind: 'anomaly' } });
  t.throws(() => anomalyKind.entry(failure, failure.version), { code: 'EDGETWIN_ERR_MODEL', details: { kind: 'failure' } });
});

t.test('the schema admits only anomaly and failure, each on its own entry shape', async (t) => {
  for (const kind of ['bogus', 'Anomaly', 'ANOMALY', '', null, 1])
    t.throws(() => parseModelEntry({ ...anomaly, kind }), { code: 'EDGETWIN_ERR_MODEL' }, `kind ${JSON.stringify(kind)} refused`);
  t.throws(() => parseModelEntry({ ...anomaly, kind: 'failure' }), { code: 'EDGETWIN_ERR_MODEL' }, 'an anomaly entry cannot say failure');
  t.throws(() => parseModelEntry({ ...failure, kind: 'anomaly' }), { code: 'EDGETWIN_ERR_MODEL' }, 'a failure entry cannot say anomaly');
  t.throws(() => parseModelEntry(withoutKind(failure)), { code: 'EDGETWIN_ERR_MODEL' }, 'a failure entry must say failure');
  t.throws(() => parseManifest({ models: [anomaly, { ...failure, kind: 'rul' }] }), { code: 'EDGETWIN_ERR_MODEL' }, 'in a manifest too');
  t.equal(parseModelEntry({ ...anomaly }).kind, 'anomaly');
  t.equal(parseModelEntry({ ...failure }).kind, 'failure');
});
