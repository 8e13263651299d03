/**
 * Scoring options of the agent (section `scoring` of its config). Model-specific calibration
 * (surprise cap, shipped alert threshold) lives in the model's manifest entry instead, so that a
 * new model brings its own.
 */
import { DEFAULT_LIKELIHOOD, type LikelihoodConfig } from './likelihood.js';

export interface ScoringConfig {
  /** Path of the model manifest (models/manifest.json, or the collector cache's copy). */
  manifestFile: string;
  /** Manifest entry to run; empty: the first one. */
  modelName: string;
  /** Calibrated score at or above which a reading is an alert; null: the model's shipped threshold. */
  alertThreshold: number | null;
  /** Streams (metrics) scored at most; readings of further streams stay unscored. Each costs ~80 KiB of state with the default likelihood history (about 125 KiB of RSS measured). */
  maxStreams: number;
  /**
   * Rows per inference call; larger batches are split. onnxruntime's arena keeps what the largest
   * call needed: 1024 rows cost no measurable throughput and ~6 MB less agent RSS than 16384
   * (docs/benchmarks.md).
   */
  maxBatchRows: number;
  /** onnxruntime intra-op threads: 1 leaves the other cores to the rest of the agent. */
  threads: number;
  /** A value beyond the stream's seen range by more than this percent of the range scores 1 (Numenta's spatial anomaly); 0 disables. */
  rangeTolerancePercent: number;
  likelihood: LikelihoodConfig;
}

export const DEFAULT_SCORING: ScoringConfig = {
  manifestFile: 'models/manifest.json',
  modelName: '',
  alertThreshold: null,
  maxStreams: 1000,
  maxBatchRows: 1024,
  threads: 1,
  rangeTolerancePercent: 5,
  likelihood: DEFAULT_LIKELIHOOD,
};

const count = (minimum: number) => ({ type: 'integer', minimum }) as const;

export const scoringConfigSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    manifestFile: { type: 'string', minLength: 1 },
    modelName: { type: 'string' },
    alertThreshold: { type: ['number', 'null'], minimum: 0, maximum: 1 },
    maxStreams: count(1),
    maxBatchRows: count(1),
    threads: count(1),
    rangeTolerancePercent: { type: 'number', minimum: 0 },
    likelihood: {
      type: 'object',
      additionalProperties: false,
      properties: {
        learningReadings: count(0),
        estimationReadings: count(1),
        historyReadings: count(1),
        reestimateEveryReadings: count(1),
        averagingReadings: count(1),
        redCooldownReadings: count(0),
        minMean: { type: 'number', minimum: 0 },
        minVariance: { type: 'number', exclusiveMinimum: 0 },
      },
    },
  },
} as const;
