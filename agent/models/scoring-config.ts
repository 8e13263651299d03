/**
 * The agent's `scoring` section: the scorer's own options (agent/scoring/config.ts), whether
 * scoring runs at all, and how the agent follows model rollouts (desired `model`).
 */
import type { BackoffConfig } from '../../common/backoff.js';
import { DEFAULT_SCORING, scoringConfigSchema, type ScoringConfig } from '../scoring/config.js';

export interface ModelRolloutConfig {
  /** Follow desired `model`: fetch that version from the collector and swap to it live. */
  enabled: boolean;
  /** Downloaded models (`<dir>/<name>/<version>.onnx` + `.json`); defaults to <stateDir>/models. */
  dir?: string;
  /** Ed25519 public key (SPKI PEM). When set, only models whose manifest entry the registry signed are run. */
  publicKeyFile?: string;
  /** A model request (entry or one chunk) without a reply by then fails; it is retried with `retry` backoff. */
  requestTimeoutMs: number;
  /** Larger models are refused before any byte is fetched. */
  maxModelBytes: number;
  /** A new model's alert rate is judged once it has scored this many readings… */
  minReadings: number;
  /** …and it is kept (its predecessor released) after this many without a rollback. */
  trialReadings: number;
  /** Roll back when the new model's alerts per 10 000 readings exceed this multiple of the previous model's… */
  alertRateFactor: number;
  /** …and also exceed this floor (alerts per 10 000 readings), so a quiet predecessor does not make one alert a rollback. */
  alertRateFloorPer10k: number;
  /** Between attempts after a failed download (collector away, a damaged copy). */
  retry: BackoffConfig;
}

export interface AgentScoringConfig extends ScoringConfig {
  /** `auto`: on when the model manifest is found (in the working directory, else beside the installed package). */
  enabled: boolean | 'auto';
  rollout: ModelRolloutConfig;
}

export const modelRolloutDefaults: ModelRolloutConfig = {
  enabled: true,
  requestTimeoutMs: 10_000,
  maxModelBytes: 256 * 1024 * 1024,
  minReadings: 1000,
  trialReadings: 100_000,
  alertRateFactor: 10,
  alertRateFloorPer10k: 100,
  retry: { initialMs: 5000, maxMs: 300_000 },
};

export const agentScoringDefaults: AgentScoringConfig = { ...DEFAULT_SCORING, enabled: 'auto', rollout: modelRolloutDefaults };

export const agentScoringConfigSchema = {
  ...scoringConfigSchema,
  properties: {
    ...scoringConfigSchema.properties,
    enabled: { enum: [true, false, 'auto'] },
    rollout: {
      type: 'object',
      additionalProperties: false,
      properties: {
        enabled: { type: 'boolean' },
        dir: { type: 'string', minLength: 1 },
        publicKeyFile: { type: 'string', minLength: 1 },
        requestTimeoutMs: { type: 'integer', minimum: 100, maximum: 600_000 },
        maxModelBytes: { type: 'integer', minimum: 1024 },
        minReadings: { type: 'integer', minimum: 1 },
        trialReadings: { type: 'integer', minimum: 1 },
        alertRateFactor: { type: 'number', minimum: 1 },
        alertRateFloorPer10k: { type: 'number', minimum: 0, maximum: 10_000 },
        retry: {
          type: 'object',
          additionalProperties: false,
          properties: { initialMs: { type: 'integer', minimum: 1 }, maxMs: { type: 'integer', minimum: 1 } },
        },
      },
    },
  },
} as const;
