/**
 * EventHubsSink: sends spooled messages to Azure Event Hubs with the official producer
 * (`@azure/event-hubs`), one event per spooled message, its body the message bytes as the device
 * sent them (or as the collector mapped them, see docs/wire-contract.md). Events are batched by
 * partition key = device id, so one device's events stay in order on one partition.
 *
 * Auth: a connection string (SAS), or Entra ID via DefaultAzureCredential with the namespace's
 * fully qualified name. The SDK is loaded on first connect so the CLI starts fast without it.
 */
import type { EventData, EventDataBatch, EventHubProducerClient } from '@azure/event-hubs';
import type { TokenCredential } from '@azure/identity';
import Type, { type Static } from 'typebox';
import { Section } from '../../common/config.js';
import { ErrorCodes, errorMessage, RetryableSinkError } from '../../common/errors.js';
import { eventHubsConnectionProperties } from '../../common/event-hubs-config.js';
import type { Sink, SinkBatch, SinkWriteResult, SpooledMessage } from './sink.js';

export const eventHubsSinkConfigSchema = Section({
  enabled: Type.Boolean({ default: false }),
  // connectionString | fullyQualifiedNamespace (+ eventHubName): the rules shared with the cloud's consumer.
  ...eventHubsConnectionProperties,
  /** Cap on one AMQP batch; defaults to what the hub allows (the sender link's max message size). */
  maxBatchBytes: Type.Optional(Type.Integer({ minimum: 1024 })),
  /** One send attempt; the SinkRunner owns retries. */
  timeoutMs: Type.Integer({ minimum: 100, default: 30_000 }),
});
export type EventHubsSinkConfig = Static<typeof eventHubsSinkConfigSchema>;

export interface EventHubsSinkDeps {
  /** Replaces DefaultAzureCredential (tests; or a credential the host application already has). */
  credential?: TokenCredential;
}

export class EventHubsSink implements Sink {
  readonly name = 'event-hubs';
  private client: EventHubProducerClient | undefined;
  /** Chunks of a batch already sent, so a retry of the same batch id resends only what failed. */
  private readonly sentChunks = new Map<string, Set<string>>();

  constructor(
    private readonly cfg: EventHubsSinkConfig,
    private readonly deps: EventHubsSinkDeps = {},
  ) {}

  async connect(): Promise<void> {
    if (this.client) return;
    const { EventHubProducerClient } = await import('@azure/event-hubs');
    const options = { retryOptions: { maxRetries: 0, timeoutInMs: this.cfg.timeoutMs } };
    let client: EventHubProducerClient;
    if (this.cfg.connectionString) {
      client = this.cfg.eventHubName
        ? new EventHubProducerClient(this.cfg.connectionString, this.cfg.eventHubName, options)
        : new EventHubProducerClient(this.cfg.connectionString, options);
    } else {
      const credential = this.deps.credential ?? new (await import('@azure/identity')).DefaultAzureCredential();
      client = new EventHubProducerClient(this.cfg.fullyQualifiedNamespace!, this.cfg.eventHubName!, credential, options);
    }
    try {
      // Fails fast on a wrong hub, key or network, instead of at the first batch.
      await client.getEventHubProperties();
    } catch (err) {
      await client.close().catch(() => undefined);
      throw new RetryableSinkError(`Event Hubs unreachable: ${errorMessage(err)}`, undefined, { cause: err });
    }
    this.client = client;
  }

  async write(batch: SinkBatch): Promise<SinkWriteResult> {
    if (!this.client) await this.connect();
    const client = this.client!;
    const rejected: NonNullable<SinkWriteResult['rejected']> = [];
    const sent = this.sentChunks.get(batch.batchId) ?? new Set<string>();
    this.sentChunks.set(batch.batchId, sent);
    try {
      await Promise.all(
        [...groupByDevice(batch.messages)].map(([device, msgs]) => this.sendDevice(client, batch, device, msgs, sent, rejected)),
      );
    } catch (err) {
      if (isFatalConnectionError(err)) await this.reset();
      throw new RetryableSinkError(`Event Hubs send failed: ${errorMessage(err)}`, undefined, { cause: err });
    }
    this.sentChunks.delete(batch.batchId);
    return { rejected };
  }

  /** Sends one device's messages in order, in as many AMQP batches as the size limit needs. */
  private async sendDevice(
    client: EventHubProducerClient,
    batch: SinkBatch,
    device: string,
    msgs: SpooledMessage[],
    sent: Set<string>,
    rejected: NonNullable<SinkWriteResult['rejected']>,
  ): Promise<void> {
    const opts = this.cfg.maxBatchBytes ? { partitionKey: device, maxSizeInBytes: this.cfg.maxBatchBytes } : { partitionKey: device };
    let chunk = 0;
    let current: EventDataBatch = await client.createBatch(opts);
    const flush = async (): Promise<void> => {
      const key = `${device}#${chunk++}`;
      if (current.count > 0 && !sent.has(key)) {
        await client.sendBatch(current);
        sent.add(key);
      }
      current = await client.createBatch(opts);
    };
    for (const m of msgs) {
      const event = toEvent(batch.siteId, m);
      if (current.tryAdd(event)) continue;
      if (current.count > 0) {
        await flush();
        if (current.tryAdd(event)) continue;
      }
      rejected.push({
        id: m.id,
        code: ErrorCodes.PAYLOAD_TOO_LARGE,
        message: `message of ${Buffer.byteLength(m.payload)} bytes exceeds the hub's batch size ${current.maxSizeInBytes}`,
      });
    }
    if (current.count > 0) await flush();
  }

  private async reset(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    await c?.close().catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.reset();
  }
}

function groupByDevice(messages: SpooledMessage[]): Map<string, SpooledMessage[]> {
  const out = new Map<string, SpooledMessage[]>();
  for (const m of messages) {
    const list = out.get(m.device);
    if (list) list.push(m);
    else out.set(m.device, [m]);
  }
  return out;
}

function toEvent(siteId: string, m: SpooledMessage): EventData {
  return {
    // A Buffer goes out as one AMQP data section holding exactly these bytes (no JSON re-encoding).
    body: Buffer.from(m.payload, 'utf8'),
    contentType: 'application/json',
    properties: { 'edgetwin-site': siteId, 'edgetwin-device': m.device },
  };
}

function isFatalConnectionError(err: unknown): boolean {
  const name = (err as { name?: string; code?: string })?.code ?? (err as { name?: string })?.name ?? '';
  return /Unauthorized|NotFound|ConnectionLost|disconnect/i.test(name) || /closed|disconnect/i.test(errorMessage(err));
}
