/** Model-rollout test material: versions made from the committed forecaster (same ONNX bytes, another version or threshold). */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { modelPath, pickModel, readManifest, type ModelEntry } from '../../common/models/manifest.js';

export const MANIFEST = resolve('models/manifest.json');

export function baseModel(): { entry: ModelEntry; bytes: Buffer } {
  const entry = pickModel(readManifest(MANIFEST), '');
  return { entry, bytes: readFileSync(modelPath(MANIFEST, entry)) };
}

/** An upload body: the committed model under another version, with optional entry changes (e.g. an alert threshold of 0). */
export function variant(version: string, changes: Partial<ModelEntry> = {}): { entry: ModelEntry; file: string } {
  const { entry, bytes } = baseModel();
  return { entry: { ...entry, version, ...changes }, file: bytes.toString('base64') };
}

export interface DesiredModelValue {
  name: string;
  version: string;
  sha256: string;
}
