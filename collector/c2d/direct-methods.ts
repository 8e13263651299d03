/**
 * IoT Hub direct methods on the site broker. A request goes to the one connected client of the
 * device that subscribed to `$iothub/methods/POST/#` (never through routing: every device
 * subscribes to the same filter), with a request id (`$rid`) bound to that device and client. The
 * device answers on `$iothub/methods/res/{status}/?$rid=…`; an answer is taken only from the device
 * the request went to. An answer to a request id this device never received is someone else's
 * (spoofing, or a guess): refused and the client disconnected, as any publish outside a device's
 * topics. A late answer (after the timeout) to a request it did receive is dropped and counted.
 */
import { randomBytes } from 'node:crypto';
import type { Client, PublishPacket } from 'aedes';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import { KeyedWaiters } from '../../common/keyed-waiters.js';
import type { Logger } from '../../common/log.js';
import { counter, gauge, histogram, type Registry } from '../../common/metrics.js';
import { filterMatches, METHOD_MAX_PAYLOAD_BYTES, methodTopics, parseMethodTopic } from '../../common/wire/c2d-protocol.js';
import type { TwinHandler } from '../broker/broker.js';

export interface MethodResult {
  status: number;
  payload: unknown;
}

interface Pending {
  device: string;
  client: Client;
  method: string;
  resolve: (r: MethodResult) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
  started: number;
}

/** Request ids that timed out, remembered this long so a late answer is told from a forged one. */
const LATE_WINDOW_MS = 10 * 60_000;
const LATE_MAX = 10_000;

export interface DirectMethodsDeps {
  /** The connected client of a device (MqttBroker.deviceClient). */
  clientOf: (device: string) => Client | undefined;
  log: Logger;
  registry: Registry;
}

export class DirectMethods implements TwinHandler {
  private readonly pending = new Map<string, Pending>();
  /** rid → device, for answers that arrive after their request timed out. */
  private readonly late = new Map<string, { device: string; until: number }>();
  /** Invocations waiting for their device's client to be ready (connectTimeoutS). */
  private readonly waiters = new KeyedWaiters((device) => this.ready(device));
  private readonly direct = new WeakSet<Buffer>();
  private readonly ridPrefix = randomBytes(3).toString('hex');
  private nextRid = 1;
  private readonly mCalls;
  private readonly mRejected;
  private readonly mPending;
  private readonly mLatency;

  constructor(private readonly deps: DirectMethodsDeps) {
    const r = deps.registry;
    this.mCalls = counter(r, 'edgetwin_methods_total', 'Direct-method invocations at this collector, by result', ['result']);
    this.mRejected = counter(r, 'edgetwin_methods_rejected_total', 'Method publishes from devices refused or dropped', ['code']);
    this.mPending = gauge(r, 'edgetwin_methods_pending', 'Method requests sent to devices and not yet answered');
    this.mLatency = histogram(
      r,
      'edgetwin_methods_device_seconds',
      'From the request leaving the collector to the device answer',
      [],
      [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30],
    );
  }

  /**
   * Sends a request and resolves with the device's answer. Rejects with
   * EDGETWIN_ERR_DEVICE_NOT_ONLINE (not connected and subscribed within connectTimeoutMs),
   * EDGETWIN_ERR_METHOD_TIMEOUT (no answer within responseTimeoutMs) or EDGETWIN_ERR_GATEWAY (the
   * device's connection went away before it answered: the method may or may not have run).
   */
  async invoke(
    device: string,
    method: string,
    payload: unknown,
    responseTimeoutMs: number,
    connectTimeoutMs: number,
  ): Promise<MethodResult> {
    const client = this.ready(device) ?? (connectTimeoutMs > 0 ? await this.waiters.wait(device, connectTimeoutMs) : undefined);
    if (!client) {
      this.mCalls.inc({ result: 'not_online' });
      throw new EdgetwinError(
        ErrorCodes.DEVICE_NOT_ONLINE,
        `device ${device} is not connected to this site (or not subscribed to methods)`,
        {
          details: { device, connectTimeoutMs },
        },
      );
    }
    const rid = `${this.ridPrefix}${(this.nextRid++).toString(16)}`;
    const body = Buffer.from(JSON.stringify(payload ?? null));
    return new Promise<MethodResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (!this.pending.delete(rid)) return;
        this.remember(rid, device);
        this.mPending.set(this.pending.size);
        this.mCalls.inc({ result: 'timeout' });
        reject(
          new EdgetwinError(ErrorCodes.METHOD_TIMEOUT, `device ${device} did not answer ${method} within ${responseTimeoutMs} ms`, {
            details: { device, method, responseTimeoutMs },
          }),
        );
      }, responseTimeoutMs);
      this.pending.set(rid, { device, client, method, resolve, reject, timer, started: performance.now() });
      this.mPending.set(this.pending.size);
      this.direct.add(body);
      client.publish(
        { cmd: 'publish', topic: methodTopics.request(method, rid), payload: body, qos: 0, retain: false, dup: false },
        (err) => {
          if (err) this.fail(rid, new EdgetwinError(ErrorCodes.GATEWAY, `method request not delivered to ${device}: ${err.message}`));
        },
      );
    });
  }

  /** Method requests are our own replies-to-be: the only `$iothub/methods/` packets the broker may forward. */
  isDirect(packet: { payload: unknown }): boolean {
    return Buffer.isBuffer(packet.payload) && this.direct.has(packet.payload);
  }

  onPublish(device: string, client: Client, packet: PublishPacket, done: (err?: Error | null) => void): void {
    const t = parseMethodTopic(packet.topic);
    if (t.kind !== 'response' || t.rid === undefined) {
      return this.refuse(
        device,
        done,
        `devices may publish only method answers ($iothub/methods/res/{status}/?$rid=…), not ${packet.topic}`,
      );
    }
    const p = this.pending.get(t.rid);
    if (p && p.device === device && p.client === client) {
      done(null);
      const raw = packet.payload as Buffer;
      if (raw.length > METHOD_MAX_PAYLOAD_BYTES) {
        return this.fail(
          t.rid,
          new EdgetwinError(ErrorCodes.GATEWAY, `device ${device} answered with ${raw.length} bytes, over ${METHOD_MAX_PAYLOAD_BYTES}`),
        );
      }
      clearTimeout(p.timer);
      this.pending.delete(t.rid);
      this.mPending.set(this.pending.size);
      this.mCalls.inc({ result: 'answered' });
      this.mLatency.observe((performance.now() - p.started) / 1000);
      return p.resolve({ status: t.status, payload: answerPayload(raw) });
    }
    const late = this.late.get(t.rid);
    if (late && late.device === device) {
      this.mRejected.inc({ code: 'late' });
      this.deps.log.debug({ device, rid: t.rid }, 'method answer after the timeout dropped');
      return done(null);
    }
    // Another device's request id, or one never issued: a device may answer only what it received.
    this.refuse(device, done, `method answer for a request this device did not receive ($rid=${t.rid})`);
  }

  /** The device's client is ready: wake invocations waiting for it (connectTimeoutS). */
  onReady(device: string): void {
    if (this.waiters.has(device) && this.ready(device)) this.waiters.wake(device);
  }

  /** The client is gone: its unanswered requests fail now rather than at their timeout. */
  onGone(device: string, client: Client): void {
    for (const [rid, p] of this.pending) {
      if (p.client === client) {
        this.remember(rid, device);
        this.fail(
          rid,
          new EdgetwinError(ErrorCodes.GATEWAY, `device ${device} disconnected before answering ${p.method}`, { details: { device } }),
        );
      }
    }
  }

  get inflight(): number {
    return this.pending.size;
  }

  /** Fails everything pending (the collector is stopping). */
  close(): void {
    for (const rid of [...this.pending.keys()]) this.fail(rid, new EdgetwinError(ErrorCodes.GATEWAY, 'collector stopping'));
    this.waiters.wakeAll();
  }

  private ready(device: string): Client | undefined {
    const c = this.deps.clientOf(device);
    if (!c) return undefined;
    const subs = (c as Client & { subscriptions?: Record<string, unknown> }).subscriptions ?? {};
    const probe = methodTopics.request('m', '1');
    return Object.keys(subs).some((f) => filterMatches(f, probe)) ? c : undefined;
  }

  private fail(rid: string, err: EdgetwinError): void {
    const p = this.pending.get(rid);
    if (!p) return;
    clearTimeout(p.timer);
    this.pending.delete(rid);
    this.mPending.set(this.pending.size);
    this.mCalls.inc({ result: 'failed' });
    p.reject(err);
  }

  private remember(rid: string, device: string): void {
    const now = Date.now();
    // Oldest first (insertion order): expired entries, then as many as needed to stay bounded.
    for (const [k, v] of this.late) {
      if (v.until > now && this.late.size < LATE_MAX) break;
      this.late.delete(k);
    }
    this.late.set(rid, { device, until: now + LATE_WINDOW_MS });
  }

  private refuse(device: string, done: (err?: Error | null) => void, why: string): void {
    this.mRejected.inc({ code: ErrorCodes.FORBIDDEN });
    this.deps.log.warn({ device, code: ErrorCodes.FORBIDDEN, err: why }, 'method publish refused; disconnecting the client');
    done(new EdgetwinError(ErrorCodes.FORBIDDEN, why));
  }
}

/** IoT Hub's answers are JSON; an empty body is null, and a body that is not JSON is passed on as its text. */
function answerPayload(raw: Buffer): unknown {
  if (raw.length === 0) return null;
  const text = raw.toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}
