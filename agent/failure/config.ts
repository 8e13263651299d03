/**
 * The agent's `failure` section: the failure (remaining-useful-life) model it runs on its assets
 * (agent/assets/), the alert threshold, and how it follows rollouts of that model (desired
 * `failureModel`, the same machinery as the anomaly model's `model`).
 */
import Type, { type Static } from 'typebox';
import { configDefaults, Section } from '../../common/config.js';
import { modelRolloutConfigSchema } from '../rollout/config.js';
import type { Manifest } from '../../common/models/manifest.js';
import type { AssetsConfig } from '../assets/config.js';

export const failureConfigSchema = Section({
  /** `auto`: on when the manifest has a failure model and assets are configured (listed or discovered). */
  enabled: Type.Unsafe<boolean | 'auto'>({ enum: [true, false, 'auto'], default: 'auto' }),
  /** Path of the model manifest (models/manifest.json); a relative path is also looked up beside the installed package. */
  manifestFile: Type.String({ minLength: 1, default: 'models/manifest.json' }),
  /** Failure model entry to run; empty: the manifest's first failure model. */
  modelName: Type.String({ default: '' }),
  /**
   * A prediction below this many steps is an alert (priority lane); absent: the model's `thresholds.alertBelow`.
   * Optional rather than `number | null`: the config validator coerces types, and would read null as 0 (never alert).
   */
  alertBelow: Type.Optional(Type.Number({ minimum: 0 })),
  /** Windows per inference call; more completed steps in one batch are split. */
  maxBatchWindows: Type.Integer({ minimum: 1, maximum: 65_536, default: 256 }),
  /** onnxruntime intra-op threads. */
  threads: Type.Integer({ minimum: 1, default: 1 }),
  /** As scoring.rollout, judged on predictions (one per completed step) instead of scored readings. */
  rollout: Section({
    ...modelRolloutConfigSchema.properties,
    minReadings: Type.Integer({ minimum: 1, default: 200 }),
    trialReadings: Type.Integer({ minimum: 1, default: 5000 }),
  }),
});
export type FailureConfig = Static<typeof failureConfigSchema>;
export const failureDefaults: FailureConfig = configDefaults(failureConfigSchema);

/** Whether the manifest holds a failure model and assets are configured (what `failure.enabled: auto` needs). */
export function failureReady(manifest: Manifest, assets: AssetsConfig): boolean {
  return manifest.models.some((m) => m.kind === 'failure') && (assets.list.length > 0 || assets.discover !== undefined);
}
