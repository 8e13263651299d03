/**
 * The agent's `scoring` section: the scorer's own options (agent/scoring/config.ts), whether
 * scoring runs at all, and how the agent follows model rollouts (desired `model`).
 */
import Type, { type Static } from 'typebox';
import { backoffConfigSchema } from '../../common/backoff.js';
import { configDefaults, Section } from '../../common/config.js';
import { scoringConfigSchema } from '../scoring/config.js';

export const modelRolloutConfigSchema = Section({
  /** Follow desired `model`: fetch that version from the collector and swap to it live. */
  enabled: Type.Boolean({ default: true }),
  /** Downloaded models (`<dir>/<name>/<version>.onnx` + `.json`); defaults to <stateDir>/models. */
  dir: Type.Optional(Type.String({ minLength: 1 })),
  /** Ed25519 public key (SPKI PEM). When set, only models whose manifest entry the registry signed are run. */
  publicKeyFile: Type.Optional(Type.String({ minLength: 1 })),
  /** A model request (entry or one chunk) without a reply by then fails; it is retried with `retry` backoff. */
  requestTimeoutMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 10_000 }),
  /** Larger models are refused before any byte is fetched. */
  maxModelBytes: Type.Integer({ minimum: 1024, default: 256 * 1024 * 1024 }),
  /** A new model's alert rate is judged once it has scored this many readings… */
  minReadings: Type.Integer({ minimum: 1, default: 1000 }),
  /** …and it is kept (its predecessor released) after this many without a rollback. */
  trialReadings: Type.Integer({ minimum: 1, default: 100_000 }),
  /** Roll back when the new model's alerts per 10 000 readings exceed this multiple of the previous model's… */
  alertRateFactor: Type.Number({ minimum: 1, default: 10 }),
  /** …and also exceed this floor (alerts per 10 000 readings), so a quiet predecessor does not make one alert a rollback. */
  alertRateFloorPer10k: Type.Number({ minimum: 0, maximum: 10_000, default: 100 }),
  /** Between attempts after a failed download (collector away, a damaged copy). */
  retry: backoffConfigSchema({ initialMs: 5000, maxMs: 300_000 }),
});
export type ModelRolloutConfig = Static<typeof modelRolloutConfigSchema>;

export const agentScoringConfigSchema = Section({
  ...scoringConfigSchema.properties,
  /** `auto`: on when the model manifest is found (in the working directory, else beside the installed package). */
  enabled: Type.Unsafe<boolean | 'auto'>({ enum: [true, false, 'auto'], default: 'auto' }),
  rollout: modelRolloutConfigSchema,
});
export type AgentScoringConfig = Static<typeof agentScoringConfigSchema>;
export const agentScoringDefaults: AgentScoringConfig = configDefaults(agentScoringConfigSchema);
