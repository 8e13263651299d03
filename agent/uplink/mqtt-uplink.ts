/**
 * MqttUplink: ships outbox rows to the collector as QoS 1 batches and deletes them only when the
 * PUBACK arrives. A bounded window of batches is in flight at once; mqtt.js re-sends un-acked
 * packets itself after a reconnect (persistent session), and after a restart the rows are simply
 * read again (the cloud dedupes by identity), so a reading can be delivered twice but never lost.
 *
 * What goes next (docs/architecture.md, "Backlog drain"): alerts (the priority lane) always first.
 * When telemetry has piled up (an outage, a slow collector), the rows up to that moment become
 * the backlog and everything committed afterwards is live; batches then alternate between the two
 * streams, so live readings are never more than one batch behind while the backlog drains at full
 * speed (all of the window whenever there is no live data). Each stream is sent in seq order.
 * A batch goes out when it is full (batchMaxReadings / batchMaxBytes) or its oldest reading has
 * waited batchMaxDelayMs.
 */
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import Type, { type Static } from 'typebox';
import { Backoff, backoffConfigSchema } from '../../common/backoff.js';
import { configDefaults, Section } from '../../common/config.js';
import type { Logger } from '../../common/log.js';
import { redactUrl } from '../../common/redact.js';
import { counter, gauge, type Registry } from '../../common/metrics.js';
import { LANE_NORMAL, LANE_PRIORITY, type Lane, type OutboxRow, type SqliteOutbox } from '../../common/outbox/outbox.js';
import { spliceBatch, topics } from '../../common/wire/record.js';
import { UplinkCredentials, uplinkAuthProperties } from './credentials.js';

export const mqttUplinkConfigSchema = Section({
  /** mqtt://host:port or mqtts://host:port */
  url: Type.String({ pattern: '^(mqtt|mqtts|tcp|tls|ws|wss)://', default: 'mqtt://127.0.0.1:1883' }),
  /** Defaults to the device id. */
  clientId: Type.Optional(Type.String({ minLength: 1 })),
  ...uplinkAuthProperties,
  caFile: Type.Optional(Type.String()),
  certFile: Type.Optional(Type.String()),
  keyFile: Type.Optional(Type.String()),
  /** Verify the collector's certificate (only ever false in a lab). */
  rejectUnauthorized: Type.Boolean({ default: true }),
  keepaliveS: Type.Integer({ minimum: 0, maximum: 65535, default: 30 }),
  connectTimeoutMs: Type.Integer({ minimum: 100, default: 10_000 }),
  batchMaxReadings: Type.Integer({ minimum: 1, maximum: 100000, default: 500 }),
  batchMaxBytes: Type.Integer({ minimum: 256, default: 128 * 1024 }),
  /** A batch that is not full goes out once its oldest reading has waited this long. */
  batchMaxDelayMs: Type.Integer({ minimum: 0, maximum: 600_000, default: 200 }),
  /** Batches published but not yet acknowledged. */
  inflightMax: Type.Integer({ minimum: 1, maximum: 1000, default: 16 }),
  backoff: backoffConfigSchema({ initialMs: 500, maxMs: 30_000 }),
});
export type MqttUplinkConfig = Static<typeof mqttUplinkConfigSchema>;
export const mqttUplinkDefaults: MqttUplinkConfig = configDefaults(mqttUplinkConfigSchema);

type StreamName = 'alerts' | 'backlog' | 'live';

/** A read position in one lane: rows with cursor < id <= until. */
interface Stream {
  name: StreamName;
  lane: Lane;
  cursor: number;
  until: number;
  inflight: number;
}

interface Inflight {
  stream: Stream;
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

const NO_LIMIT = Number.MAX_SAFE_INTEGER;

export class MqttUplink {
  private client: MqttClient | undefined;
  private readonly alerts: Stream = { name: 'alerts', lane: LANE_PRIORITY, cursor: 0, until: NO_LIMIT, inflight: 0 };
  /** Telemetry; while `live` exists it ends where the live stream begins. */
  private backlog: Stream = { name: 'backlog', lane: LANE_NORMAL, cursor: 0, until: NO_LIMIT, inflight: 0 };
  private live: Stream | undefined;
  private liveTurn = false;
  private readonly inflight = new Set<Inflight>();
  private readonly backoff: Backoff;
  private readonly topic: string;
  private readonly creds: UplinkCredentials;
  private readonly payloadBudget: number;
  private lingerTimer: NodeJS.Timeout | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private renewing = false;
  /** Until then, partly filled batches go out at once (the `flush` direct method). */
  private noLingerUntil = 0;
  private pumping = false;
  private draining = false;
  private stopped = false;
  private readonly m;

  constructor(
    private readonly cfg: MqttUplinkConfig,
    private readonly deps: MqttUplinkDeps,
  ) {
    this.backoff = new Backoff(cfg.backoff);
    this.topic = topics.telemetry(deps.deviceId);
    this.creds = new UplinkCredentials(cfg, deps.deviceId, new URL(cfg.url).hostname);
    // batchMaxBytes bounds the whole MQTT payload: the envelope (with room for any epoch) and one comma per reading.
    this.payloadBudget = Math.max(1, cfg.batchMaxBytes - spliceBatch(deps.deviceId, Number.MAX_SAFE_INTEGER, []).length);
    const reg = deps.registry;
    this.m = reg
      ? {
          sent: counter(reg, 'edgetwin_uplink_published_readings_total', 'Readings published (QoS 1)'),
          batches: counter(reg, 'edgetwin_uplink_published_batches_total', 'Batches published, by stream (alerts, live, backlog)', [
            'stream',
          ]),
          acked: counter(reg, 'edgetwin_uplink_acked_readings_total', 'Readings acknowledged by the collector'),
          connected: gauge(reg, 'edgetwin_uplink_connected', '1 while connected to the collector'),
          errors: counter(reg, 'edgetwin_uplink_errors_total', 'Uplink errors', ['code']),
          inflight: gauge(reg, 'edgetwin_uplink_inflight_batches', 'Batches awaiting PUBACK'),
        }
      : undefined;
  }

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  /** The mqtt.js client once start() ran: the device twin (agent/twin/) shares this connection. */
  get mqttClient(): MqttClient | undefined {
    return this.client;
  }

  get inflightBatches(): number {
    return this.inflight.size;
  }

  /** True while a backlog drains alongside live readings. */
  get drainingBacklog(): boolean {
    return this.live !== undefined;
  }

  private clientOptions(): IClientOptions {
    const c = this.cfg;
    const opts: IClientOptions = {
      clientId: c.clientId ?? this.deps.deviceId,
      username: this.creds.username,
      // A persistent session: the broker keeps the device's subscriptions (desired properties)
      // across drops, and mqtt.js re-sends unacknowledged publishes after a reconnect.
      clean: false,
      keepalive: c.keepaliveS,
      connectTimeout: c.connectTimeoutMs,
      reconnectPeriod: this.backoff.next(),
      // A refused CONNECT (credentials not yet registered, a token from a skewed clock) is retried
      // with backoff like any other failure; without this mqtt.js would give up for good.
      reconnectOnConnackError: true,
      resubscribe: true,
      rejectUnauthorized: c.rejectUnauthorized,
      // mqtt-packet would otherwise keep a 2-byte Buffer for each of the 65,536 possible packet ids
      // and lengths: ~7 MB of old-generation heap for good (a heap snapshot of the agent). The cost
      // instead: two small allocations per published batch (~500 readings).
      writeCache: false,
    };
    const password = this.creds.password();
    if (password !== undefined) opts.password = password;
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
      this.m?.connected.set(1);
      this.deps.log.info({ url: redactUrl(this.cfg.url) }, 'uplink connected');
      this.scheduleRenewal();
      this.kick();
    });
    // Runs before mqtt.js's own close handler, which schedules the next attempt with
    // options.reconnectPeriod: this is where the exponential, jittered backoff and a fresh
    // token for the next CONNECT go.
    client.prependListener('close', () => {
      this.m?.connected.set(0);
      client.options.reconnectPeriod = this.renewing ? 1 : this.backoff.next();
      this.renewing = false;
      const password = this.creds.password();
      if (password !== undefined) client.options.password = password;
    });
    client.on('error', (err) => {
      this.m?.errors.inc({ code: (err as { code?: string | number }).code?.toString() ?? 'error' });
      this.deps.log.warn({ err }, 'uplink error');
    });
  }

  /** Reconnects with a new SAS token before the current one expires; un-acked batches are re-sent. */
  private scheduleRenewal(): void {
    if (this.renewTimer) clearTimeout(this.renewTimer);
    const at = this.creds.renewAt;
    if (!this.creds.usesSas || at === undefined) return;
    this.renewTimer = setTimeout(
      () => {
        this.renewTimer = undefined;
        const client = this.client;
        if (this.stopped || !client?.connected) return;
        this.deps.log.info('uplink: renewing the SAS token');
        this.renewing = true;
        client.stream.destroy();
      },
      Math.max(0, at - Date.now()),
    );
    this.renewTimer.unref();
  }

  /** For the next `ms`, sends partly filled batches without waiting batchMaxDelayMs (the `flush` direct method). */
  sendNow(ms: number): void {
    this.noLingerUntil = Date.now() + ms;
    this.kick();
  }

  /** Publishes whatever the window allows. Cheap to call often: the agent calls it after every commit. */
  kick(): void {
    if (this.pumping || this.stopped || this.draining) return;
    this.pumping = true;
    try {
      while (this.client?.connected && this.inflight.size < this.cfg.inflightMax) {
        if (this.publishFrom(this.alerts) !== 'sent' && !this.publishTelemetry()) break;
      }
    } finally {
      this.pumping = false;
    }
  }

  private publishTelemetry(): boolean {
    if (!this.live && this.deps.outbox.lastId() - this.backlog.cursor > 2 * this.cfg.batchMaxReadings) this.splitBacklog();
    const live = this.live;
    if (!live) return this.publishFrom(this.backlog) === 'sent';
    const order = this.liveTurn ? [live, this.backlog] : [this.backlog, live];
    let backlogEmpty = false;
    for (const stream of order) {
      const r = this.publishFrom(stream);
      if (r === 'sent') {
        this.liveTurn = stream === this.backlog;
        return true;
      }
      if (stream === this.backlog && r === 'empty') backlogEmpty = true;
    }
    if (backlogEmpty && this.backlog.inflight === 0) this.mergeBacklog(live);
    return false;
  }

  /** Everything committed so far becomes the backlog; what comes next is live. */
  private splitBacklog(): void {
    const from = this.deps.outbox.lastId();
    this.backlog.until = from;
    this.live = { name: 'live', lane: LANE_NORMAL, cursor: from, until: NO_LIMIT, inflight: 0 };
    this.liveTurn = true;
    this.deps.log.info({ backlogUpToId: from, depth: this.deps.outbox.depth() }, 'uplink: draining a backlog alongside live readings');
  }

  /** The backlog is sent and acknowledged: live becomes the one telemetry stream. */
  private mergeBacklog(live: Stream): void {
    // The same object: batches in flight from the live stream rewind the right cursor.
    live.name = 'backlog';
    this.backlog = live;
    this.live = undefined;
    this.deps.log.info('uplink: backlog drained');
  }

  private publishFrom(stream: Stream): 'sent' | 'empty' | 'held' {
    const rows = this.deps.outbox.read(stream.lane, stream.cursor, this.cfg.batchMaxReadings, this.payloadBudget, stream.until, 1);
    if (rows.length === 0) return 'empty';
    if (this.shouldLinger(stream, rows)) return 'held';
    const first = rows[0]!;
    const last = rows[rows.length - 1]!;
    const entry: Inflight = { stream, fromId: first.id, toId: last.id, readings: rows.length };
    stream.cursor = last.id;
    stream.inflight++;
    this.inflight.add(entry);
    this.m?.inflight.set(this.inflight.size);
    const payload = spliceBatch(
      this.deps.deviceId,
      first.grp,
      rows.map((r) => r.body),
    );
    this.m?.sent.inc(rows.length);
    this.m?.batches.inc({ stream: stream.name });
    this.client!.publish(this.topic, payload, { qos: 1 }, (err) => this.onAck(entry, err));
    return 'sent';
  }

  /** Holds back a young, partly filled telemetry batch for up to batchMaxDelayMs so that it fills up. */
  private shouldLinger(stream: Stream, rows: OutboxRow[]): boolean {
    const wait = rows[0]!.at + this.cfg.batchMaxDelayMs - Date.now();
    // Alerts never wait, and neither does a backlog that is being drained.
    if (stream === this.alerts || (this.live && stream === this.backlog) || Date.now() < this.noLingerUntil) return false;
    if (wait <= 0 || rows.length >= this.cfg.batchMaxReadings) return false;
    let bytes = 0;
    for (const r of rows) bytes += r.bytes + 1;
    if (bytes + rows[rows.length - 1]!.bytes > this.payloadBudget) return false;
    if (!this.lingerTimer) {
      this.lingerTimer = setTimeout(() => {
        this.lingerTimer = undefined;
        this.kick();
      }, wait);
    }
    return true;
  }

  private onAck(entry: Inflight, err: Error | undefined): void {
    this.inflight.delete(entry);
    entry.stream.inflight--;
    this.m?.inflight.set(this.inflight.size);
    if (err) {
      // Not acknowledged: rewind so these rows are read and sent again.
      entry.stream.cursor = Math.min(entry.stream.cursor, entry.fromId - 1);
      this.m?.errors.inc({ code: 'publish' });
      if (!this.stopped) this.deps.log.warn({ err }, 'publish failed, will resend');
    } else {
      this.deps.outbox.ack(entry.stream.lane, entry.fromId, entry.toId);
      this.m?.acked.inc(entry.readings);
    }
    if (!this.stopped) setImmediate(() => this.kick());
  }

  /** Sends nothing new; waits up to timeoutMs for in-flight batches to be acknowledged, then disconnects. */
  async stop(timeoutMs = 5000): Promise<void> {
    this.draining = true;
    const deadline = Date.now() + timeoutMs;
    while (this.inflight.size > 0 && this.client?.connected && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    this.stopped = true;
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    if (this.renewTimer) clearTimeout(this.renewTimer);
    const client = this.client;
    if (!client) return;
    await new Promise<void>((resolve) => client.end(true, {}, () => resolve()));
    this.m?.connected.set(0);
  }
}
