/**
 * The model manifest (models/manifest.json): what the agent needs to trust and run a model file
 * without Python or the training code: its digest, tensor shapes, feature recipe, calibration and
 * thresholds; plus, for people, its training data and metrics.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Ajv } from 'ajv';
import { EdgetwinError, ErrorCodes } from '../errors.js';
import { histogramSpecSchema, type HistogramSpec, type PackedHistogram } from '../drift/histogram.js';
import type { FeatureRecipe } from './features.js';

export interface TensorSpec {
  name: string;
  type: 'float32';
  /** Numbers are fixed sizes, strings symbolic ones (the batch). */
  shape: Array<number | string>;
}

/** What a model does: `anomaly` scores each reading of a stream, `failure` predicts an asset's remaining useful life. */
export type ModelKind = 'anomaly' | 'failure';

/** The quantities drift monitoring follows for every model (docs/drift.md). */
export type DriftQuantity = 'input' | 'error' | 'output';

/**
 * A model's drift settings: the fixed bins of its histograms (defaults per kind in
 * common/drift/specs.ts) and, when shipped, reference histograms from its validation data,
 * per stream (a feature name, or `output`) and quantity.
 */
export interface DriftSection {
  bins?: Partial<Record<DriftQuantity, HistogramSpec>>;
  reference?: {
    /** Where the reference comes from, for people (e.g. "validation windows of 100 engines"). */
    source: string;
    streams: Record<string, Partial<Record<DriftQuantity, PackedHistogram>>>;
  };
}

/** What every manifest entry has, whatever the kind: the shipped file, its tensors and its records. */
export interface ModelFileEntry {
  name: string;
  /** Reported on every scored reading and in the twin (max 64 characters, as on the wire). */
  version: string;
  /** Path of the .onnx file, relative to the manifest. */
  file: string;
  sha256: string;
  bytes: number;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  training?: Record<string, unknown>;
  metrics?: Record<string, unknown>;
  drift?: DriftSection;
}

/** An anomaly model (kind absent or `anomaly`): a forecaster whose surprise becomes a per-stream score. */
export interface ModelEntry extends ModelFileEntry {
  kind?: 'anomaly';
  /** What the output columns mean: per head, [mu, log b] of a Laplace forecast of the normalised value. */
  output: 'laplace-forecast';
  /** The heads, in output order (features.ts HEADS). */
  heads: string[];
  featureRecipe: FeatureRecipe;
  calibration: {
    /** Raw score = min(1, surprise / surpriseCap), surprise = |y - mu| / b. */
    surpriseCap: number;
    /**
     * The streaming detector around the model (agent/scoring/stream-detector.ts); each absent part
     * is off, as for forecaster-1.0.0. `seasonalSurprise`: a head's raw score is divided by
     * 1 + weight × its usual peak at this time of day; `episodeReadings`: one alert per anomaly,
     * episodes this long; `episodeMargin`: inside one, how much a new high must beat the
     * episode's best to keep its score; `countGate`: on count-like streams, deviations below this
     * fraction of the running range cannot alert.
     */
    seasonalSurprise?: { bucketMinutes: number; blend: number; weight: number };
    episodeReadings?: number;
    episodeMargin?: number;
    countGate?: number;
  };
  thresholds: {
    /** Default alert threshold on the calibrated score. */
    alert: number;
    /** Best threshold per NAB cost profile on the tuning data, for reference. */
    nab?: Record<string, number>;
  };
}

/**
 * How a failure model sees an asset: the last `window` completed steps of its `features` (model
 * input names, in column order), each scaled as (x - center) / scale with the training engines'
 * statistics and optionally smoothed along the steps. An asset with fewer steps repeats its first
 * step in front (`pad: first`).
 */
export interface AssetWindowRecipe {
  name: 'asset-window-v1';
  window: number;
  features: string[];
  center: number[];
  scale: number[];
  /** Exponential smoothing of the scaled features along the steps, s = a·x + (1 − a)·s (first step: s = x); absent or 1: none. */
  smooth?: number;
  pad: 'first';
}

/**
 * A failure (remaining-useful-life) model: one window per asset in, remaining steps out (inputs
 * `[batch, window, features]`, outputs `[batch, 1]`: remaining useful life in steps).
 */
export interface FailureModelEntry extends ModelFileEntry {
  kind: 'failure';
  output: 'rul';
  /** What one step of the training data was (C-MAPSS: an operational cycle); predictions carry it as their unit. */
  unit: string;
  /** Predictions are clipped to [0, rulCap]: the training target was capped there (piecewise linear). */
  rulCap: number;
  featureRecipe: AssetWindowRecipe;
  thresholds: {
    /** A prediction below this many steps is an alert (priority lane). */
    alertBelow: number;
  };
}

export type AnyModelEntry = ModelEntry | FailureModelEntry;

export interface Manifest {
  models: AnyModelEntry[];
}

export function kindOf(entry: { kind?: unknown }): ModelKind {
  return entry.kind === 'failure' ? 'failure' : 'anomaly';
}

export const isAnomalyEntry = (e: AnyModelEntry): e is ModelEntry => kindOf(e) === 'anomaly';
export const isFailureEntry = (e: AnyModelEntry): e is FailureModelEntry => kindOf(e) === 'failure';

const tensorSpec = {
  type: 'object',
  required: ['name', 'type', 'shape'],
  properties: {
    name: { type: 'string' },
    type: { const: 'float32' },
    shape: { type: 'array', items: { type: ['integer', 'string'] } },
  },
} as const;

const quantitySpecs = {
  type: 'object',
  additionalProperties: false,
  properties: { input: histogramSpecSchema, error: histogramSpecSchema, output: histogramSpecSchema },
} as const;

const packedSchema = {
  type: 'object',
  required: ['lo', 'hi', 'bins', 'first', 'counts'],
  properties: {
    ...histogramSpecSchema.properties,
    first: { type: 'integer', minimum: 0 },
    counts: { type: 'array', items: { type: 'integer', minimum: 0 } },
  },
} as const;

const driftSchema = {
  type: 'object',
  properties: {
    bins: quantitySpecs,
    reference: {
      type: 'object',
      required: ['source', 'streams'],
      properties: {
        source: { type: 'string' },
        streams: {
          type: 'object',
          additionalProperties: {
            type: 'object',
            additionalProperties: false,
            properties: { input: packedSchema, error: packedSchema, output: packedSchema },
          },
        },
      },
    },
  },
} as const;

/** The schema of ModelFileEntry: what every entry has, whatever its kind (the kinds add `output` and the rest). */
const fileEntryRequired = ['name', 'version', 'file', 'sha256', 'bytes', 'inputs', 'outputs', 'output'] as const;
const fileEntryProperties = {
  name: { type: 'string', minLength: 1 },
  version: { type: 'string', minLength: 1, maxLength: 64 },
  file: { type: 'string', minLength: 1 },
  sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' },
  bytes: { type: 'integer', minimum: 1 },
  inputs: { type: 'array', minItems: 1, maxItems: 1, items: tensorSpec },
  outputs: { type: 'array', minItems: 1, maxItems: 1, items: tensorSpec },
  drift: driftSchema,
} as const;

const failureEntrySchema = {
  type: 'object',
  required: ['kind', ...fileEntryRequired, 'unit', 'rulCap', 'featureRecipe', 'thresholds'],
  properties: {
    ...fileEntryProperties,
    kind: { const: 'failure' },
    output: { const: 'rul' },
    unit: { type: 'string', minLength: 1, maxLength: 32 },
    rulCap: { type: 'number', exclusiveMinimum: 0 },
    featureRecipe: {
      type: 'object',
      required: ['name', 'window', 'features', 'center', 'scale', 'pad'],
      properties: {
        name: { const: 'asset-window-v1' },
        window: { type: 'integer', minimum: 1, maximum: 4096 },
        features: {
          type: 'array',
          minItems: 1,
          maxItems: 1024,
          uniqueItems: true,
          items: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]{0,63}$' },
        },
        center: { type: 'array', items: { type: 'number' } },
        scale: { type: 'array', items: { type: 'number', exclusiveMinimum: 0 } },
        smooth: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
        pad: { const: 'first' },
      },
    },
    thresholds: { type: 'object', required: ['alertBelow'], properties: { alertBelow: { type: 'number', minimum: 0 } } },
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
        if: { type: 'object', required: ['kind'], properties: { kind: { const: 'failure' } } },
        then: failureEntrySchema,
        else: {
          type: 'object',
          required: [...fileEntryRequired, 'heads', 'featureRecipe', 'calibration', 'thresholds'],
          properties: {
            ...fileEntryProperties,
            output: { const: 'laplace-forecast' },
            heads: { const: ['step', 'level'] },
            featureRecipe: { type: 'object', required: ['name'], properties: { name: { const: 'ctx-v1' } } },
            calibration: {
              type: 'object',
              required: ['surpriseCap'],
              properties: {
                surpriseCap: { type: 'number', exclusiveMinimum: 0 },
                seasonalSurprise: {
                  type: 'object',
                  required: ['bucketMinutes', 'blend', 'weight'],
                  additionalProperties: false,
                  properties: {
                    bucketMinutes: { type: 'number', minimum: 1, maximum: 1440 },
                    blend: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
                    weight: { type: 'number', minimum: 0 },
                  },
                },
                episodeReadings: { type: 'integer', minimum: 0 },
                episodeMargin: { type: 'number', minimum: 0, maximum: 1 },
                countGate: { type: 'number', minimum: 0, maximum: 1 },
              },
            },
            thresholds: { type: 'object', required: ['alert'], properties: { alert: { type: 'number', minimum: 0, maximum: 1 } } },
            kind: { const: 'anomaly' },
          },
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
  for (const m of obj.models) if (m.kind === 'failure') checkRecipe(m, where);
  return obj;
}

/** One manifest entry of either kind (an upload, a stored or downloaded entry). */
export function parseModelEntry(obj: unknown, where = 'entry'): AnyModelEntry {
  return parseManifest({ models: [obj] }, where).models[0]!;
}

/** Checks what the schema cannot: the recipe's arrays agree with each other and with the input tensor. */
function checkRecipe(m: FailureModelEntry, where: string): void {
  const r = m.featureRecipe;
  const n = r.features.length;
  const shape = m.inputs[0]!.shape;
  if (r.center.length !== n || r.scale.length !== n)
    throw modelError(`${where}: ${m.version}: featureRecipe center and scale need one value per feature (${n})`, { model: m.version });
  if (shape.length !== 3 || shape[1] !== r.window || shape[2] !== n)
    throw modelError(`${where}: ${m.version}: input shape must be [batch, ${r.window}, ${n}]`, { model: m.version, shape });
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

function pick(manifest: Manifest, name: string, kind: ModelKind): AnyModelEntry {
  const entry = manifest.models.find((m) => (name ? m.name === name : kindOf(m) === kind));
  if (!entry) throw modelError(name ? `no model named ${name} in the manifest` : `no ${kind} model in the manifest`, { model: name });
  if (kindOf(entry) !== kind) throw modelError(`model ${name} is a ${kindOf(entry)} model, not a ${kind} model`, { model: name });
  return entry;
}

/** The anomaly model named `name`, or the first anomaly model when `name` is empty. */
export function pickModel(manifest: Manifest, name: string): ModelEntry {
  return pick(manifest, name, 'anomaly') as ModelEntry;
}

/** The failure model named `name`, or the first failure model when `name` is empty. */
export function pickFailureModel(manifest: Manifest, name: string): FailureModelEntry {
  return pick(manifest, name, 'failure') as FailureModelEntry;
}

/** Absolute path of an entry's model file. */
export function modelPath(manifestFile: string, entry: AnyModelEntry): string {
  return resolve(dirname(manifestFile), entry.file);
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Reads a model file and checks it against its manifest entry; returns its bytes. */
export function readVerifiedModel(entry: AnyModelEntry, path: string): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (cause) {
    throw modelError(`cannot read model file ${path}`, { model: entry.version, path }, cause);
  }
  const digest = sha256(bytes);
  if (digest !== entry.sha256) {
    throw modelError(`model file ${path} does not match its manifest sha256`, {
      model: entry.version,
      expected: entry.sha256,
      actual: digest,
    });
  }
  return bytes;
}
