/**
 * The cloud's `drift` section: how it evaluates the drift histograms agents send (docs/drift.md).
 */
import Type, { type Static } from 'typebox';
import { Section } from '../../common/config.js';

export const cloudDriftConfigSchema = Section({
  enabled: Type.Boolean({ default: true }),
  /** How often the evaluator runs (one replica at a time, under a lease). */
  evaluateIntervalMs: Type.Integer({ minimum: 1000, default: 300_000 }),
  /** Length of an evaluation window: each window's merged histograms are compared with the reference. */
  windowMs: Type.Integer({ minimum: 60_000, default: 86_400_000 }),
  /**
   * Without a reference in the model's manifest, a cohort's reference is its own first `baselineMs`
   * of histograms after the version appeared there (frozen once complete; windows inside it are not judged).
   */
  baselineMs: Type.Integer({ minimum: 60_000, default: 3 * 86_400_000 }),
  /** Tag keys that form cohorts besides sites: devices sharing `key=value` are merged (`tag:key=value`). */
  cohortTags: Type.Array(Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }), { default: [] }),
  /** Histograms and evaluations older than this are deleted (references stay). */
  retentionDays: Type.Integer({ minimum: 1, default: 90 }),
  /** Prediction history older than this is deleted (each asset's newest stays in the twin). */
  predictionRetentionDays: Type.Integer({ minimum: 1, default: 365 }),
});
export type CloudDriftConfig = Static<typeof cloudDriftConfigSchema>;
