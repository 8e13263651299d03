import { join } from 'node:path';
import Type, { type Static } from 'typebox';
import { configKeyError, deepMerge, loadConfig, Section, type EnvMap } from '../common/config.js';
import { errorMessage, type EdgetwinError } from '../common/errors.js';
import { checkEventHubsConnection } from '../common/event-hubs-config.js';
import { logConfigSchema } from '../common/log.js';
import { checkAlertsConfig } from './alerts/alerting.js';
import { alertsConfigSchema } from './alerts/config.js';
import { rateLimitConfigSchema } from './api/rate-limit.js';
import { auditExportConfigSchema } from './audit/export.js';
import { checkOidcConfig, oidcConfigSchema } from './auth/oidc.js';
import { eventHubsConsumerConfigSchema, type EventHubsConsumerConfig } from './ingest/event-hubs-config.js';
import { parseBlobUrl } from './lakehouse/blob-client.js';
import { cloudModelsConfigSchema } from './models/config.js';
import { cloudC2dConfigSchema } from './c2d/config.js';
import { cloudDriftConfigSchema } from './drift/config.js';
import { cloudStoreConfigSchema, cloudStoreEnv } from './store/config.js';
import { deviceLimitsSchema } from '../common/wire/limits.js';
import { parseTimestamp } from '../common/wire/storable.js';

const int = (minimum: number, dflt: number) => Type.Integer({ minimum, default: dflt });

const cloudHttpConfigSchema = Section({
  host: Type.String({ minLength: 1, default: '127.0.0.1' }),
  /** 0 picks a free port. */
  port: Type.Integer({ minimum: 0, maximum: 65535, default: 8480 }),
  /** Largest accepted request body (after decompression). */
  bodyLimitBytes: int(1024, 64 * 1024 * 1024),
});
export type CloudHttpConfig = Static<typeof cloudHttpConfigSchema>;

const cloudIngestConfigSchema = Section({
  /**
   * Collector tokens from config/env (kept for simple deployments; `edgetwin cloud tokens create
   * --role collector --site S` is the managed way). `site:token` scopes a token to one site; a bare
   * token may ingest for any site.
   */
  tokens: Type.Array(Type.String({ pattern: '^((?!\\.{1,2}:)[A-Za-z0-9._-]{1,64}:)?[^:]{16,}$' }), { default: [] }),
  /** Batch ids are remembered this long; after that a replay is still caught by reading identity. */
  batchIdRetentionDays: int(1, 7),
});
export type CloudIngestConfig = Static<typeof cloudIngestConfigSchema>;

const cloudAuthConfigSchema = Section({
  /** Role of requests without a token once tokens exist: `none` refuses them (401). */
  anonymousRole: Type.Enum(['none', 'viewer'], { default: 'none' }),
  /** While no token exists at all, a loopback-only cloud serves every request as admin (first start, tests). */
  openWhenNoTokens: Type.Boolean({ default: true }),
  /** Sign-in with OIDC bearer tokens (Entra ID or any issuer) beside the static tokens (cloud/auth/oidc.ts). */
  oidc: oidcConfigSchema,
});
export type CloudAuthConfig = Static<typeof cloudAuthConfigSchema>;

const qualityRangeSchema = Section({ min: Type.Optional(Type.Number()), max: Type.Optional(Type.Number()) });
export type QualityRange = Static<typeof qualityRangeSchema>;

const cloudQualityConfigSchema = Section({
  /** Readings sampled before this instant (ISO 8601) are quarantined: a device clock that was never set. */
  notBefore: Type.String({ minLength: 10, default: '2000-01-01T00:00:00Z' }),
  /** … or older than this relative to receipt (0 = no limit; replays of old data are normal). */
  maxPastMs: int(0, 0),
  /** … or newer than this (clock skew allowance). */
  maxFutureMs: int(0, 5 * 60_000),
  /** Per metric: values outside [min, max] are quarantined. */
  ranges: Type.Record(Type.String(), qualityRangeSchema, { default: {} }),
});
export type CloudQualityConfig = Static<typeof cloudQualityConfigSchema>;

const lakehouseConfigSchema = Section({
  /** Local directory of the lakehouse; default `<stateDir>/lakehouse` — env EDGETWIN_LAKEHOUSE_ROOT. */
  root: Type.String({ default: '' }),
  /**
   * Azure Blob / ADLS Gen2 copy of the lakehouse (docs/lakehouse.md): `https://<acct>.blob.core.windows.net/<container>[/<prefix>]`,
   * `abfss://<fs>@<acct>.dfs.core.windows.net[/<prefix>]` or a path-style URL; the local root stays the working copy.
   * Env EDGETWIN_LAKEHOUSE_URL. A SAS in its query is a secret (never logged).
   */
  url: Type.Optional(Type.String({ pattern: '^(https?|abfss?)://' })),
  /** Credential for `url` when it carries no SAS and managed identity is not used — env EDGETWIN_LAKEHOUSE_BLOB_CONNECTION_STRING. */
  blobConnectionString: Type.Optional(Type.String({ minLength: 1 })),
  /** Full sync with the container this often (also picks up `edgetwin cloud compact` runs); 0 = only after flushes and maintenance. */
  blobSyncIntervalMs: int(0, 60_000),
  /** Longest a landed batch waits before it is written to Parquet. */
  flushIntervalMs: int(10, 1000),
  /** Flush early once this many staged bytes wait. */
  flushMaxBytes: int(1024, 64 * 1024 * 1024),
  /** Staged bytes kept in memory for the writer; beyond this it re-reads them from SQLite. */
  memoryMaxBytes: int(0, 256 * 1024 * 1024),
  /** Ingest answers 503 (collectors retry) while this many bytes wait to be written. */
  maxStagedBytes: int(1024 * 1024, 2 * 1024 * 1024 * 1024),
  duckdbThreads: Type.Integer({ minimum: 1, maximum: 64, default: 2 }),
  duckdbMemoryLimitMb: int(64, 1024),
  compaction: Section({ intervalMs: int(0, 10 * 60_000), minFiles: int(2, 8), targetFileBytes: int(1024, 128 * 1024 * 1024) }),
  retention: Section({
    intervalMs: int(0, 60 * 60_000),
    bronzeDays: int(0, 30),
    silverDays: int(0, 365),
    quarantineDays: int(0, 90),
    goldDays: int(0, 0),
  }),
});
export type LakehouseConfig = Static<typeof lakehouseConfigSchema>;

const cloudTwinsConfigSchema = Section({
  /** A twin not heard from for this long is `stale`, and `offline` after offlineAfterMs. */
  staleAfterMs: int(1000, 60_000),
  offlineAfterMs: int(1000, 300_000),
  /** Largest desired patch / document (IoT Hub's limit is 32 KiB). */
  desiredMaxBytes: int(64, 32 * 1024),
  /**
   * Largest reported-properties document of a twin, and so of one patch (IoT Hub: 32 KiB); a message
   * whose patch, or the document it would make, is larger is refused, EDGETWIN_ERR_LIMIT_EXCEEDED.
   */
  reportedMaxBytes: int(64, 32 * 1024),
  /** Largest tags document of a twin (IoT Hub: 16 KiB); a tags patch that would make it larger is refused, EDGETWIN_ERR_LIMIT_EXCEEDED. */
  tagsMaxBytes: int(64, 16 * 1024),
  /** A page of `GET /v1/twins` ends once its twins hold about this many bytes (at least one twin a page): no response of megabytes. */
  listPageMaxBytes: int(64 * 1024, 2 * 1024 * 1024),
});
export type CloudTwinsConfig = Static<typeof cloudTwinsConfigSchema>;

const cloudDbConfigSchema = Section({
  /**
   * Journal of every SQLite file the cloud opens (`twins.db`, `eventhubs-checkpoints.db`): `wal`, or
   * `delete` when `stateDir` is on a network share (Azure Files/SMB), where WAL's shared memory does
   * not work — env EDGETWIN_DB_JOURNAL_MODE. `delete` always syncs every commit in full.
   */
  journalMode: Type.Enum(['wal', 'delete'], { default: 'wal' }),
});
export type CloudDbConfig = Static<typeof cloudDbConfigSchema>;

/** The cloud's whole config: each section's schema lives beside the code it configures, or here. */
export const cloudConfigSchema = Section({
  stateDir: Type.String({ minLength: 1, default: join(process.env['EDGETWIN_HOME'] ?? 'var', 'cloud') }),
  db: cloudDbConfigSchema,
  http: cloudHttpConfigSchema,
  ingest: cloudIngestConfigSchema,
  auth: cloudAuthConfigSchema,
  /** HTTP rate limits: per principal, and ingest per site (cloud/api/rate-limit.ts). */
  rateLimit: rateLimitConfigSchema,
  /** Alert rules, destinations and delivery (cloud/alerts/). */
  alerts: alertsConfigSchema,
  /** The audit trail's hash-chained export and its immutable copy (cloud/audit/export.ts). */
  audit: Section({ export: auditExportConfigSchema }),
  quality: cloudQualityConfigSchema,
  lakehouse: lakehouseConfigSchema,
  twins: cloudTwinsConfigSchema,
  /** Metric names per device (common/wire/limits.ts): readings of names beyond it are quarantined (reason `limit`). */
  limits: deviceLimitsSchema,
  eventHubs: eventHubsConsumerConfigSchema,
  /** Where the cloud's state lives: SQLite (default) or PostgreSQL for several replicas (cloud/store/). */
  store: cloudStoreConfigSchema,
  /** Model registry (`/v1/models`, cloud/models/). */
  models: cloudModelsConfigSchema,
  /** Cloud to device: direct methods, device-bound messages, the collectors' push channels (cloud/c2d/). */
  c2d: cloudC2dConfigSchema,
  /** Drift of every model from the agents' histograms, and prediction history retention (cloud/drift/, docs/drift.md). */
  drift: cloudDriftConfigSchema,
  log: logConfigSchema,
});
export type CloudConfig = Static<typeof cloudConfigSchema>;

export const cloudEnv: EnvMap = {
  EDGETWIN_CLOUD_STATE_DIR: 'stateDir',
  EDGETWIN_DB_JOURNAL_MODE: 'db.journalMode',
  EDGETWIN_CLOUD_HOST: 'http.host',
  EDGETWIN_CLOUD_PORT: 'http.port',
  EDGETWIN_LAKEHOUSE_ROOT: 'lakehouse.root',
  EDGETWIN_LAKEHOUSE_URL: 'lakehouse.url',
  EDGETWIN_LAKEHOUSE_BLOB_CONNECTION_STRING: 'lakehouse.blobConnectionString',
  ...cloudStoreEnv,
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
  EDGETWIN_AUDIT_BLOB_URL: 'audit.export.blobUrl',
  EDGETWIN_AUDIT_BLOB_CONNECTION_STRING: 'audit.export.blobConnectionString',
};

/** Where the lakehouse lives once defaults are applied. */
export function lakehouseRoot(cfg: Pick<CloudConfig, 'stateDir' | 'lakehouse'>): string {
  return cfg.lakehouse.root || join(cfg.stateDir, 'lakehouse');
}

export function loadCloudConfig(file?: string, overrides?: unknown, env: NodeJS.ProcessEnv = process.env): CloudConfig {
  // A comma-separated token list does not fit the one-variable-one-key EnvMap; it replaces the file's list.
  const fromEnv = env['EDGETWIN_INGEST_TOKENS'];
  const envTokens = fromEnv
    ? {
        ingest: {
          tokens: fromEnv
            .split(',')
            .map((t) => t.trim())
            .filter(Boolean),
        },
      }
    : undefined;
  const merged = envTokens ? deepMerge(overrides ?? {}, envTokens) : overrides;
  const cfg = loadConfig({ component: 'cloud', schema: cloudConfigSchema, file, overrides: merged, env, envMap: cloudEnv });
  const fail = (key: string, msg: string): EdgetwinError => configKeyError('cloud', key, msg);
  if (!Number.isFinite(parseTimestamp(cfg.quality.notBefore))) throw fail('quality.notBefore', 'must be an ISO 8601 instant');
  if (cfg.twins.offlineAfterMs < cfg.twins.staleAfterMs) throw fail('twins.offlineAfterMs', 'must be >= twins.staleAfterMs');
  for (const [metric, r] of Object.entries(cfg.quality.ranges)) {
    if (r.min !== undefined && r.max !== undefined && r.min > r.max) throw fail(`quality.ranges.${metric}`, 'has min > max');
  }
  checkEventHubsConfig(cfg.eventHubs, fail);
  if (cfg.store.kind === 'postgres') {
    if (!cfg.store.url) throw fail('store.url', 'is required with store.kind "postgres"');
    // Replicas share partitions through the checkpoint store: a local SQLite file cannot be shared.
    if (cfg.eventHubs.enabled && cfg.eventHubs.checkpoint.store !== 'blob')
      throw fail('eventHubs.checkpoint.store', 'must be "blob" with store.kind "postgres" (replicas share partition ownership through it)');
  }
  checkOidcConfig(cfg.auth.oidc, fail);
  checkAlertsConfig(cfg.alerts, fail);
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
  checkEventHubsConnection(c, 'eventHubs', fail);
  const cp = c.checkpoint;
  if (cp.store !== 'blob') return;
  const where = [
    cp.blobConnectionString && 'blobConnectionString',
    cp.blobAccountUrl && 'blobAccountUrl',
    cp.containerUrl && 'containerUrl',
  ].filter(Boolean);
  if (where.length === 0)
    throw fail(
      'eventHubs.checkpoint.blobConnectionString',
      'or eventHubs.checkpoint.blobAccountUrl or eventHubs.checkpoint.containerUrl is required with checkpoint.store "blob"',
    );
  if (where.length > 1) throw fail(`eventHubs.checkpoint.${where[1]}`, `cannot be set together with ${where[0]}`);
  if (cp.containerUrl) {
    try {
      if (parseBlobUrl(cp.containerUrl).prefix) throw new Error('must name the container only, without a folder');
    } catch (err) {
      throw fail('eventHubs.checkpoint.containerUrl', errorMessage(err));
    }
  }
}
