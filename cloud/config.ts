import { join } from 'node:path';
import { deepMerge, loadConfig, type EnvMap } from '../common/config.js';
import { logConfigSchema, type LogConfig } from '../common/log.js';

export interface CloudHttpConfig {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Largest accepted request body (after decompression). */
  bodyLimitBytes: number;
}

export interface CloudIngestConfig {
  /** Bearer tokens collectors present on /v1/ingest; empty = open (loopback demo only). */
  tokens: string[];
}

export interface CloudConfig {
  stateDir: string;
  http: CloudHttpConfig;
  ingest: CloudIngestConfig;
  log: Partial<LogConfig>;
}

export const cloudDefaults: CloudConfig = {
  stateDir: join(process.env['EDGETWIN_HOME'] ?? 'var', 'cloud'),
  http: { host: '127.0.0.1', port: 8480, bodyLimitBytes: 64 * 1024 * 1024 },
  ingest: { tokens: [] },
  log: {},
};

export const cloudConfigSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['stateDir', 'http', 'ingest'],
  properties: {
    stateDir: { type: 'string', minLength: 1 },
    http: {
      type: 'object',
      additionalProperties: false,
      properties: {
        host: { type: 'string', minLength: 1 },
        port: { type: 'integer', minimum: 0, maximum: 65535 },
        bodyLimitBytes: { type: 'integer', minimum: 1024 },
      },
    },
    ingest: {
      type: 'object',
      additionalProperties: false,
      properties: { tokens: { type: 'array', items: { type: 'string', minLength: 16 } } },
    },
    log: logConfigSchema,
  },
} as const;

export const cloudEnv: EnvMap = {
  EDGETWIN_CLOUD_STATE_DIR: 'stateDir',
  EDGETWIN_CLOUD_PORT: 'http.port',
};

export function loadCloudConfig(file?: string, overrides?: unknown, env: NodeJS.ProcessEnv = process.env): CloudConfig {
  // A comma-separated token list does not fit the one-variable-one-key EnvMap; it replaces the file's list.
  const fromEnv = env['EDGETWIN_INGEST_TOKENS'];
  const envTokens = fromEnv ? { ingest: { tokens: fromEnv.split(',').map((t) => t.trim()).filter(Boolean) } } : undefined;
  const merged = envTokens ? deepMerge(overrides ?? {}, envTokens) : overrides;
  return loadConfig<CloudConfig>({ component: 'cloud', schema: cloudConfigSchema, defaults: cloudDefaults, file, overrides: merged, env, envMap: cloudEnv });
}
