import { join } from 'node:path';
import { deepMerge, loadConfig, type EnvMap } from '../common/config.js';
import { EdgetwinError, ErrorCodes, errorMessage } from '../common/errors.js';
import { logConfigSchema, type LogConfig } from '../common/log.js';
import type { JournalMode } from '../common/sqlite.js';
import { eventHubsConsumerConfigSchema, eventHubsConsumerDefaults, type EventHubsConsumerConfig } from './ingest/event-hubs-config.js';
import { parseBlobUrl } from './lakehouse/blob-client.js';
import { cloudModelsConfigSchema, cloudModelsDefaults, type CloudModelsConfig } from './models/config.js';

export interface CloudHttpConfig {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Largest accepted request body (after decompression). */
  bodyLimitBytes: number;
}

export interface CloudIngestConfig {
  /**
   * Collector tokens from config/env (kept for simple deployments; `edgetwin cloud tokens create
   * --role collector --site S` is the managed way). `site:token` scopes a token to one site; a bare
   * token may ingest for any site.
   */
  tokens: string[];
  /** Batch ids are remembered this long; after that a replay is still caught by reading identity. */
  batchIdRetentionDays: number;
}

export interface CloudAuthConfig {
  /** Role of requests without a token once tokens exist: `none` refuses them (401). */
  anonymousRole: 'none' | 'viewer';
  /** While no token exists at all, a loopback-only cloud serves every request as admin (first start, tests). */
  openWhenNoTokens: boolean;
}

export interface QualityRange {
  min?: number;
  max?: number;
}

export interface CloudQualityConfig {
  /** Readings sampled before this instant (ISO 8601) are quarantined: a device clock that was never set. */
  notBefore: string;
  /** … or older than this relative to receipt (0 = no limit; replays of old data are normal). */
  maxPastMs: number;
  /** … or newer than this (clock skew allowance). */
  maxFutureMs: number;
  /** Per metric: values outside [min, max] are quarantined. */
  ranges: Record<string, QualityRange>;
}

export interface LakehouseConfig {
  /** Local directory of the lakehouse; default `<stateDir>/lakehouse` — env EDGETWIN_LAKEHOUSE_ROOT. */
  root: string;
  /**
   * Azure Blob / ADLS Gen2 copy of the lakehouse (docs/lakehouse.md): `https://<acct>.blob.core.windows.net/<container>[/<prefix>]`,
   * `abfss://<fs>@<acct>.dfs.core.windows.net[/<prefix>]` or a path-style URL; the local root stays the working copy.
   * Env EDGETWIN_LAKEHOUSE_URL. A SAS in its query is a secret (never logged).
   */
  url?: string;
  /** Credential for `url` when it carries no SAS and managed identity is not used — env EDGETWIN_LAKEHOUSE_BLOB_CONNECTION_STRING. */
  blobConnectionString?: string;
  /** Full sync with the container this often (also picks up `edgetwin cloud compact` runs); 0 = only after flushes and maintenance. */
  blobSyncIntervalMs: number;
  /** Longest a landed batch waits before it is written to Parquet. */
  flushIntervalMs: number;
  /** Flush early once this many staged bytes wait. */
  flushMaxBytes: number;
  /** Staged bytes kept in memory for the writer; beyond this it re-reads them from SQLite. */
  memoryMaxBytes: number;
  /** Ingest answers 503 (collectors retry) while this many bytes wait to be written. */
  maxStagedBytes: number;
  duckdbThreads: number;
  duckdbMemoryLimitMb: number;
  compaction: { intervalMs: number; minFiles: number; targetFileBytes: number };
  retention: { intervalMs: number; bronzeDays: number; silverDays: number; quarantineDays: number; goldDays: number };
}

export interface CloudTwinsConfig {
  /** A twin not heard from for this long is `stale`, and `offline` after offlineAfterMs. */
  staleAfterMs: number;
  offlineAfterMs: number;
  /** Largest desired patch / document (IoT Hub's limit is 32 KiB). */
  desiredMaxBytes: number;
}

export interface CloudDbConfig {
  /**
   * Journal of every SQLite file the cloud opens (`twins.db`, `eventhubs-checkpoints.db`): `wal`, or
   * `delete` when `stateDir` is on a network share (Azure Files/SMB), where WAL's shared memory does
   * not work — env EDGETWIN_DB_JOURNAL_MODE. `delete` always syncs every commit in full.
   */
  journalMode: JournalMode;
}

export interface CloudConfig {
  stateDir: string;
  db: CloudDbConfig;
  http: CloudHttpConfig;
  ingest: CloudIngestConfig;
  auth: CloudAuthConfig;
  quality: CloudQualityConfig;
  lakehouse: LakehouseConfig;
  twins: CloudTwinsConfig;
  eventHubs: EventHubsConsumerConfig;
  /** Model registry (`/v1/models`, cloud/models/). */
  models: CloudModelsConfig;
  log: Partial<LogConfig>;
}

export const cloudDefaults: CloudConfig = {
  stateDir: join(process.env['EDGETWIN_HOME'] ?? 'var', 'cloud'),
  db: { journalMode: 'wal' },
  http: { host: '127.0.0.1', port: 8480, bodyLimitBytes: 64 * 1024 * 1024 },
  ingest: { tokens: [], batchIdRetentionDays: 7 },
  auth: { anonymousRole: 'none', openWhenNoTokens: true },
  quality: { notBefore: '2000-01-01T00:00:00Z', maxPastMs: 0, maxFutureMs: 5 * 60_000, ranges: {} },
  lakehouse: {
    root: '',
    blobSyncIntervalMs: 60_000,
    flushIntervalMs: 1000,
    flushMaxBytes: 64 * 1024 * 1024,
    memoryMaxBytes: 256 * 1024 * 1024,
    maxStagedBytes: 2 * 1024 * 1024 * 1024,
    duckdbThreads: 2,
    duckdbMemoryLimitMb: 1024,
    compaction: { intervalMs: 10 * 60_000, minFiles: 8, targetFileBytes: 128 * 1024 * 1024 },
    retention: { intervalMs: 60 * 60_000, bronzeDays: 30, silverDays: 365, quarantineDays: 90, goldDays: 0 },
  },
  twins: { staleAfterMs: 60_000, offlineAfterMs: 300_000, desiredMaxBytes: 32 * 1024 },
  eventHubs: eventHubsConsumerDefaults,
  models: cloudModelsDefaults,
  log: {},
};

const int = (minimum: number) => ({ type: 'integer', minimum });

export const cloudConfigSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['stateDir', 'http', 'ingest'],
  properties: {
    stateDir: { type: 'string', minLength: 1 },
    db: { type: 'object', additionalProperties: false, properties: { journalMode: { enum: ['wal', 'delete'] } } },
    http: {
      type: 'object',
      additionalProperties: false,
      properties: {
        host: { type: 'string', minLength: 1 },
        port: { type: 'integer', minimum: 0, maximum: 65535 },
        bodyLimitBytes: int(1024),
      },
    },
    ingest: {
      type: 'object',
      additionalProperties: false,
      properties: {
        tokens: { type: 'array', items: { type: 'string', pattern: '^([A-Za-z0-9._-]{1,64}:)?[^:]{16,}$' } },
        batchIdRetentionDays: int(1),
      },
    },
    auth: {
      type: 'object',
      additionalProperties: false,
      properties: { anonymousRole: { enum: ['none', 'viewer'] }, openWhenNoTokens: { type: 'boolean' } },
    },
    quality: {
      type: 'object',
      additionalProperties: false,
      properties: {
        notBefore: { type: 'string', minLength: 10 },
        maxPastMs: int(0),
        maxFutureMs: int(0),
        ranges: {
          type: 'object',
          additionalProperties: {
            type: 'object',
            additionalProperties: false,
            properties: { min: { type: 'number' }, max: { type: 'number' } },
          },
        },
      },
    },
    lakehouse: {
      type: 'object',
      additionalProperties: false,
      properties: {
        root: { type: 'string' },
        url: { type: 'string', pattern: '^(https?|abfss?)://' },
        blobConnectionString: { type: 'string', minLength: 1 },
        blobSyncIntervalMs: int(0),
        flushIntervalMs: int(10),
        flushMaxBytes: int(1024),
        memoryMaxBytes: int(0),
        maxStagedBytes: int(1024 * 1024),
        duckdbThreads: { type: 'integer', minimum: 1, maximum: 64 },
        duckdbMemoryLimitMb: int(64),
        compaction: {
          type: 'object',
          additionalProperties: false,
          properties: { intervalMs: int(0), minFiles: int(2), targetFileBytes: int(1024) },
        },
        retention: {
          type: 'object',
          additionalProperties: false,
          properties: { intervalMs: int(0), bronzeDays: int(0), silverDays: int(0), quarantineDays: int(0), goldDays: int(0) },
        },
      },
    },
    twins: {
      type: 'object',
      additionalProperties: false,
      properties: { staleAfterMs: int(1000), offlineAfterMs: int(1000), desiredMaxBytes: int(64) },
    },
    eventHubs: eventHubsConsumerConfigSchema,
    models: cloudModelsConfigSchema,
    log: logConfigSchema,
  },
} as const;

export const cloudEnv: EnvMap = {
  EDGETWIN_CLOUD_STATE_DIR: 'stateDir',
  EDGETWIN_DB_JOURNAL_MODE: 'db.journalMode',
  EDGETWIN_CLOUD_HOST: 'http.host',
  EDGETWIN_CLOUD_PORT: 'http.port',
  EDGETWIN_LAKEHOUSE_ROOT: 'lakehouse.root',
  EDGETWIN_LAKEHOUSE_URL: 'lakehouse.url',
  EDGETWIN_LAKEHOUSE_BLOB_CONNECTION_STRING: 'lakehouse.blobConnectionString',
  EDGETWIN_EVENTHUBS_ENABLED: 'eventHubs.enabled',
  EDGETWIN_EVENTHUBS_CONNECTION_STRING: 'eventHubs.connectionString',
  // The names the Terraform (deploy/azure/terraform) sets on the Container App.
  EDGETWIN_EVENTHUB_NAMESPACE: 'eventHubs.fullyQualifiedNamespace',
  EDGETWIN_EVENTHUB_NAME: 'eventHubs.eventHubName',
  EDGETWIN_EVENTHUB_CONSUMER_GROUP: 'eventHubs.consumerGroup',
  EDGETWIN_CHECKPOINT_STORE: 'eventHubs.checkpoint.store',
  EDGETWIN_CHECKPOINT_CONTAINER_URL: 'eventHubs.checkpoint.containerUrl',
  EDGETWIN_CHECKPOINT_BLOB_CONNECTION_STRING: 'eventHubs.checkpoint.blobConnectionString',
  EDGETWIN_MODEL_SIGNING_KEY_FILE: 'models.signingKeyFile',
};

/** Where the lakehouse lives once defaults are applied. */
export function lakehouseRoot(cfg: Pick<CloudConfig, 'stateDir' | 'lakehouse'>): string {
  return cfg.lakehouse.root || join(cfg.stateDir, 'lakehouse');
}

export function loadCloudConfig(file?: string, overrides?: unknown, env: NodeJS.ProcessEnv = process.env): CloudConfig {
  // A comma-separated token list does not fit the one-variable-one-key EnvMap; it replaces the file's list.
  const fromEnv = env['EDGETWIN_INGEST_TOKENS'];
  const envTokens = fromEnv ? { ingest: { tokens: fromEnv.split(',').map((t) => t.trim()).filter(Boolean) } } : undefined;
  const merged = envTokens ? deepMerge(overrides ?? {}, envTokens) : overrides;
  const cfg = loadConfig<CloudConfig>({ component: 'cloud', schema: cloudConfigSchema, defaults: cloudDefaults, file, overrides: merged, env, envMap: cloudEnv });
  const fail = (key: string, msg: string): EdgetwinError => new EdgetwinError(ErrorCodes.CONFIG, `cloud config: key "${key}" ${msg}`, { details: { key } });
  if (!Number.isFinite(Date.parse(cfg.quality.notBefore))) throw fail('quality.notBefore', 'must be an ISO 8601 instant');
  if (cfg.twins.offlineAfterMs < cfg.twins.staleAfterMs) throw fail('twins.offlineAfterMs', 'must be >= twins.staleAfterMs');
  for (const [metric, r] of Object.entries(cfg.quality.ranges)) {
    if (r.min !== undefined && r.max !== undefined && r.min > r.max) throw fail(`quality.ranges.${metric}`, 'has min > max');
  }
  checkEventHubsConfig(cfg.eventHubs, fail);
  if (cfg.lakehouse.url) {
    try {
      parseBlobUrl(cfg.lakehouse.url);
    } catch (err) {
      throw fail('lakehouse.url', errorMessage(err));
    }
  } else if (cfg.lakehouse.blobConnectionString) {
    throw fail('lakehouse.blobConnectionString', 'needs lakehouse.url (the container and prefix to mirror to)');
  }
  return cfg;
}

function checkEventHubsConfig(c: EventHubsConsumerConfig, fail: (key: string, msg: string) => EdgetwinError): void {
  if (!c.enabled) return;
  if (!c.connectionString && !c.fullyQualifiedNamespace) throw fail('eventHubs.connectionString', 'or eventHubs.fullyQualifiedNamespace is required when eventHubs.enabled');
  if (c.connectionString && c.fullyQualifiedNamespace) throw fail('eventHubs.fullyQualifiedNamespace', 'cannot be set together with connectionString');
  if (!c.eventHubName && !(c.connectionString && /;EntityPath=[^;]+/.test(c.connectionString))) {
    throw fail('eventHubs.eventHubName', 'is required when the connection string has no EntityPath');
  }
  const cp = c.checkpoint;
  if (cp.store !== 'blob') return;
  const where = [cp.blobConnectionString && 'blobConnectionString', cp.blobAccountUrl && 'blobAccountUrl', cp.containerUrl && 'containerUrl'].filter(Boolean);
  if (where.length === 0) throw fail('eventHubs.checkpoint.blobConnectionString', 'or eventHubs.checkpoint.blobAccountUrl or eventHubs.checkpoint.containerUrl is required with checkpoint.store "blob"');
  if (where.length > 1) throw fail(`eventHubs.checkpoint.${where[1]}`, `cannot be set together with ${where[0]}`);
  if (cp.containerUrl) {
    try {
      if (parseBlobUrl(cp.containerUrl).prefix) throw new Error('must name the container only, without a folder');
    } catch (err) {
      throw fail('eventHubs.checkpoint.containerUrl', errorMessage(err));
    }
  }
}
