/**
 * MqttUplink: ships outbox rows to the collector as QoS 1 batches and deletes them only when the
 * PUBACK arrives. A bounded window of batches is in flight at once; mqtt.js re-sends un-acked
 * packets itself after a reconnect, and after a restart the rows are simply read again (the cloud
 * dedupes by identity), so a reading can be delivered twice but never lost.
 */
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { Backoff, type BackoffConfig } from '../common/backoff.js';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { counter, gauge, type Registry } from '../common/metrics.js';
import { LANE_NORMAL, LANE_PRIORITY, type Lane, type SqliteOutbox } from '../common/outbox.js';
import { spliceBatch, topics } from '../common/record.js';

export interface MqttUplinkConfig {
  /** mqtt://host:port or mqtts://host:port */
  url: string;
  /** Defaults to the device id. */
  clientId?: string;
  /** Defaults to the device id. */
  username?: string;
  password?: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  keepaliveS: number;
  connectTimeoutMs: number;
  batchMaxReadings: number;
  batchMaxBytes: number;
  /** Batches published but not yet acknowledged. */
  inflightMax: number;
  backoff: BackoffConfig;
}

export const mqttUplinkDefaults: MqttUplinkConfig = {
  url: 'mqtt://127.0.0.1:1883',
  keepaliveS: 30,
  connectTimeoutMs: 10_000,
  batchMaxReadings: 500,
  batchMaxBytes: 128 * 1024,
  inflightMax: 16,
  backoff: { initialMs: 500, maxMs: 30_000 },
};

export const mqttUplinkConfigSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    url: { type: 'string', pattern: '^(mqtt|mqtts|tcp|tls|ws|wss)://' },
    clientId: { type: 'string', minLength: 1 },
    username: { type: 'string' },
    password: { type: 'string' },
    caFile: { type: 'string' },
    certFile: { type: 'string' },
    keyFile: { type: 'string' },
    keepaliveS: { type: 'integer', minimum: 0, maximum: 65535 },
    connectTimeoutMs: { type: 'integer', minimum: 100 },
    batchMaxReadings: { type: 'integer', minimum: 1, maximum: 100000 },
    batchMaxBytes: { type: 'integer', minimum: 256 },
    inflightMax: { type: 'integer', minimum: 1, maximum: 1000 },
    backoff: {
      type: 'object',
      additionalProperties: false,
      properties: { initialMs: { type: 'integer', minimum: 1 }, maxMs: { type: 'integer', minimum: 1 } },
    },
  },
} as const;

interface Inflight {
  lane: Lane;
  fromId: number;
  toId: number;
  readings: number;
}

export interface MqttUplinkDeps {
  deviceId: string;
  outbox: SqliteOutbox;
  log: Logger;
  registry?: Registry;
}

export class MqttUplink {
  private client: MqttClient | undefined;
  private readonly cursor: Record<Lane, number> = { [LANE_PRIORITY]: 0, [LANE_NORMAL]: 0 };
  private readonly inflight = new Set<Inflight>();
  private readonly backoff: Backoff;
  private readonly topic: string;
  private pumping = false;
  private stopped = false;
  private readonly mSent;
  private readonly mAcked;
  private readonly mConnected;
  private readonly mErrors;

  constructor(private readonly cfg: MqttUplinkConfig, private readonly deps: MqttUplinkDeps) {
    this.backoff = new Backoff(cfg.backoff);
    this.topic = topics.telemetry(deps.deviceId);
    const reg = deps.registry;
    this.mSent = reg ? counter(reg, 'edgetwin_uplink_published_readings_total', 'Readings published (QoS 1)') : undefined;
    this.mAcked = reg ? counter(reg, 'edgetwin_uplink_acked_readings_total', 'Readings acknowledged by the collector') : undefined;
    this.mConnected = reg ? gauge(reg, 'edgetwin_uplink_connected', '1 while connected to the collector') : undefined;
    this.mErrors = reg ? counter(reg, 'edgetwin_uplink_errors_total', 'Uplink errors', ['code']) : undefined;
  }

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  get inflightBatches(): number {
    return this.inflight.size;
  }

  private clientOptions(): IClientOptions {
    const c = this.cfg;
    const opts: IClientOptions = {
      clientId: c.clientId ?? this.deps.deviceId,
      username: c.username ?? this.deps.deviceId,
      // A persistent session keeps the device's subscriptions (desired properties) across drops.
      clean: false,
      keepalive: c.keepaliveS,
      connectTimeout: c.connectTimeoutMs,
      reconnectPeriod: this.backoff.next(),
      resubscribe: true,
    };
    if (c.password !== undefined) opts.password = c.password;
    if (c.caFile) opts.ca = readFileSync(c.caFile);
    if (c.certFile) opts.cert = readFileSync(c.certFile);
    if (c.keyFile) opts.key = readFileSync(c.keyFile);
    return opts;
  }

  start(): void {
    const client = mqtt.connect(this.cfg.url, this.clientOptions());
    this.client = client;
    client.on('connect', () => {
      this.backoff.reset();
      client.options.reconnectPeriod = this.backoff.next();
      this.mConnected?.set(1);
      this.deps.log.info({ url: this.cfg.url }, 'uplink connected');
      this.kick();
    });
    client.on('close', () => {
      this.mConnected?.set(0);
      // mqtt.js reads reconnectPeriod when it schedules the next attempt: that is where the
      // exponential, jittered backoff goes.
      client.options.reconnectPeriod = this.backoff.next();
    });
    client.on('error', (err) => {
      this.mErrors?.inc({ code: (err as { code?: string | number }).code?.toString() ?? 'error' });
      this.deps.log.warn({ err: errorMessage(err) }, 'uplink error');
    });
  }

  /** Publishes whatever the window allows. Cheap to call often: the agent calls it after every flush. */
  kick(): void {
    if (this.pumping || this.stopped) return;
    this.pumping = true;
    try {
      while (this.client?.connected && this.inflight.size < this.cfg.inflightMax) {
        if (!this.publishNext(LANE_PRIORITY) && !this.publishNext(LANE_NORMAL)) break;
      }
    } finally {
      this.pumping = false;
    }
  }

  private publishNext(lane: Lane): boolean {
    const rows = this.deps.outbox.read(lane, this.cursor[lane], this.cfg.batchMaxReadings, this.cfg.batchMaxBytes);
    if (rows.length === 0) return false;
    const first = rows[0]!;
    const last = rows[rows.length - 1]!;
    const entry: Inflight = { lane, fromId: first.id, toId: last.id, readings: rows.length };
    this.cursor[lane] = last.id;
    this.inflight.add(entry);
    const payload = spliceBatch(this.deps.deviceId, first.grp, rows.map((r) => r.body));
    this.mSent?.inc(rows.length);
    this.client!.publish(this.topic, payload, { qos: 1 }, (err) => this.onAck(entry, err));
    return true;
  }

  private onAck(entry: Inflight, err: Error | undefined): void {
    this.inflight.delete(entry);
    if (err) {
      // Not acknowledged: rewind so these rows are read and sent again.
      this.cursor[entry.lane] = Math.min(this.cursor[entry.lane], entry.fromId - 1);
      this.mErrors?.inc({ code: 'publish' });
      if (!this.stopped) this.deps.log.warn({ err: errorMessage(err) }, 'publish failed, will resend');
    } else {
      this.deps.outbox.ack(entry.lane, entry.fromId, entry.toId);
      this.mAcked?.inc(entry.readings);
    }
    setImmediate(() => this.kick());
  }

  /** Waits up to timeoutMs for in-flight batches to be acknowledged, then disconnects. */
  async stop(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.inflight.size > 0 && this.client?.connected && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    this.stopped = true;
    const client = this.client;
    if (!client) return;
    await new Promise<void>((resolve) => client.end(true, {}, () => resolve()));
    this.mConnected?.set(0);
  }
}
