/** The collector's `models` section: its cache of rolled-out models, served to its devices over MQTT. */
import Type, { type Static } from 'typebox';
import { backoffConfigSchema } from '../../common/backoff.js';
import { Section } from '../../common/config.js';

export const collectorModelsConfigSchema = Section({
  enabled: Type.Boolean({ default: true }),
  /** The cache (`<dir>/<name>/<version>.onnx` + `.json`); defaults to <stateDir>/models. */
  dir: Type.Optional(Type.String({ minLength: 1 })),
  /** Cloud API holding the model registry; defaults to `twin.cloudUrl`, else `sinks.http.url` when that sink is enabled. */
  cloudUrl: Type.Optional(Type.String({ pattern: '^https?://' })),
  /** Token for it (the site's collector token); defaults to `twin.cloudToken`, else `sinks.http.token`. */
  cloudToken: Type.Optional(Type.String()),
  /** How often the cloud's promotions for this site are polled, to fetch their models before any device asks. */
  pollMs: Type.Integer({ minimum: 10, maximum: 86_400_000, default: 30_000 }),
  /** HTTP timeout of one cloud request (a whole model file included). */
  timeoutMs: Type.Integer({ minimum: 100, default: 60_000 }),
  /** Largest reply to a device's chunk request: the model is sent in pieces so telemetry acknowledgements are not held up behind it. */
  chunkBytes: Type.Integer({ minimum: 1024, maximum: 16 * 1024 * 1024, default: 256 * 1024 }),
  /** Larger models are not fetched. */
  maxBytes: Type.Integer({ minimum: 1024, default: 256 * 1024 * 1024 }),
  backoff: backoffConfigSchema({ initialMs: 1000, maxMs: 60_000 }),
  /** Most versions fetched from the cloud for devices' requests at once; more are answered 429 (the device asks again). Promotions are not limited. */
  deviceFetches: Type.Integer({ minimum: 1, maximum: 64, default: 2 }),
  /** A version the cloud answered 404 for is answered 404 to devices from memory for this long, without asking the cloud. */
  notFoundTtlMs: Type.Integer({ minimum: 0, default: 60_000 }),
});
export type CollectorModelsConfig = Static<typeof collectorModelsConfigSchema>;
