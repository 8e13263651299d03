/**
 * Scoring options of the agent (section `scoring` of its config). Model-specific calibration
 * (surprise cap, shipped alert threshold) lives in the model's manifest entry instead, so that a
 * new model brings its own.
 */
import Type, { type Static } from 'typebox';
import { configDefaults, Section } from '../../common/config.js';
import { INFERENCE_ENGINES } from '../../common/models/onnx-model.js';
import { DEFAULT_LIKELIHOOD as L } from './likelihood.js';

const count = (minimum: number, dflt: number) => Type.Integer({ minimum, default: dflt });

/** Key by key as LikelihoodConfig (agent/scoring/likelihood.ts, which documents each); defaults are Numenta's there. */
const likelihoodSchema = Section({
  learningReadings: count(0, L.learningReadings),
  estimationReadings: count(1, L.estimationReadings),
  historyReadings: count(1, L.historyReadings),
  reestimateEveryReadings: count(1, L.reestimateEveryReadings),
  averagingReadings: count(1, L.averagingReadings),
  redCooldownReadings: count(0, L.redCooldownReadings),
  minMean: Type.Number({ minimum: 0, default: L.minMean }),
  minVariance: Type.Number({ exclusiveMinimum: 0, default: L.minVariance }),
});

export const scoringConfigSchema = Section({
  /** Path of the model manifest (models/manifest.json, or the collector cache's copy). */
  manifestFile: Type.String({ minLength: 1, default: 'models/manifest.json' }),
  /** Manifest entry to run; empty: the first one. */
  modelName: Type.String({ default: '' }),
  /** Calibrated score at or above which a reading is an alert; null: the model's shipped threshold. */
  alertThreshold: Type.Unsafe<number | null>({ type: ['number', 'null'], minimum: 0, maximum: 1, default: null }),
  /** Streams (metrics) scored at most; readings of further streams stay unscored. Each costs about 15 KiB of state (docs/anomaly-detection.md). */
  maxStreams: count(1, 1000),
  /**
   * Rows per inference call; larger batches are split. onnxruntime's arena keeps what the largest
   * call needed: 1024 rows cost no measurable throughput and ~6 MB less agent RSS than 16384
   * (docs/benchmarks.md).
   */
  maxBatchRows: count(1, 1024),
  /** onnxruntime intra-op threads: 1 leaves the other cores to the rest of the agent. */
  threads: count(1, 1),
  /**
   * What runs the model: `small-graph` (WebAssembly, no onnxruntime: ≈ 35-40 MB less RSS),
   * `onnxruntime`, or `auto`: the small graph when it can run the model's graph, else onnxruntime.
   */
  engine: Type.Enum([...INFERENCE_ENGINES], { default: 'auto' }),
  /** A value beyond the stream's seen range by more than this percent of the range scores 1 (Numenta's spatial anomaly); 0 disables. */
  rangeTolerancePercent: Type.Number({ minimum: 0, default: 5 }),
  /**
   * Alerts per scored batch that get an explanation (exact Shapley values: one inference of 2^6
   * rows each, ≈ 0.1 ms); further alerts in the same batch go out without one (counted as
   * `skipped`), so a model that alerts on everything costs at most this much more. 0: none.
   */
  explainMaxPerBatch: count(0, 100),
  likelihood: likelihoodSchema,
});
export type ScoringConfig = Static<typeof scoringConfigSchema>;
export const DEFAULT_SCORING: ScoringConfig = configDefaults(scoringConfigSchema);
