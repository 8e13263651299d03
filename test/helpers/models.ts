/** Model-rollout test material: versions made from the committed forecaster (same ONNX bytes, another version or threshold). */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
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

/** A fresh Ed25519 signing key in `dir` (mode 600, as the cloud requires), for `models.signingKeyFile`. */
export function signingKey(dir: string): { keyFile: string; publicKey: KeyObject } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const keyFile = join(dir, 'signing.pem');
  writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  return { keyFile, publicKey };
}
