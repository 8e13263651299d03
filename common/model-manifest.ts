/**
 * The model manifest (models/manifest.json): what the agent needs to trust and run a model file
 * without Python or the training code: its digest, tensor shapes, feature recipe, calibration and
 * thresholds; plus, for people, its training data and metrics.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Ajv } from 'ajv';
import { EdgetwinError, ErrorCodes } from './errors.js';
import type { FeatureRecipe } from './model-features.js';

export interface TensorSpec {
  name: string;
  type: 'float32';
  /** Numbers are fixed sizes, strings symbolic ones (the batch). */
  shape: Array<number | string>;
}

export interface ModelEntry {
  name: string;
  /** Reported on every scored reading and in the twin (max 64 characters, as on the wire). */
  version: string;
  /** Path of the .onnx file, relative to the manifest. */
  file: string;
  sha256: string;
  bytes: number;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** What the output columns mean: per head, [mu, log b] of a Laplace forecast of the normalised value. */
  output: 'laplace-forecast';
  /** The heads, in output order (features.ts HEADS). */
  heads: string[];
  featureRecipe: FeatureRecipe;
  calibration: {
    /** Raw score = min(1, surprise / surpriseCap), surprise = |y - mu| / b. */
    surpriseCap: number;
  };
  thresholds: {
    /** Default alert threshold on the calibrated score. */
    alert: number;
    /** Best threshold per NAB cost profile on the tuning data, for reference. */
    nab?: Record<string, number>;
  };
  training?: Record<string, unknown>;
  metrics?: Record<string, unknown>;
}

export interface Manifest {
  models: ModelEntry[];
}

const tensorSpec = {
  type: 'object',
  required: ['name', 'type', 'shape'],
  properties: {
    name: { type: 'string' },
    type: { const: 'float32' },
    shape: { type: 'array', items: { type: ['integer', 'string'] } },
  },
} as const;

export const manifestSchema = {
  type: 'object',
  required: ['models'],
  properties: {
    models: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['name', 'version', 'file', 'sha256', 'bytes', 'inputs', 'outputs', 'output', 'heads', 'featureRecipe', 'calibration', 'thresholds'],
        properties: {
          name: { type: 'string', minLength: 1 },
          version: { type: 'string', minLength: 1, maxLength: 64 },
          file: { type: 'string', minLength: 1 },
          sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' },
          bytes: { type: 'integer', minimum: 1 },
          inputs: { type: 'array', minItems: 1, maxItems: 1, items: tensorSpec },
          outputs: { type: 'array', minItems: 1, maxItems: 1, items: tensorSpec },
          output: { const: 'laplace-forecast' },
          heads: { const: ['step', 'level'] },
          featureRecipe: { type: 'object', required: ['name'], properties: { name: { const: 'ctx-v1' } } },
          calibration: { type: 'object', required: ['surpriseCap'], properties: { surpriseCap: { type: 'number', exclusiveMinimum: 0 } } },
          thresholds: { type: 'object', required: ['alert'], properties: { alert: { type: 'number', minimum: 0, maximum: 1 } } },
        },
      },
    },
  },
} as const;

const validate = new Ajv({ allErrors: false, strict: false }).compile<Manifest>(manifestSchema);

function modelError(message: string, details: Record<string, unknown>, cause?: unknown): EdgetwinError {
  return new EdgetwinError(ErrorCodes.MODEL, message, { details, cause });
}

export function parseManifest(obj: unknown, where = 'manifest'): Manifest {
  if (!validate(obj)) {
    const e = validate.errors?.[0];
    throw modelError(`${where}: ${e?.instancePath || '/'} ${e?.message ?? 'is invalid'}`, { path: e?.instancePath });
  }
  return obj;
}

export function readManifest(file: string): Manifest {
  let obj: unknown;
  try {
    obj = JSON.parse(readFileSync(file, 'utf8'));
  } catch (cause) {
    throw modelError(`cannot read model manifest ${file}`, { file }, cause);
  }
  return parseManifest(obj, file);
}

/** The entry named `name`, or the first one when `name` is empty. */
export function pickModel(manifest: Manifest, name: string): ModelEntry {
  const entry = name ? manifest.models.find((m) => m.name === name) : manifest.models[0];
  if (!entry) throw modelError(`no model named ${name} in the manifest`, { model: name });
  return entry;
}

/** Absolute path of an entry's model file. */
export function modelPath(manifestFile: string, entry: ModelEntry): string {
  return resolve(dirname(manifestFile), entry.file);
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Reads a model file and checks it against its manifest entry; returns its bytes. */
export function readVerifiedModel(entry: ModelEntry, path: string): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (cause) {
    throw modelError(`cannot read model file ${path}`, { model: entry.version, path }, cause);
  }
  const digest = sha256(bytes);
  if (digest !== entry.sha256) {
    throw modelError(`model file ${path} does not match its manifest sha256`, { model: entry.version, expected: entry.sha256, actual: digest });
  }
  return bytes;
}
