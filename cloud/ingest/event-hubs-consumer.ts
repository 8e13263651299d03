/**
 * EventHubsConsumer: reads what collectors sent to Azure Event Hubs (collector/sinks/event-hubs.ts:
 * one event per device message, site in the `edgetwin-site` property) with the SDK's
 * EventHubConsumerClient, and feeds the same IngestPipeline as `POST /v1/ingest`. Partitions are
 * balanced across consumer processes through the checkpoint store (SQLite locally, Azure Blob when
 * configured). A partition's checkpoint moves only after its events are durably landed; when the
 * pipeline cannot store them the partition waits and retries, so nothing is skipped. Events
 * redelivered after a crash are removed by reading identity.
 */
import type { CheckpointStore, EventHubConsumerClient, EventHubConsumerClientOptions, PartitionContext, ReceivedEventData, Subscription } from '@azure/event-hubs';
import type { TokenCredential } from '@azure/identity';
import { sleep } from '../../common/backoff.js';
import { ErrorCodes, errorMessage, isEdgetwinError } from '../../common/errors.js';
import { INGEST_VERSION } from '../../common/ingest-envelope.js';
import type { Logger } from '../../common/log.js';
import { counter, type Registry } from '../../common/metrics.js';
import type { JournalMode } from '../../common/sqlite.js';
import type { EventHubsConsumerConfig } from './event-hubs-config.js';
import type { IngestPipeline } from './pipeline.js';
import { SqliteCheckpointStore } from './sqlite-checkpoint-store.js';
import { checkpointContainer } from './blob-checkpoint.js';
import { ensureContainer, redactUrl } from '../lakehouse/blob-client.js';

export const SITE_PROPERTY = 'edgetwin-site';
/** Site of events that carry none (not sent by an edgetwin collector): kept and visible, not dropped. */
export const UNASSIGNED_SITE = 'unassigned';
const SITE = /^[A-Za-z0-9._-]{1,64}$/;

export interface EventLike {
  body: unknown;
  properties?: Record<string, unknown> | undefined;
  sequenceNumber: number;
}

export interface EventEnvelope {
  site: string;
  batchId: string;
  raw: Buffer;
  body: { v: number; batchId: string; site: string; messages: unknown[] };
}

function bodyText(body: unknown): string {
  if (Buffer.isBuffer(body)) return body.toString('utf8');
  if (body instanceof Uint8Array) return Buffer.from(body).toString('utf8');
  if (typeof body === 'string') return body;
  return JSON.stringify(body) ?? 'null';
}

/**
 * Turns one partition's batch of events into one ingest envelope per site, messages in partition
 * order. A body that is not JSON becomes a JSON string, which the pipeline rejects and quarantines.
 */
export function envelopesFromEvents(partitionId: string, events: readonly EventLike[]): EventEnvelope[] {
  const bySite = new Map<string, { texts: string[]; parsed: unknown[]; first: number; last: number }>();
  for (const e of events) {
    const prop = e.properties?.[SITE_PROPERTY];
    const site = typeof prop === 'string' && SITE.test(prop) ? prop : UNASSIGNED_SITE;
    let text = bodyText(e.body);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
      text = JSON.stringify(text);
    }
    const g = bySite.get(site) ?? { texts: [], parsed: [], first: e.sequenceNumber, last: e.sequenceNumber };
    g.texts.push(text);
    g.parsed.push(parsed);
    g.last = e.sequenceNumber;
    bySite.set(site, g);
  }
  return [...bySite].map(([site, g]) => {
    const batchId = `eh-${partitionId}-${g.first}-${g.last}${bySite.size > 1 ? `-${site}` : ''}`;
    const raw = Buffer.from(`{"v":${INGEST_VERSION},"batchId":${JSON.stringify(batchId)},"site":${JSON.stringify(site)},"messages":[${g.texts.join(',')}]}`);
    return { site, batchId, raw, body: { v: INGEST_VERSION, batchId, site, messages: g.parsed } };
  });
}

export interface EventHubsConsumerDeps {
  pipeline: IngestPipeline;
  stateDir: string;
  /** For the `sqlite` checkpoint store's file (`db.journalMode`). */
  journalMode?: JournalMode;
  log: Logger;
  registry: Registry;
  /** Called after each landed batch (pokes the lakehouse writer). */
  onStored?: () => void;
  /** Tests and hosts with their own credential; DefaultAzureCredential otherwise. */
  credential?: TokenCredential;
  /** Passed to the SDK client (e.g. a custom endpoint). */
  clientOptions?: EventHubConsumerClientOptions;
  /** Replaces the configured checkpoint store. */
  checkpointStore?: CheckpointStore;
}

export class EventHubsConsumer {
  private client: EventHubConsumerClient | undefined;
  private subscription: Subscription | undefined;
  private sqliteStore: SqliteCheckpointStore | undefined;
  private stopping = false;
  private lastError: string | null = null;
  private readonly mEvents;
  private readonly mErrors;

  constructor(private readonly cfg: EventHubsConsumerConfig, private readonly deps: EventHubsConsumerDeps) {
    this.mEvents = counter(deps.registry, 'edgetwin_cloud_eventhubs_events_total', 'Event Hubs events landed and checkpointed');
    this.mErrors = counter(deps.registry, 'edgetwin_cloud_eventhubs_errors_total', 'Event Hubs consumer errors, by where', ['where']);
  }

  status(): { healthy: boolean; lastError: string | null } {
    return { healthy: this.lastError === null, lastError: this.lastError };
  }

  private async checkpointStore(): Promise<CheckpointStore> {
    if (this.deps.checkpointStore) return this.deps.checkpointStore;
    const c = this.cfg.checkpoint;
    if (c.store === 'sqlite') return (this.sqliteStore = new SqliteCheckpointStore(this.deps.stateDir, this.deps.log, this.deps.journalMode));
    const { BlobCheckpointStore } = await import('@azure/eventhubs-checkpointstore-blob');
    const container = await checkpointContainer(c, this.deps.credential);
    await ensureContainer(container);
    this.deps.log.info({ container: c.containerUrl ? redactUrl(c.containerUrl) : c.blobAccountUrl ? redactUrl(c.blobAccountUrl) : 'connection string' }, 'event hubs checkpoints in Azure Blob');
    return new BlobCheckpointStore(container);
  }

  async start(): Promise<void> {
    const { EventHubConsumerClient, earliestEventPosition, latestEventPosition } = await import('@azure/event-hubs');
    const store = await this.checkpointStore();
    const opts: EventHubConsumerClientOptions = {
      loadBalancingOptions: {
        strategy: this.cfg.loadBalancingStrategy,
        updateIntervalInMs: this.cfg.updateIntervalMs,
        partitionOwnershipExpirationIntervalInMs: this.cfg.ownershipExpirationMs,
      },
      ...this.deps.clientOptions,
    };
    const cg = this.cfg.consumerGroup;
    if (this.cfg.connectionString) {
      this.client = this.cfg.eventHubName
        ? new EventHubConsumerClient(cg, this.cfg.connectionString, this.cfg.eventHubName, store, opts)
        : new EventHubConsumerClient(cg, this.cfg.connectionString, store, opts);
    } else {
      const credential = this.deps.credential ?? new (await import('@azure/identity')).DefaultAzureCredential();
      this.client = new EventHubConsumerClient(cg, this.cfg.fullyQualifiedNamespace!, this.cfg.eventHubName!, credential, store, opts);
    }
    this.subscription = this.client.subscribe(
      {
        processEvents: (events, context) => this.process(events, context),
        processError: async (err, context) => {
          this.mErrors.inc({ where: 'sdk' });
          this.lastError = errorMessage(err);
          this.deps.log.warn({ partition: context.partitionId, err: this.lastError }, 'event hubs consumer error (the SDK reconnects)');
        },
      },
      {
        maxBatchSize: this.cfg.maxBatchSize,
        maxWaitTimeInSeconds: this.cfg.maxWaitTimeMs / 1000,
        startPosition: this.cfg.startPosition === 'earliest' ? earliestEventPosition : latestEventPosition,
        skipParsingBodyAsJson: true,
      },
    );
    this.deps.log.info({ eventHub: this.client.eventHubName, consumerGroup: cg, checkpoints: this.deps.checkpointStore ? 'custom' : this.cfg.checkpoint.store }, 'event hubs consumer started');
  }

  private async process(events: ReceivedEventData[], context: PartitionContext): Promise<void> {
    if (events.length === 0) return;
    for (const env of envelopesFromEvents(context.partitionId, events)) {
      // Until the batch is landed the partition waits: skipping it would lose data.
      for (let attempt = 1; ; attempt++) {
        try {
          this.deps.pipeline.ingest({ raw: env.raw, body: env.body });
          break;
        } catch (err) {
          this.mErrors.inc({ where: 'pipeline' });
          this.lastError = errorMessage(err);
          if (attempt === 1) {
            this.deps.log.error({ code: isEdgetwinError(err) ? err.code : ErrorCodes.INTERNAL, partition: context.partitionId, batchId: env.batchId, err: this.lastError }, 'could not land Event Hubs batch; retrying');
          }
          if (this.stopping) throw err;
          await sleep(this.cfg.retryDelayMs);
        }
      }
    }
    this.lastError = null;
    this.deps.onStored?.();
    await context.updateCheckpoint(events[events.length - 1]!);
    this.mEvents.inc(events.length);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.subscription?.close();
    await this.client?.close();
    this.sqliteStore?.close();
  }
}
