/**
 * EventHubsConsumer: reads what collectors sent to Azure Event Hubs (collector/sinks/event-hubs.ts:
 * one event per device message, site in the `edgetwin-site` property) with the SDK's
 * EventHubConsumerClient, and feeds the same IngestPipeline as `POST /v1/ingest`. Partitions are
 * balanced across consumer processes through the checkpoint store (SQLite locally, Azure Blob when
 * configured). A partition's checkpoint moves only after its events are durably landed; when the
 * pipeline cannot store them the partition waits and retries, so nothing is skipped. Events
 * redelivered after a crash are removed by reading identity.
 */
import { isUtf8 } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type {
  CheckpointStore,
  EventHubConsumerClient,
  EventHubConsumerClientOptions,
  PartitionContext,
  ReceivedEventData,
  Subscription,
} from '@azure/event-hubs';
import type { TokenCredential } from '@azure/identity';
import { sleep } from '../../common/backoff.js';
import { ErrorCodes, errorMessage, isEdgetwinError, type EdgetwinError } from '../../common/errors.js';
import { INGEST_VERSION, SITE_ID_PATTERN } from '../../common/wire/ingest-envelope.js';
import { DEVICE_ID_PATTERN, encodeQuarantine } from '../../common/wire/record.js';
import type { Logger } from '../../common/log.js';
import { counter, Gauge, type Registry } from '../../common/metrics.js';
import type { JournalMode } from '../../common/sqlite.js';
import type { EventHubsConsumerConfig } from './event-hubs-config.js';
import type { IngestPipeline } from './pipeline.js';
import { SqliteCheckpointStore } from './sqlite-checkpoint-store.js';
import { checkpointContainer } from './blob-checkpoint.js';
import { ensureContainer } from '../lakehouse/blob-client.js';
import { redactUrl } from '../../common/redact.js';

export const SITE_PROPERTY = 'edgetwin-site';
/** Site of events that carry none (not sent by an edgetwin collector): kept and visible, not dropped. */
import { UNASSIGNED_SITE } from '../auth/site-policy.js';

export { UNASSIGNED_SITE };
// The envelope's own rule (never `.`/`..`): a site property it would refuse must not make a batch refused forever.
const SITE = new RegExp(SITE_ID_PATTERN);

export interface EventLike {
  body: unknown;
  properties?: Record<string, unknown> | undefined;
  sequenceNumber: number;
  /** The collector's sink sets it to the device id. */
  partitionKey?: string | null | undefined;
  enqueuedTimeUtc?: Date | undefined;
}

export interface EventEnvelope {
  site: string;
  batchId: string;
  raw: Buffer;
  body: { v: number; batchId: string; site: string; messages: unknown[] };
  /** The events it was made of, in order. */
  events: EventLike[];
}

const deviceIdRe = new RegExp(DEVICE_ID_PATTERN);

/**
 * A body that is not UTF-8 JSON becomes a quarantine message (common/wire/record.ts) with its bytes
 * and the reason: kept for the user in the cloud's quarantine, as a collector keeps what it refuses.
 */
function quarantined(e: EventLike, bytes: Buffer, reason: string, code: string = ErrorCodes.BAD_PAYLOAD): string {
  const pk = e.partitionKey ?? e.properties?.['iothub-connection-device-id'];
  return encodeQuarantine({
    device: typeof pk === 'string' && deviceIdRe.test(pk) ? pk : 'unknown',
    ts: e.enqueuedTimeUtc?.getTime() ?? Date.now(),
    code,
    reason,
    payload: bytes,
    whole: true,
  });
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
  const bySite = new Map<string, { texts: string[]; parsed: unknown[]; events: EventLike[]; first: number; last: number }>();
  for (const e of events) {
    const prop = e.properties?.[SITE_PROPERTY];
    const site = typeof prop === 'string' && SITE.test(prop) ? prop : UNASSIGNED_SITE;
    const bytes = Buffer.isBuffer(e.body) ? e.body : e.body instanceof Uint8Array ? Buffer.from(e.body) : undefined;
    let text = bytes && !isUtf8(bytes) ? quarantined(e, bytes, 'event body is not valid UTF-8') : bodyText(e.body);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      text = quarantined(e, bytes ?? Buffer.from(text), 'event body is not valid JSON');
      parsed = JSON.parse(text);
    }
    const g = bySite.get(site) ?? { texts: [], parsed: [], events: [], first: e.sequenceNumber, last: e.sequenceNumber };
    g.events.push(e);
    g.texts.push(text);
    g.parsed.push(parsed);
    g.last = e.sequenceNumber;
    bySite.set(site, g);
  }
  return [...bySite].map(([site, g]) => {
    const batchId = `eh-${partitionId}-${g.first}-${g.last}${bySite.size > 1 ? `-${site}` : ''}`;
    const raw = Buffer.from(
      `{"v":${INGEST_VERSION},"batchId":${JSON.stringify(batchId)},"site":${JSON.stringify(site)},"messages":[${g.texts.join(',')}]}`,
    );
    return { site, batchId, raw, body: { v: INGEST_VERSION, batchId, site, messages: g.parsed }, events: g.events };
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
  /** Per partition: enqueue time of the oldest event being landed now, and the lag measured after the last batch. */
  private readonly lag = new Map<string, { landingSince: number | null; afterS: number }>();
  /** Per partition this replica read: when it last landed an event. */
  private readonly owned = new Map<string, { since: number; lastEventAt: number | null }>();
  /** Partitions the checkpoint store says this replica owns (its unexpired ownership records), re-read every updateIntervalMs. */
  private ownedNow: string[] = [];
  private ownershipTimer: NodeJS.Timeout | undefined;
  /** This replica's owner id in the checkpoint store (its ownership records name it). */
  readonly ownerId = `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;

  constructor(
    private readonly cfg: EventHubsConsumerConfig,
    private readonly deps: EventHubsConsumerDeps,
  ) {
    this.mEvents = counter(deps.registry, 'edgetwin_cloud_eventhubs_events_total', 'Event Hubs events landed and checkpointed');
    this.mErrors = counter(deps.registry, 'edgetwin_cloud_eventhubs_errors_total', 'Event Hubs consumer errors, by where', ['where']);
    const lagS = (): number => this.lagS();
    new Gauge({
      name: 'edgetwin_cloud_eventhubs_lag_seconds',
      help: 'How far the consumer is behind the newest enqueued event (max over partitions)',
      registers: [deps.registry],
      collect() {
        this.set(lagS());
      },
    });
  }

  /**
   * Seconds behind: while a batch is being landed (or retried: the pipeline refuses it), the age of
   * its oldest event; otherwise how much older the last landed event was than the newest enqueued
   * one (the SDK's last-enqueued properties; 0 when the service does not send them).
   */
  lagS(now = Date.now()): number {
    let max = 0;
    for (const l of this.lag.values()) max = Math.max(max, l.landingSince !== null ? (now - l.landingSince) / 1000 : l.afterS);
    return max;
  }

  /**
   * Health per replica: the partitions it owns (several replicas share them through the checkpoint
   * store; a stopped or killed one's partitions move to the others once its ownership expires) and
   * how long ago it last landed an event (null: none yet).
   */
  status(now = Date.now()): {
    healthy: boolean;
    lastError: string | null;
    lagS: number;
    ownerId: string;
    partitions: string[];
    lastEventAgeS: number | null;
  } {
    const last = Math.max(0, ...this.ownedNow.map((p) => this.owned.get(p)?.lastEventAt ?? 0));
    return {
      healthy: this.lastError === null,
      lastError: this.lastError,
      lagS: this.lagS(),
      ownerId: this.ownerId,
      partitions: this.ownedNow,
      lastEventAgeS: last === 0 ? null : Math.round((now - last) / 100) / 10,
    };
  }

  private async checkpointStore(): Promise<CheckpointStore> {
    if (this.deps.checkpointStore) return this.deps.checkpointStore;
    const c = this.cfg.checkpoint;
    if (c.store === 'sqlite')
      return (this.sqliteStore = new SqliteCheckpointStore(this.deps.stateDir, this.deps.log, this.deps.journalMode));
    const { BlobCheckpointStore } = await import('@azure/eventhubs-checkpointstore-blob');
    const container = await checkpointContainer(c, this.deps.credential);
    await ensureContainer(container);
    this.deps.log.info(
      { container: c.containerUrl ? redactUrl(c.containerUrl) : c.blobAccountUrl ? redactUrl(c.blobAccountUrl) : 'connection string' },
      'event hubs checkpoints in Azure Blob',
    );
    return new BlobCheckpointStore(container);
  }

  async start(): Promise<void> {
    const { EventHubConsumerClient, earliestEventPosition, latestEventPosition } = await import('@azure/event-hubs');
    const store = await this.checkpointStore();
    const opts: EventHubConsumerClientOptions = {
      identifier: this.ownerId,
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
        processInitialize: async (context) => void this.owned.set(context.partitionId, { since: Date.now(), lastEventAt: null }),
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
        trackLastEnqueuedEventProperties: true,
      },
    );
    this.deps.log.info(
      {
        eventHub: this.client.eventHubName,
        consumerGroup: cg,
        checkpoints: this.deps.checkpointStore ? 'custom' : this.cfg.checkpoint.store,
      },
      'event hubs consumer started',
    );
    const client = this.client;
    const readOwnership = async (): Promise<void> => {
      try {
        const expired = Date.now() - this.cfg.ownershipExpirationMs;
        const all = await store.listOwnership(client.fullyQualifiedNamespace, client.eventHubName, cg);
        this.ownedNow = all
          .filter((o) => o.ownerId === this.ownerId && (o.lastModifiedTimeInMs ?? 0) > expired)
          .map((o) => o.partitionId)
          .sort((x, y) => Number(x) - Number(y));
      } catch {
        // the SDK reports checkpoint store failures through processError; the last answer stands
      }
    };
    this.ownershipTimer = setInterval(() => void readOwnership(), this.cfg.updateIntervalMs);
    this.ownershipTimer.unref();
    await readOwnership();
  }

  private async process(events: ReceivedEventData[], context: PartitionContext): Promise<void> {
    if (events.length === 0) return;
    const owned = this.owned.get(context.partitionId);
    const lag = this.lag.get(context.partitionId) ?? { landingSince: null, afterS: 0 };
    this.lag.set(context.partitionId, lag);
    lag.landingSince = events[0]!.enqueuedTimeUtc.getTime();
    for (const env of envelopesFromEvents(context.partitionId, events)) {
      // Until the batch is landed the partition waits: skipping it would lose data.
      for (let attempt = 1; ; attempt++) {
        try {
          await this.deps.pipeline.ingest({ raw: env.raw, body: env.body });
          break;
        } catch (err) {
          this.mErrors.inc({ where: 'pipeline' });
          // A refusal for good (not a store outage) must not hold the partition forever: event by event, and what is still refused goes to quarantine.
          if (isEdgetwinError(err) && !err.retryable && !this.stopping && (await this.landApart(context.partitionId, env.events, err)))
            break;
          this.lastError = errorMessage(err);
          if (attempt === 1) {
            this.deps.log.error(
              {
                code: isEdgetwinError(err) ? err.code : ErrorCodes.INTERNAL,
                partition: context.partitionId,
                batchId: env.batchId,
                err: this.lastError,
              },
              'could not land Event Hubs batch; retrying',
            );
          }
          if (this.stopping) throw err;
          await sleep(this.cfg.retryDelayMs);
        }
      }
    }
    this.lastError = null;
    this.deps.onStored?.();
    await context.updateCheckpoint(events[events.length - 1]!);
    if (owned) owned.lastEventAt = Date.now();
    this.mEvents.inc(events.length);
    const last = events[events.length - 1]!;
    const newest = context.lastEnqueuedEventProperties;
    lag.landingSince = null;
    lag.afterS =
      newest?.enqueuedOn && newest.sequenceNumber !== undefined && newest.sequenceNumber > last.sequenceNumber
        ? Math.max(0, (newest.enqueuedOn.getTime() - last.enqueuedTimeUtc.getTime()) / 1000)
        : 0;
  }

  /**
   * Lands the events of a batch the pipeline refused for good one by one; one still refused alone
   * is landed as a quarantine message with its bytes and the refusal's code. False when a store
   * outage interrupts (the caller retries the whole batch: what landed is removed as duplicates).
   */
  private async landApart(partition: string, events: EventLike[], cause: EdgetwinError): Promise<boolean> {
    this.deps.log.warn(
      { code: cause.code, partition, events: events.length, err: cause.message },
      'event hubs batch refused: landing its events one by one',
    );
    for (const e of events) {
      try {
        const [one] = envelopesFromEvents(partition, [e]);
        await this.deps.pipeline.ingest({ raw: one!.raw, body: one!.body });
      } catch (err) {
        if (!isEdgetwinError(err) || err.retryable) return false;
        const bytes = Buffer.isBuffer(e.body) ? e.body : Buffer.from(bodyText(e.body));
        const [q] = envelopesFromEvents(partition, [{ ...e, body: Buffer.from(quarantined(e, bytes, err.message, err.code)) }]);
        try {
          await this.deps.pipeline.ingest({ raw: q!.raw, body: q!.body });
          this.mErrors.inc({ where: 'quarantined' });
        } catch {
          return false;
        }
      }
    }
    return true;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.ownershipTimer);
    await this.subscription?.close();
    await this.client?.close();
    this.sqliteStore?.close();
  }
}
