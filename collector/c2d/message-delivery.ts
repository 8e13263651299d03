/**
 * Delivers queued device-bound messages to connected devices, as IoT Hub does over MQTT: QoS 1
 * on `devices/{id}/messages/devicebound/{property bag}`, oldest first, a few in flight per device;
 * the device's PUBACK completes a message (feedback `delivered`). MQTT has no reject or abandon
 * (IoT Hub's MQTT devices cannot either): a message the device does not acknowledge stays queued
 * and goes out again on its next connection, until it expires (feedback `expired`).
 *
 * The PUBLISH is written here, not through aedes: aedes would keep its own copy in its session
 * store and send it again after a reconnect, beside ours. The durable queue is the only copy;
 * packet ids come from the client's own counter, so they never collide with aedes' deliveries.
 */
import type { Writable } from 'node:stream';
import type { Client } from 'aedes';
import type { Logger } from '../../common/log.js';
import { counter, type Registry } from '../../common/metrics.js';
import { filterMatches, messageTopic, messageTopics, type MessageFeedback } from '../../common/wire/c2d-protocol.js';
import type { DeviceListener } from '../broker/device-events.js';
import type { MessageStore } from './message-store.js';

interface AedesClient {
  conn: Writable & { destroyed?: boolean };
  connected: boolean;
  closed: boolean;
  _nextId: number;
  subscriptions?: Record<string, { qos?: number }>;
}

export interface MessageDeliveryDeps {
  store: MessageStore;
  clientOf: (device: string) => Client | undefined;
  /** Messages written to one device and not yet acknowledged. */
  inflightPerDevice: number;
  /** New feedback to pass to the cloud. */
  onFeedback: (items: MessageFeedback[]) => void;
  log: Logger;
  registry: Registry;
  now?: () => number;
}

/** Longest wait between expiry checks (a clock jump must not leave a message queued for long). */
const MAX_EXPIRY_WAIT_MS = 60_000;

export class MessageDelivery implements DeviceListener {
  /** Per client: packet id → message id of what it has not acknowledged. */
  private readonly inflight = new Map<Client, Map<number, string>>();
  private expiryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly now: () => number;
  private readonly mSent;
  private readonly mFeedback;

  constructor(private readonly deps: MessageDeliveryDeps) {
    this.now = deps.now ?? Date.now;
    this.mSent = counter(
      deps.registry,
      'edgetwin_c2d_messages_sent_total',
      'Device-bound messages written to devices (QoS 1), retries included',
    );
    this.mFeedback = counter(deps.registry, 'edgetwin_c2d_messages_total', 'Device-bound messages finished at this collector, by outcome', [
      'outcome',
    ]);
  }

  start(): void {
    this.scheduleExpiry();
  }

  /** New messages were queued for these devices. */
  queued(devices: Iterable<string>, feedback: MessageFeedback[]): void {
    this.report(feedback);
    for (const d of devices) this.pump(d);
    this.scheduleExpiry();
  }

  onReady(device: string): void {
    this.pump(device);
  }

  onGone(_device: string, client: Client): void {
    this.inflight.delete(client);
  }

  onPuback(device: string, client: Client, packetId: number): void {
    const flight = this.inflight.get(client);
    const id = flight?.get(packetId);
    if (id === undefined || this.closed) return;
    flight!.delete(packetId);
    const fb = this.deps.store.delivered(id, this.now());
    if (fb) this.report([fb]);
    this.pump(device);
  }

  /** Writes the device's oldest queued messages, up to the window, if it listens. */
  pump(device: string): void {
    if (this.closed) return;
    const client = this.deps.clientOf(device);
    if (!client) return;
    const c = client as unknown as AedesClient;
    const qos = subscribedQos(c, device);
    if (qos === undefined) return;
    let flight = this.inflight.get(client);
    if (!flight) this.inflight.set(client, (flight = new Map()));
    const room = this.deps.inflightPerDevice - flight.size;
    if (room <= 0) return;
    const busy = new Set(flight.values());
    const next = this.deps.store.queued(device, this.deps.inflightPerDevice + flight.size).filter((m) => !busy.has(m.id));
    for (const m of next.slice(0, room)) {
      if (c.closed || c.conn.destroyed) return;
      const payload = Buffer.from(m.body, 'utf8');
      const topic = messageTopic(m);
      this.deps.store.attempted(m.id);
      this.mSent.inc();
      if (qos === 0) {
        // A QoS 0 subscription asked for at-most-once: written is as delivered as it gets (IoT Hub completes it too).
        c.conn.write(publishPacket(topic, payload, 0, 0));
        const fb = this.deps.store.delivered(m.id, this.now());
        if (fb) this.report([fb]);
        continue;
      }
      const packetId = nextPacketId(c, flight);
      flight.set(packetId, m.id);
      c.conn.write(publishPacket(topic, payload, 1, packetId));
    }
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.expiryTimer);
    this.inflight.clear();
  }

  private report(items: MessageFeedback[]): void {
    if (items.length === 0) return;
    for (const f of items) this.mFeedback.inc({ outcome: f.outcome });
    this.deps.onFeedback(items);
  }

  /** Expires what is due now and sleeps until the next message is due. */
  private scheduleExpiry(): void {
    if (this.closed) return;
    clearTimeout(this.expiryTimer);
    const next = this.deps.store.nextExpiry();
    if (next === undefined) return;
    const wait = Math.max(0, Math.min(MAX_EXPIRY_WAIT_MS, next - this.now()));
    this.expiryTimer = setTimeout(() => {
      const expired = this.deps.store.expire(this.now());
      if (expired.length > 0) {
        const gone = new Set(expired.map((f) => f.id));
        // A late PUBACK for one of these finds nothing: the message is already over.
        for (const flight of this.inflight.values()) for (const [pid, id] of flight) if (gone.has(id)) flight.delete(pid);
        this.deps.log.info({ expired: expired.length }, 'device-bound messages expired');
        this.report(expired);
      }
      this.scheduleExpiry();
    }, wait + 1);
    this.expiryTimer.unref();
  }
}

/** The granted QoS of the client's subscription that covers the device's message topic, if any. */
function subscribedQos(c: AedesClient, device: string): number | undefined {
  const probe = `${messageTopics.prefix(device)}%24.mid=x`;
  let best: number | undefined;
  for (const [filter, sub] of Object.entries(c.subscriptions ?? {})) {
    if (filterMatches(filter, probe)) best = Math.max(best ?? 0, Math.min(1, sub.qos ?? 0));
  }
  return best;
}

/** The client's next packet id (aedes' own counter, so ids never collide), skipping ids still in flight. */
function nextPacketId(c: AedesClient, flight: Map<number, string>): number {
  for (;;) {
    const id = c._nextId;
    c._nextId = id >= 65535 ? 1 : id + 1;
    if (!flight.has(id)) return id;
  }
}

/** An MQTT 3.1.1 PUBLISH packet (topic and payload as given). */
export function publishPacket(topic: string, payload: Buffer, qos: 0 | 1, packetId: number): Buffer {
  const t = Buffer.from(topic, 'utf8');
  const remaining = 2 + t.length + (qos === 1 ? 2 : 0) + payload.length;
  const len: number[] = [];
  let x = remaining;
  do {
    let b = x % 128;
    x = Math.floor(x / 128);
    if (x > 0) b |= 0x80;
    len.push(b);
  } while (x > 0);
  const buf = Buffer.allocUnsafe(1 + len.length + remaining);
  let o = 0;
  buf[o++] = 0x30 | (qos << 1);
  for (const b of len) buf[o++] = b;
  buf.writeUInt16BE(t.length, o);
  o += 2;
  o += t.copy(buf, o);
  if (qos === 1) {
    buf.writeUInt16BE(packetId, o);
    o += 2;
  }
  payload.copy(buf, o);
  return buf;
}
