/**
 * IotHubTwinClient: IoT Hub's device-twin protocol on the agent's existing mqtt.js connection —
 * subscribe, GET the full twin, PATCH reported properties, and desired-property patches. Requests
 * are matched to replies by `$rid`; a request without a reply within requestTimeoutMs, or cut off
 * by a disconnect, fails with EDGETWIN_ERR_TWIN (the caller re-syncs at the next connect).
 */
import { randomBytes } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import { isPlainObject } from '../../common/config.js';
import type { Logger } from '../../common/log.js';
import type { JsonObject } from '../../common/merge-patch.js';
import { parseTwinTopic, twinTopics } from '../../common/wire/twin-protocol.js';

export interface TwinDocs {
  desired: JsonObject;
  desiredVersion: number;
  reported: JsonObject;
  reportedVersion: number;
}

export interface TwinClientEvents {
  /** The connection is (again) up: the owner re-reads the twin. */
  onConnect(): void;
  onDesiredPatch(patch: JsonObject, version: number): void;
}

interface Pending {
  resolve: (r: { status: number; version: number | undefined; body: Buffer }) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** Splits `{…, "$version": n}` into the properties and n. */
export function splitVersion(doc: unknown): { props: JsonObject; version: number } {
  if (!isPlainObject(doc)) return { props: {}, version: 0 };
  const { $version, ...props } = doc;
  return { props, version: typeof $version === 'number' ? $version : 0 };
}

export class IotHubTwinClient {
  private client: MqttClient | undefined;
  private readonly pending = new Map<string, Pending>();
  private readonly ridPrefix = randomBytes(4).toString('hex');
  private nextRid = 1;
  private readonly listeners: { connect: () => void; message: (topic: string, payload: Buffer) => void; close: () => void };

  constructor(
    private readonly opts: { requestTimeoutMs: number; log: Logger },
    private readonly events: TwinClientEvents,
  ) {
    this.listeners = {
      connect: () => this.events.onConnect(),
      message: (topic, payload) => this.onMessage(topic, payload),
      close: () => this.failAll('connection closed'),
    };
  }

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  /** Starts listening on an mqtt.js client (the uplink's); fires onConnect now if it is already up. */
  attach(client: MqttClient): void {
    this.detach();
    this.client = client;
    client.on('connect', this.listeners.connect);
    client.on('message', this.listeners.message);
    client.on('close', this.listeners.close);
    if (client.connected) setImmediate(this.listeners.connect);
  }

  detach(): void {
    const c = this.client;
    if (!c) return;
    c.off('connect', this.listeners.connect);
    c.off('message', this.listeners.message);
    c.off('close', this.listeners.close);
    this.client = undefined;
    this.failAll('twin client detached');
  }

  /** Subscribes to replies and desired patches (IoT Hub wants both before any request). */
  subscribe(): Promise<void> {
    return new Promise((resolve, reject) => {
      const c = this.client;
      if (!c?.connected) return reject(new EdgetwinError(ErrorCodes.TWIN, 'not connected'));
      c.subscribe([twinTopics.responses, twinTopics.desiredPatches], { qos: 0 }, (err, granted) => {
        if (err) return reject(new EdgetwinError(ErrorCodes.TWIN, `twin subscribe failed: ${err.message}`, { cause: err }));
        if (granted?.some((g) => g.qos === 128))
          return reject(new EdgetwinError(ErrorCodes.TWIN, 'twin subscription refused by the collector'));
        resolve();
      });
    });
  }

  async get(): Promise<TwinDocs> {
    const res = await this.request('get', (rid) => twinTopics.get(rid), '');
    let doc: unknown;
    try {
      doc = JSON.parse(res.body.toString('utf8'));
    } catch (cause) {
      throw new EdgetwinError(ErrorCodes.TWIN, 'twin GET reply is not JSON', { cause });
    }
    if (!isPlainObject(doc)) throw new EdgetwinError(ErrorCodes.TWIN, 'twin GET reply is not an object');
    const d = splitVersion(doc['desired']);
    const r = splitVersion(doc['reported']);
    return { desired: d.props, desiredVersion: d.version, reported: r.props, reportedVersion: r.version };
  }

  /** Resolves to the reported $version the collector assigned, once the patch is durable there. */
  async patchReported(patch: JsonObject): Promise<number> {
    const res = await this.request('reported', (rid) => twinTopics.patchReported(rid), JSON.stringify(patch));
    return res.version ?? 0;
  }

  private request(
    op: string,
    topicFor: (rid: string) => string,
    body: string,
  ): Promise<{ status: number; version: number | undefined; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const c = this.client;
      if (!c?.connected) return reject(new EdgetwinError(ErrorCodes.TWIN, `twin ${op}: not connected`));
      const rid = `${this.ridPrefix}-${this.nextRid++}`;
      const timer = setTimeout(() => {
        this.pending.delete(rid);
        reject(new EdgetwinError(ErrorCodes.TWIN, `twin ${op}: no reply within ${this.opts.requestTimeoutMs} ms`));
      }, this.opts.requestTimeoutMs);
      this.pending.set(rid, {
        timer,
        reject,
        resolve: (r) => {
          if (r.status >= 200 && r.status < 300) return resolve(r);
          let detail = r.body.toString('utf8').slice(0, 300);
          try {
            const e = JSON.parse(detail) as { errorCode?: unknown; message?: unknown };
            detail = `${String(e.errorCode)}: ${String(e.message)}`;
          } catch {
            // not JSON: keep the raw text
          }
          reject(new EdgetwinError(ErrorCodes.TWIN, `twin ${op} answered ${r.status} (${detail})`, { details: { status: r.status } }));
        },
      });
      // QoS 0 as IoT Hub's own SDK does: the reply is the acknowledgement.
      c.publish(topicFor(rid), body, { qos: 0 }, (err) => {
        if (!err) return;
        const p = this.pending.get(rid);
        if (!p) return;
        clearTimeout(p.timer);
        this.pending.delete(rid);
        reject(new EdgetwinError(ErrorCodes.TWIN, `twin ${op} not sent: ${err.message}`, { cause: err }));
      });
    });
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (!topic.startsWith('$iothub/twin/')) return;
    const t = parseTwinTopic(topic);
    if (t.kind === 'response') {
      const p = t.rid === undefined ? undefined : this.pending.get(t.rid);
      if (!p) return; // a reply to a request that timed out, or to an earlier run
      clearTimeout(p.timer);
      this.pending.delete(t.rid!);
      p.resolve({ status: t.status, version: t.version, body: payload });
    } else if (t.kind === 'desired') {
      let doc: unknown;
      try {
        doc = JSON.parse(payload.toString('utf8'));
      } catch {
        this.opts.log.warn({ code: ErrorCodes.BAD_PAYLOAD, topic }, 'desired patch is not JSON: ignored (the next GET re-syncs)');
        return;
      }
      const { props, version } = splitVersion(doc);
      this.events.onDesiredPatch(props, t.version ?? version);
    }
  }

  private failAll(why: string): void {
    for (const [rid, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new EdgetwinError(ErrorCodes.TWIN, `twin request ${rid}: ${why}`));
    }
    this.pending.clear();
  }
}
