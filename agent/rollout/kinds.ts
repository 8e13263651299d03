/**
 * What differs between the model kinds a ModelRollout can run (common/models/manifest.ts `kind`):
 * the desired properties it follows, where it keeps its decisions, which entries it accepts, what
 * its threshold looks like and which readings count towards a trial. Everything else — fetching,
 * signature and digest checks, the two-model swap, the trial and the automatic rollback — is the
 * same machinery for both (model-rollout.ts).
 */
import { isPlainObject } from '../../common/config.js';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import { kindOf, type AnyModelEntry, type FailureModelEntry, type ModelEntry, type ModelKind } from '../../common/models/manifest.js';
import { DESIRED_MODEL_KEY } from '../../common/wire/model-protocol.js';
import type { SourceReading } from '../types.js';

/** A loaded model of one kind (OnnxModel, FailureModel). */
export interface LoadedModel<E extends AnyModelEntry> {
  readonly version: string;
  readonly entry: E;
  close(): Promise<void>;
}

/** The scorer or predictor a rollout drives (OnnxScorer, FailurePredictor). */
export interface RolloutRunner<E extends AnyModelEntry, M extends LoadedModel<E>> {
  readonly modelVersion: string;
  prepare(entry: E, path: string): Promise<M>;
  swap(next: M): Promise<M>;
  setAlertThreshold(threshold: number | null): void;
  score(readings: SourceReading[]): Promise<void>;
  close(): Promise<void>;
}

export interface RolloutKind<E extends AnyModelEntry> {
  kind: ModelKind;
  /** Desired property naming the version to run: `{ name, version, sha256 }`. */
  desiredKey: string;
  /** Desired property with the live threshold. */
  thresholdsKey: string;
  /** Reported property with the rollout's state. */
  reportKey: string;
  /** File in the rollout folder keeping what was decided. */
  stateFile: string;
  /** Config key prefix, for messages. */
  configKey: string;
  /** Prometheus name prefix of its counters (`<prefix>_rollouts_total`, `<prefix>_download_bytes_total`). */
  metricPrefix: string;
  /** Parses the desired threshold: the value to set (null: back to the configured one) and what to report as applied. */
  thresholds(value: unknown): { threshold: number | null; applied: unknown };
  /** The entry when it is of this kind; EDGETWIN_ERR_MODEL otherwise. */
  entry(e: AnyModelEntry, version: string): E;
  /** Whether a reading, after the runner saw the batch, counts towards the trial of `version`. */
  judged(r: SourceReading, version: string): boolean;
}

function wrongKind(version: string, e: AnyModelEntry, want: ModelKind): EdgetwinError {
  return new EdgetwinError(ErrorCodes.MODEL, `model ${version} is a ${kindOf(e)} model, not a ${want} model`, {
    details: { model: version, kind: kindOf(e) },
  });
}

function thresholdsError(key: string, shape: string): EdgetwinError {
  return new EdgetwinError(ErrorCodes.CONFIG, `desired "${key}" must be ${shape}`, { details: { key } });
}

/** Parses `{ <field>: number in [min, max] }`, or null/absent. */
function oneNumber(key: string, field: string, min: number, max: number, value: unknown): { threshold: number | null; applied: unknown } {
  if (value === undefined || value === null) return { threshold: null, applied: undefined };
  const v = isPlainObject(value) ? value[field] : undefined;
  if (!isPlainObject(value) || Object.keys(value).some((k) => k !== field) || typeof v !== 'number' || !(v >= min && v <= max))
    throw thresholdsError(key, `{ "${field}": <number from ${min} to ${max}> }`);
  return { threshold: v, applied: { [field]: v } };
}

export const anomalyKind: RolloutKind<ModelEntry> = {
  kind: 'anomaly',
  desiredKey: DESIRED_MODEL_KEY.anomaly,
  thresholdsKey: 'thresholds',
  reportKey: 'modelRollout',
  stateFile: 'rollout.json',
  configKey: 'scoring',
  metricPrefix: 'edgetwin_model',
  thresholds: (v) => oneNumber('thresholds', 'alert', 0, 1, v),
  entry(e, version) {
    if (e.kind === 'failure') throw wrongKind(version, e, 'anomaly');
    return e;
  },
  judged: (r, version) => r.score !== undefined && r.model === version,
};

export const failureKind: RolloutKind<FailureModelEntry> = {
  kind: 'failure',
  desiredKey: DESIRED_MODEL_KEY.failure,
  thresholdsKey: 'failureThresholds',
  reportKey: 'failureModelRollout',
  stateFile: 'rollout-failure.json',
  configKey: 'failure',
  metricPrefix: 'edgetwin_failure_model',
  thresholds: (v) => oneNumber('failureThresholds', 'alertBelow', 0, 1e9, v),
  entry(e, version) {
    if (e.kind !== 'failure') throw wrongKind(version, e, 'failure');
    return e;
  },
  judged: (r, version) => r.kind === 'prediction' && r.model === version,
};
