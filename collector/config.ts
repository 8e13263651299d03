import { join } from 'node:path';
import { adminHttpConfigSchema, type AdminHttpConfig } from '../common/admin-http.js';
import type { BackoffConfig } from '../common/backoff.js';
import { loadConfig, type EnvMap } from '../common/config.js';
import { logConfigSchema, type LogConfig } from '../common/log.js';
import type { SynchronousMode } from '../common/sqlite.js';
import type { WhenFull } from '../common/outbox.js';
import { httpIngestSinkConfigSchema, httpIngestSinkDefaults, type HttpIngestSinkConfig } from './sinks/http-ingest.js';

export interface MqttListenerConfig {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Largest accepted PUBLISH payload. */
  maxPayloadBytes: number;
}

export interface SpoolConfig {
  /** Defaults to <stateDir>/spool.db. */
  path?: string;
  maxBytes: number;
  /** `block`: when full, PUBACKs wait until sinks drain (back-pressure); nothing is dropped. */
  whenFull: WhenFull;
  synchronous: SynchronousMode;
  /** Group commit: accepted publishes wait at most this long for their shared fsync. */
  commitIntervalMs: number;
  commitMaxMessages: number;
}

export interface RunnerConfig {
  batchMaxMessages: number;
  batchMaxBytes: number;
  /** A partial batch is sent after this long. */
  flushIntervalMs: number;
  backoff: BackoffConfig;
}

export interface CollectorConfig {
  siteId: string;
  stateDir: string;
  mqtt: MqttListenerConfig;
  spool: SpoolConfig;
  runner: RunnerConfig;
  sinks: { http: HttpIngestSinkConfig };
  admin: AdminHttpConfig;
  log: Partial<LogConfig>;
}

export const collectorDefaults: CollectorConfig = {
  siteId: 'site-1',
  stateDir: join(process.env['EDGETWIN_HOME'] ?? 'var', 'collector'),
  mqtt: { host: '127.0.0.1', port: 1883, maxPayloadBytes: 1024 * 1024 },
  spool: {
    maxBytes: 1024 * 1024 * 1024,
    whenFull: 'block',
    // A PUBACK promises the message is on disk: every commit is fsynced.
    synchronous: 'full',
    commitIntervalMs: 2,
    commitMaxMessages: 1000,
  },
  runner: { batchMaxMessages: 500, batchMaxBytes: 4 * 1024 * 1024, flushIntervalMs: 50, backoff: { initialMs: 200, maxMs: 15_000 } },
  sinks: { http: httpIngestSinkDefaults },
  admin: { enabled: true, host: '127.0.0.1', port: 0 },
  log: {},
};

const backoffSchema = {
  type: 'object',
  additionalProperties: false,
  properties: { initialMs: { type: 'integer', minimum: 1 }, maxMs: { type: 'integer', minimum: 1 } },
} as const;

export const collectorConfigSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['siteId', 'stateDir', 'mqtt', 'spool', 'runner', 'sinks', 'admin'],
  properties: {
    siteId: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' },
    stateDir: { type: 'string', minLength: 1 },
    mqtt: {
      type: 'object',
      additionalProperties: false,
      properties: {
        host: { type: 'string', minLength: 1 },
        port: { type: 'integer', minimum: 0, maximum: 65535 },
        maxPayloadBytes: { type: 'integer', minimum: 1024, maximum: 268435455 },
      },
    },
    spool: {
      type: 'object',
      additionalProperties: false,
      properties: {
        path: { type: 'string', minLength: 1 },
        maxBytes: { type: 'integer', minimum: 65536 },
        whenFull: { enum: ['drop_oldest', 'block'] },
        synchronous: { enum: ['full', 'normal'] },
        commitIntervalMs: { type: 'integer', minimum: 0, maximum: 1000 },
        commitMaxMessages: { type: 'integer', minimum: 1 },
      },
    },
    runner: {
      type: 'object',
      additionalProperties: false,
      properties: {
        batchMaxMessages: { type: 'integer', minimum: 1 },
        batchMaxBytes: { type: 'integer', minimum: 1024 },
        flushIntervalMs: { type: 'integer', minimum: 0 },
        backoff: backoffSchema,
      },
    },
    sinks: { type: 'object', additionalProperties: false, properties: { http: httpIngestSinkConfigSchema } },
    admin: adminHttpConfigSchema,
    log: logConfigSchema,
  },
} as const;

export const collectorEnv: EnvMap = {
  EDGETWIN_SITE_ID: 'siteId',
  EDGETWIN_COLLECTOR_STATE_DIR: 'stateDir',
  EDGETWIN_CLOUD_URL: 'sinks.http.url',
  EDGETWIN_CLOUD_TOKEN: 'sinks.http.token',
};

export function loadCollectorConfig(file?: string, overrides?: unknown, env: NodeJS.ProcessEnv = process.env): CollectorConfig {
  return loadConfig<CollectorConfig>({ component: 'collector', schema: collectorConfigSchema, defaults: collectorDefaults, file, overrides, env, envMap: collectorEnv });
}
