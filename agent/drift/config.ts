/**
 * The agent's `drift` section: histograms of every running model's inputs, errors and outputs,
 * sent once per interval (agent/drift/drift-recorder.ts, docs/drift.md).
 */
import Type, { type Static } from 'typebox';
import { configDefaults, Section } from '../../common/config.js';

export const driftConfigSchema = Section({
  enabled: Type.Boolean({ default: true }),
  /** One histogram per (model version, stream, quantity) is sent at the end of each interval (aligned to multiples of it). */
  intervalMs: Type.Integer({ minimum: 1000, maximum: 86_400_000, default: 3_600_000 }),
  /** Histograms kept at most per interval (about 0.5 KiB each); values of further streams are not counted (logged once, counted). */
  maxHistograms: Type.Integer({ minimum: 1, default: 10_000 }),
});
export type DriftConfig = Static<typeof driftConfigSchema>;
export const driftDefaults: DriftConfig = configDefaults(driftConfigSchema);
