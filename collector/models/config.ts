/** The collector's `models` section: its cache of rolled-out models, served to its devices over MQTT. */
import type { BackoffConfig } from '../../common/backoff.js';

export interface CollectorModelsConfig {
  enabled: boolean;
  /** The cache (`<dir>/<name>/<version>.onnx` + `.json`); defaults to <stateDir>/models. */
  dir?: string;
  /** Cloud API holding the model registry; defaults to `twin.cloudUrl`, else `sinks.http.url` when that sink is enabled. */
  cloudUrl?: string;
  /** Token for it (the site's collector token); defaults to `twin.cloudToken`, else `sinks.http.token`. */
  cloudToken?: string;
  /** How often the cloud's promotions for this site are polled, to fetch their models before any device asks. */
  pollMs: number;
  /** HTTP timeout of one cloud request (a whole model file included). */
  timeoutMs: number;
  /** Largest reply to a device's chunk request: the model is sent in pieces so telemetry acknowledgements are not held up behind it. */
  chunkBytes: number;
  /** Larger models are not fetched. */
  maxBytes: number;
  backoff: BackoffConfig;
}

export const collectorModelsDefaults: CollectorModelsConfig = {
  enabled: true,
  pollMs: 30_000,
  timeoutMs: 60_000,
  chunkBytes: 256 * 1024,
  maxBytes: 256 * 1024 * 1024,
  backoff: { initialMs: 1000, maxMs: 60_000 },
};

export const collectorModelsConfigSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    enabled: { type: 'boolean' },
    dir: { type: 'string', minLength: 1 },
    cloudUrl: { type: 'string', pattern: '^https?://' },
    cloudToken: { type: 'string' },
    pollMs: { type: 'integer', minimum: 10, maximum: 86_400_000 },
    timeoutMs: { type: 'integer', minimum: 100 },
    chunkBytes: { type: 'integer', minimum: 1024, maximum: 16 * 1024 * 1024 },
    maxBytes: { type: 'integer', minimum: 1024 },
    backoff: {
      type: 'object',
      additionalProperties: false,
      properties: { initialMs: { type: 'integer', minimum: 1 }, maxMs: { type: 'integer', minimum: 1 } },
    },
  },
} as const;
