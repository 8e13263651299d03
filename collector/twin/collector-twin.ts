/**
 * The collector's device-twin service: the local twin store, the IoT Hub twin handler the broker
 * calls, and the cloud desired feed that keeps the store current. Desired state flows
 * cloud → feed → store (durable, with the feed cursor) → connected devices; devices that were away
 * read it from the store with a GET when they connect.
 */
import { join } from 'node:path';
import Type, { type Static } from 'typebox';
import { backoffConfigSchema } from '../../common/backoff.js';
import { Section } from '../../common/config.js';
import type { Logger } from '../../common/log.js';
import type { Registry } from '../../common/metrics.js';
import type { CloudClient } from '../cloud/cloud-client.js';
import type { SpoolWriter } from '../spool/spool-writer.js';
import { CloudDesiredFeed } from './desired-feed.js';
import { IotHubTwinHandler } from './iothub-twin.js';
import { SqliteTwinStore, type DesiredChange, type DesiredUpdate } from './twin-docs-store.js';

export const collectorTwinConfigSchema = Section({
  enabled: Type.Boolean({ default: true }),
  /** Defaults to <stateDir>/twin.db. */
  path: Type.Optional(Type.String({ minLength: 1 })),
  /** Cloud API serving the desired feed; defaults to `sinks.http.url` when that sink is enabled. */
  cloudUrl: Type.Optional(Type.String({ pattern: '^https?://' })),
  /** Site token for the feed; defaults to `sinks.http.token`. */
  cloudToken: Type.Optional(Type.String()),
  /** Idle interval between desired-feed polls. */
  desiredPollMs: Type.Integer({ minimum: 10, maximum: 3_600_000, default: 2000 }),
  feedTimeoutMs: Type.Integer({ minimum: 100, default: 10_000 }),
  backoff: backoffConfigSchema({ initialMs: 500, maxMs: 30_000 }),
  /** Largest reported patch and reported document per device (IoT Hub's limit is 32 KiB). */
  maxDocBytes: Type.Integer({ minimum: 1024, maximum: 1_048_576, default: 32 * 1024 }),
});
export type CollectorTwinConfig = Static<typeof collectorTwinConfigSchema>;

export interface CollectorTwinDeps {
  siteId: string;
  stateDir: string;
  /** The collector's client of the cloud (collector/cloud/cloud-client.ts: where the cloud is, resolved once); none: no desired feed. */
  cloud: CloudClient | undefined;
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
    this.handler = new IotHubTwinHandler({
      store: this.store,
      spoolWriter: deps.spoolWriter,
      log,
      registry: deps.registry,
      maxDocBytes: cfg.maxDocBytes,
    });
    if (deps.cloud) {
      this.feed = new CloudDesiredFeed(
        { ...deps.cloud.endpoint, siteId: deps.siteId, pollMs: cfg.desiredPollMs, timeoutMs: cfg.feedTimeoutMs, backoff: cfg.backoff },
        {
          log,
          registry: deps.registry,
          cursor: () => this.store.feedCursor,
          apply: (updates, next) => this.applyDesired(updates, next),
          cloud: deps.cloud,
        },
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
