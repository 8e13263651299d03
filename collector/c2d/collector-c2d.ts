/**
 * The collector's cloud-to-device service: the push channel from the cloud (cloud-channel.ts),
 * direct methods to connected devices (direct-methods.ts) and the durable queue of device-bound
 * messages with its delivery and feedback (message-store.ts, message-delivery.ts).
 *
 * A method call is live: it is never stored, and the answer (or EDGETWIN_ERR_DEVICE_NOT_ONLINE,
 * _METHOD_TIMEOUT, _GATEWAY) goes back on the channel it came from. Messages are durable: the
 * collector tells the cloud `queued` only after the commit, and feedback stays on disk until the
 * cloud confirms it (`feedback-ack`), so a restart of either side loses neither.
 */
import { join } from 'node:path';
import type { Client } from 'aedes';
import Type, { type Static } from 'typebox';
import { backoffConfigSchema } from '../../common/backoff.js';
import { Section } from '../../common/config.js';
import { ErrorCodes, errorMessage, isEdgetwinError, storeErrorCode } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { Registry } from '../../common/metrics.js';
import type { CloudFrame, MessageFeedback } from '../../common/wire/c2d-protocol.js';
import type { DeviceListener } from '../broker/device-events.js';
import { CloudChannel } from './cloud-channel.js';
import { DirectMethods } from './direct-methods.js';
import { MessageDelivery } from './message-delivery.js';
import { MessageStore } from './message-store.js';

export const collectorC2dConfigSchema = Section(
  {
    enabled: Type.Boolean({ default: true }),
    path: Type.Optional(Type.String({ minLength: 1, description: 'The message queue; defaults to <stateDir>/c2d.db.' })),
    cloudUrl: Type.Optional(
      Type.String({
        pattern: '^https?://',
        description: 'Cloud API that serves the channel; defaults to twin.cloudUrl, then sinks.http.url when that sink is enabled.',
      }),
    ),
    cloudToken: Type.Optional(
      Type.String({ description: 'Site token for the channel; defaults to twin.cloudToken, then sinks.http.token.' }),
    ),
    maxMessagesPerDevice: Type.Integer({
      minimum: 1,
      maximum: 10_000,
      default: 50,
      description: 'Queued device-bound messages per device (IoT Hub: 50); more are rejected with EDGETWIN_ERR_DEVICE_QUEUE_FULL.',
    }),
    inflightPerDevice: Type.Integer({
      minimum: 1,
      maximum: 1000,
      default: 8,
      description: 'Messages written to one device and not yet acknowledged.',
    }),
    pingIntervalMs: Type.Integer({
      minimum: 100,
      maximum: 600_000,
      default: 15_000,
      description: 'The channel pings the cloud this often; no pong for two intervals drops and reopens it.',
    }),
    connectTimeoutMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 10_000 }),
    backoff: backoffConfigSchema({ initialMs: 500, maxMs: 30_000 }),
  },
  { description: 'Cloud to device: the push channel from the cloud, direct methods, device-bound messages (collector/c2d/).' },
);
export type CollectorC2dConfig = Static<typeof collectorC2dConfigSchema>;

export interface CollectorC2dDeps {
  siteId: string;
  stateDir: string;
  /** The cloud URL and token other parts use (twin feed, ingest sink), the defaults for the channel. */
  cloud: { url?: string | undefined; token?: string | undefined };
  /** The connected client of a device (MqttBroker.deviceClient). */
  clientOf: (device: string) => Client | undefined;
  /** Why a device cannot get messages here (not in the registry), or undefined. */
  refuseDevice?: (device: string) => string | undefined;
  log: Logger;
  registry: Registry;
}

/** Feedback entries per frame (a site back from a long outage may have many). */
const FEEDBACK_CHUNK = 500;

export class CollectorC2d implements DeviceListener {
  readonly methods: DirectMethods;
  readonly store: MessageStore;
  readonly delivery: MessageDelivery;
  readonly channel: CloudChannel | undefined;
  private readonly log: Logger;

  constructor(
    readonly cfg: CollectorC2dConfig,
    private readonly deps: CollectorC2dDeps,
  ) {
    this.log = deps.log.child({ part: 'c2d' });
    this.methods = new DirectMethods({ clientOf: deps.clientOf, log: this.log, registry: deps.registry });
    this.store = new MessageStore(cfg.path ?? join(deps.stateDir, 'c2d.db'), cfg.maxMessagesPerDevice, this.log);
    this.delivery = new MessageDelivery({
      store: this.store,
      clientOf: deps.clientOf,
      inflightPerDevice: cfg.inflightPerDevice,
      onFeedback: (items) => this.sendFeedback(items),
      log: this.log,
      registry: deps.registry,
    });
    const url = cfg.cloudUrl ?? deps.cloud.url;
    this.channel = url
      ? new CloudChannel(
          {
            url,
            token: cfg.cloudToken ?? deps.cloud.token,
            siteId: deps.siteId,
            pingIntervalMs: cfg.pingIntervalMs,
            connectTimeoutMs: cfg.connectTimeoutMs,
            backoff: cfg.backoff,
          },
          { onOpen: () => this.onOpen(), onFrame: (f) => this.onFrame(f) },
          { log: this.log, registry: deps.registry },
        )
      : undefined;
  }

  start(): void {
    this.delivery.start();
    this.channel?.start();
  }

  async stop(): Promise<void> {
    this.methods.close();
    this.delivery.close();
    await this.channel?.stop();
    this.store.close();
  }

  health(): {
    channel: 'open' | 'closed' | 'off';
    methodsInflight: number;
    queue: { messages: number; devices: number; feedback: number };
  } {
    const channel = !this.channel ? 'off' : this.channel.connected ? 'open' : 'closed';
    return { channel, methodsInflight: this.methods.inflight, queue: this.store.depth() };
  }

  onReady(device: string): void {
    this.methods.onReady(device);
    this.delivery.onReady(device);
  }

  onGone(device: string, client: Client): void {
    this.methods.onGone(device, client);
    this.delivery.onGone(device, client);
  }

  onPuback(device: string, client: Client, messageId: number): void {
    this.delivery.onPuback(device, client, messageId);
  }

  /** Takes device-bound messages (from the channel, or a test): queued durably, then delivered. */
  acceptMessages(items: Parameters<MessageStore['accept']>[0]): string[] {
    const r = this.store.accept(items, Date.now(), this.deps.refuseDevice);
    this.delivery.queued(r.devices, r.feedback);
    return r.ids;
  }

  private onFrame(f: CloudFrame): void {
    switch (f.t) {
      case 'invoke':
        this.methods.invoke(f.device, f.method, f.payload, f.responseTimeoutMs, f.connectTimeoutMs).then(
          (r) => this.channel?.send({ t: 'result', id: f.id, status: r.status, payload: r.payload }),
          (err: unknown) => {
            const code = isEdgetwinError(err) ? err.code : ErrorCodes.INTERNAL;
            this.channel?.send({ t: 'failed', id: f.id, code, message: errorMessage(err) });
          },
        );
        return;
      case 'messages': {
        let ids: string[];
        try {
          ids = this.acceptMessages(f.items);
        } catch (err) {
          // Not acknowledged: the cloud sends them again on the next connection.
          this.log.error({ code: storeErrorCode(err), err }, 'device-bound messages not queued');
          return;
        }
        this.channel?.send({ t: 'queued', ids });
        return;
      }
      case 'feedback-ack':
        this.store.ackFeedback(f.ids);
        return;
    }
  }

  /** On every (re)connect: the feedback the cloud has not confirmed yet. */
  private onOpen(): void {
    const pending = this.store.unsentFeedback(100_000);
    for (let i = 0; i < pending.length; i += FEEDBACK_CHUNK)
      this.channel?.send({ t: 'feedback', items: pending.slice(i, i + FEEDBACK_CHUNK) });
  }

  private sendFeedback(items: MessageFeedback[]): void {
    // Kept in the store until acknowledged: a closed channel sends it at the next open.
    this.channel?.send({ t: 'feedback', items });
  }
}
