/**
 * The collector's device-twin service: the local twin store, the IoT Hub twin handler the broker
 * calls, and the cloud desired feed that keeps the store current. Desired state flows
 * cloud → feed → store (durable, with the feed cursor) → connected devices; devices that were away
 * read it from the store with a GET when they connect.
 */
import { join } from 'node:path';
import type { BackoffConfig } from '../../common/backoff.js';
import type { Logger } from '../../common/log.js';
import type { Registry } from '../../common/metrics.js';
import type { SpoolWriter } from '../spool-writer.js';
import { CloudDesiredFeed } from './desired-feed.js';
import { IotHubTwinHandler } from './iothub-twin.js';
import { SqliteTwinStore, type DesiredChange, type DesiredUpdate } from './twin-store.js';

export interface CollectorTwinConfig {
  enabled: boolean;
  /** Defaults to <stateDir>/twin.db. */
  path?: string;
  /** Cloud API serving the desired feed; defaults to `sinks.http.url` when that sink is enabled. */
  cloudUrl?: string;
  /** Site token for the feed; defaults to `sinks.http.token`. */
  cloudToken?: string;
  /** Idle interval between desired-feed polls. */
  desiredPollMs: number;
  feedTimeoutMs: number;
  backoff: BackoffConfig;
  /** Largest reported patch and reported document per device (IoT Hub's limit is 32 KiB). */
  maxDocBytes: number;
}

export const collectorTwinDefaults: CollectorTwinConfig = {
  enabled: true,
  desiredPollMs: 2000,
  feedTimeoutMs: 10_000,
  backoff: { initialMs: 500, maxMs: 30_000 },
  maxDocBytes: 32 * 1024,
};

export const collectorTwinConfigSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    enabled: { type: 'boolean' },
    path: { type: 'string', minLength: 1 },
    cloudUrl: { type: 'string', pattern: '^https?://' },
    cloudToken: { type: 'string' },
    desiredPollMs: { type: 'integer', minimum: 10, maximum: 3_600_000 },
    feedTimeoutMs: { type: 'integer', minimum: 100 },
    backoff: {
      type: 'object',
      additionalProperties: false,
      properties: { initialMs: { type: 'integer', minimum: 1 }, maxMs: { type: 'integer', minimum: 1 } },
    },
    maxDocBytes: { type: 'integer', minimum: 1024, maximum: 1_048_576 },
  },
} as const;

export interface CollectorTwinDeps {
  siteId: string;
  stateDir: string;
  /** The cloud ingest sink's settings, which the feed reuses by default. */
  http: { enabled: boolean; url: string; token?: string | undefined };
  spoolWriter: SpoolWriter;
  log: Logger;
  registry: Registry;
}

export class CollectorTwin {
  readonly store: SqliteTwinStore;
  readonly handler: IotHubTwinHandler;
  readonly feed: CloudDesiredFeed | undefined;

  constructor(cfg: CollectorTwinConfig, deps: CollectorTwinDeps) {
    const log = deps.log.child({ part: 'twin' });
    // FULL: the feed cursor is committed with the documents, and the cloud will not resend them.
    this.store = new SqliteTwinStore({ path: cfg.path ?? join(deps.stateDir, 'twin.db'), synchronous: 'full' }, log);
    this.handler = new IotHubTwinHandler({ store: this.store, spoolWriter: deps.spoolWriter, log, registry: deps.registry, maxDocBytes: cfg.maxDocBytes });
    const url = cfg.cloudUrl ?? (deps.http.enabled ? deps.http.url : undefined);
    if (url) {
      this.feed = new CloudDesiredFeed(
        { url, token: cfg.cloudToken ?? deps.http.token, siteId: deps.siteId, pollMs: cfg.desiredPollMs, timeoutMs: cfg.feedTimeoutMs, backoff: cfg.backoff },
        { log, registry: deps.registry, cursor: () => this.store.feedCursor, apply: (updates, next) => this.applyDesired(updates, next) },
      );
    }
  }

  start(): void {
    this.feed?.start();
  }

  /** Stores full desired documents (with the feed cursor they came with) and pushes the changes to connected devices. */
  applyDesired(updates: readonly DesiredUpdate[], cursor = this.store.feedCursor): DesiredChange[] {
    const changes = this.store.applyDesired(updates, cursor);
    this.handler.pushDesired(changes);
    return changes;
  }

  health(): { ok: boolean; feed: 'ok' | 'failing' | 'off'; cursor: number } {
    const feed = !this.feed ? 'off' : this.feed.healthy ? 'ok' : 'failing';
    // A failing feed is reported but does not make the collector unhealthy: devices keep the last desired state.
    return { ok: true, feed, cursor: this.store.feedCursor };
  }

  async stop(): Promise<void> {
    await this.feed?.stop();
    this.store.close();
  }
}
