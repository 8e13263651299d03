/**
 * Describes a freshly trained .onnx file as a manifest entry: digest, size and the tensor shapes
 * onnxruntime itself reports (so the manifest states what the runtime will see). The entry names
 * its kind (`anomaly`) like the failure model's does (models/rul/entry.ts): readers still take an
 * entry without one as anomaly, for manifests written before both kinds shared the registry.
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import * as ort from 'onnxruntime-node';
import { HEADS, type FeatureRecipe } from '../../common/models/features.js';
import { sha256, type ModelEntry, type TensorSpec } from '../../common/models/manifest.js';

function specs(meta: readonly ort.InferenceSession.ValueMetadata[]): TensorSpec[] {
  return meta.map((m) => ({ name: m.name, type: 'float32', shape: m.isTensor ? [...m.shape] : [] }));
}

export async function describeModel(opts: {
  name: string;
  version: string;
  onnxFile: string;
  manifestDir: string;
  recipe: FeatureRecipe;
  calibration: ModelEntry['calibration'];
  alertThreshold: number;
}): Promise<ModelEntry & { kind: 'anomaly' }> {
  const bytes = readFileSync(opts.onnxFile);
  const session = await ort.InferenceSession.create(bytes);
  const entry: ModelEntry & { kind: 'anomaly' } = {
    kind: 'anomaly',
    name: opts.name,
    version: opts.version,
    file: relative(opts.manifestDir, opts.onnxFile),
    sha256: sha256(bytes),
    bytes: bytes.length,
    inputs: specs(session.inputMetadata),
    outputs: specs(session.outputMetadata),
    output: 'laplace-forecast',
    heads: [...HEADS],
    featureRecipe: opts.recipe,
    calibration: opts.calibration,
    thresholds: { alert: opts.alertThreshold },
  };
  await session.release();
  return entry;
}
