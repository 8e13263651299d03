/**
 * IoT Hub's device-twin protocol on the site broker: GET answers from the local twin store,
 * reported patches are answered 204 only once they are in the spool (they ride the sinks to the
 * cloud like telemetry) and in the twin store, and desired changes are pushed to the device's
 * connected clients. Every reply goes to the one client it is for (`client.publish`), never through
 * the broker's routing; a device publishing on a reply or desired topic would be spoofing other
 * devices and is refused.
 */
import type { Client, PublishPacket } from 'aedes';
import { EdgetwinError, ErrorCodes, errorMessage, isEdgetwinError, type ErrorCode } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { mergePatch, type JsonObject } from '../../common/merge-patch.js';
import { counter, type Registry } from '../../common/metrics.js';
import { WIRE_VERSION, type ReportedMessage } from '../../common/wire/record.js';
import { checkTwinDocument, parseTwinTopic, twinErrorBody, twinTopics } from '../../common/wire/twin-protocol.js';
import type { TwinHandler } from '../broker/broker.js';
import type { SpoolWriter } from '../spool/spool-writer.js';
import type { DesiredChange, SqliteTwinStore } from './twin-docs-store.js';

export interface IotHubTwinDeps {
  store: SqliteTwinStore;
  spoolWriter: SpoolWriter;
  log: Logger;
  registry: Registry;
  /** Largest reported patch, and largest reported document after merging (IoT Hub: 32 KiB). */
  maxDocBytes: number;
}

type SubscribedClient = Client & { subscriptions?: Record<string, unknown> };

const STATUS: Partial<Record<ErrorCode, number>> = {
  [ErrorCodes.BAD_PAYLOAD]: 400,
  [ErrorCodes.BAD_TOPIC]: 400,
  [ErrorCodes.PAYLOAD_TOO_LARGE]: 413,
  [ErrorCodes.BAD_VALUE]: 400,
  [ErrorCodes.LIMIT_EXCEEDED]: 400,
};

export class IotHubTwinHandler implements TwinHandler {
  /** Clients that spoke twin (subscribed or requested) per device: where desired patches go. */
  private readonly clients = new Map<string, Set<SubscribedClient>>();
  /** Payloads of our own replies: the only `$iothub/` packets the broker may forward. */
  private readonly direct = new WeakSet<Buffer>();
  /** Reported versions handed out but not yet committed to the store, per device. */
  private readonly reserved = new Map<string, number>();
  private readonly mRequests;
  private readonly mRejected;
  private readonly mPushed;

  constructor(private readonly deps: IotHubTwinDeps) {
    const r = deps.registry;
    this.mRequests = counter(r, 'edgetwin_twin_requests_total', 'Twin requests answered, by operation and status', ['op', 'status']);
    this.mRejected = counter(r, 'edgetwin_twin_rejected_total', 'Twin publishes refused or answered with an error', ['code']);
    this.mPushed = counter(r, 'edgetwin_twin_desired_pushed_total', 'Desired-property patches sent to device clients');
  }

  onSubscribe(device: string, client: Client): void {
    this.track(device, client);
  }

  onPublish(device: string, client: Client, packet: PublishPacket, done: (err?: Error | null) => void): void {
    const t = parseTwinTopic(packet.topic);
    if (t.kind === 'response' || t.kind === 'desired') {
      this.mRejected.inc({ code: ErrorCodes.FORBIDDEN });
      this.deps.log.warn({ device, topic: packet.topic, code: ErrorCodes.FORBIDDEN }, 'device published on a twin reply topic: refused');
      return done(new EdgetwinError(ErrorCodes.FORBIDDEN, 'devices may not publish twin replies or desired patches'));
    }
    this.track(device, client);
    if (t.rid === undefined) {
      // Without a request id there is no one to answer: drop and count, as for any bad input.
      this.mRejected.inc({ code: ErrorCodes.BAD_TOPIC });
      this.deps.log.warn({ device, topic: packet.topic, code: ErrorCodes.BAD_TOPIC }, 'twin request without $rid dropped');
      return done(null);
    }
    const rid = t.rid;
    if (t.kind === 'get') {
      done(null);
      return this.answerGet(device, client, rid);
    }
    if (t.kind === 'reported') return this.patchReported(device, client, rid, packet.payload as Buffer, done);
    done(null);
    this.fail(client, 'unknown', rid, new EdgetwinError(ErrorCodes.BAD_TOPIC, `unsupported twin operation: ${packet.topic}`));
  }

  /** How many connected clients of the device listen for desired patches. */
  listening(device: string): number {
    const set = this.clients.get(device);
    return set ? [...this.live(device, set)].filter((c) => c.subscriptions?.[twinTopics.desiredPatches]).length : 0;
  }

  /** Lets the broker forward a `$iothub/` packet only when it is one of our own replies. */
  isDirect(packet: { payload: unknown }): boolean {
    return Buffer.isBuffer(packet.payload) && this.direct.has(packet.payload);
  }

  private answerGet(device: string, client: Client, rid: string): void {
    const twin = this.deps.store.get(device);
    const body = JSON.stringify({
      desired: { ...twin.desired, $version: twin.desiredVersion },
      reported: { ...twin.reported, $version: twin.reportedVersion },
    });
    this.send(client, twinTopics.response(200, rid), Buffer.from(body));
    this.mRequests.inc({ op: 'get', status: '200' });
  }

  private patchReported(device: string, client: Client, rid: string, payload: Buffer, done: (err?: Error | null) => void): void {
    let patch: JsonObject;
    let version: number;
    try {
      let parsed: unknown;
      try {
        parsed = JSON.parse(payload.toString('utf8'));
      } catch (cause) {
        throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, 'reported patch is not valid JSON', { cause });
      }
      checkTwinDocument(parsed, this.deps.maxDocBytes, 'reported patch');
      patch = parsed;
      const cur = this.deps.store.get(device);
      checkTwinDocument(mergePatch(cur.reported, patch), this.deps.maxDocBytes, 'reported document');
      version = Math.max(cur.reportedVersion, this.reserved.get(device) ?? 0) + 1;
    } catch (err) {
      done(null);
      return this.fail(client, 'reported', rid, err);
    }
    this.reserved.set(device, version);
    const msg: ReportedMessage = { v: WIRE_VERSION, kind: 'reported', device, ts: Date.now(), version, patch };
    // Spool first: the patch is only promised (204) once it will reach the cloud. The store is
    // updated after, so a failed spool write never leaves a patch the cloud will not get.
    this.deps.spoolWriter.write({ body: JSON.stringify(msg), key: device }, (err) => {
      if (this.reserved.get(device) === version) this.reserved.delete(device);
      done(null);
      if (err) return this.fail(client, 'reported', rid, err);
      try {
        this.deps.store.patchReported(device, patch, version);
      } catch (e) {
        return this.fail(client, 'reported', rid, e);
      }
      this.send(client, twinTopics.response(204, rid, version), Buffer.alloc(0));
      this.mRequests.inc({ op: 'reported', status: '204' });
    });
  }

  /** Sends each change to the connected clients of its device that subscribed to desired patches. */
  pushDesired(changes: readonly DesiredChange[]): void {
    for (const c of changes) {
      const set = this.clients.get(c.device);
      if (!set) continue;
      const body = Buffer.from(JSON.stringify({ ...c.patch, $version: c.version }));
      for (const client of this.live(c.device, set)) {
        if (!client.subscriptions?.[twinTopics.desiredPatches]) continue;
        this.send(client, twinTopics.desiredPatch(c.version), body);
        this.mPushed.inc();
      }
    }
  }

  private fail(client: Client, op: string, rid: string, err: unknown): void {
    const code = isEdgetwinError(err) ? err.code : ErrorCodes.INTERNAL;
    const status = STATUS[code] ?? (code === ErrorCodes.CLOSED || code === ErrorCodes.STORE_FULL ? 503 : 500);
    this.mRejected.inc({ code });
    this.mRequests.inc({ op, status: String(status) });
    this.deps.log.warn({ clientId: client.id, op, code, err }, 'twin request failed');
    this.send(client, twinTopics.response(status, rid), Buffer.from(twinErrorBody(code, errorMessage(err))));
  }

  private send(client: Client, topic: string, payload: Buffer): void {
    if (client.closed) return;
    this.direct.add(payload);
    client.publish({ cmd: 'publish', topic, payload, qos: 0, retain: false, dup: false }, (err) => {
      if (err) this.deps.log.debug({ clientId: client.id, err: err.message }, 'twin reply not delivered');
    });
  }

  private track(device: string, client: Client): void {
    let set = this.clients.get(device);
    if (!set) this.clients.set(device, (set = new Set()));
    set.add(client);
    this.live(device, set);
  }

  /** Drops clients that have gone (the broker gives no disconnect hook); returns those left. */
  private live(device: string, set: Set<SubscribedClient>): Set<SubscribedClient> {
    for (const c of set) if (c.closed) set.delete(c);
    if (set.size === 0) this.clients.delete(device);
    return set;
  }
}
