/**
 * The site broker (aedes). A QoS 1 PUBACK from here means the message is in the spool on disk:
 * aedes writes the PUBACK right after authorizePublish calls back, so that is where the spool
 * write happens (with group commit). Payloads are validated against the wire schema first; a bad
 * one is acknowledged (so the device does not resend it forever), counted and not stored.
 * A connected device's telemetry PUBLISHes skip aedes' parser and handlers (mqtt-fast-path.ts)
 * and meet the same rate limit, checks and spool write in spoolTelemetry.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex, Writable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { Aedes, type AuthenticateError, type Client, type PublishPacket } from 'aedes';
import { EdgetwinError, ErrorCodes, errorMessage, isEdgetwinError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { counter, gauge, type Registry } from '../common/metrics.js';
import { modelTopics } from '../common/model-protocol.js';
import { DEVICE_ID_PATTERN, topics } from '../common/record.js';
import { deviceFromUsername, type AuthContext, type DeviceAuthenticator } from './auth.js';
import type { MqttListenerConfig } from './config.js';
import type { DeviceSequencer } from './device-seq.js';
import { parseDeviceMessage, propertyBag } from './iothub-telemetry.js';
import { MqttListeners, type ListenerPorts } from './listeners.js';
import { AckWriter, attachFastPath, type FastPathHandler } from './mqtt-fast-path.js';
import { TokenBuckets } from './rate-limit.js';
import type { SpoolWriter } from './spool-writer.js';

/**
 * Handles IoT Hub device-twin traffic (`$iothub/twin/...`). Replies must go to the one client
 * (`client.publish`), never through the broker's routing: every device subscribes to the same
 * `$iothub/twin/res/#` topic.
 */
export interface TwinHandler {
  onPublish(device: string, client: Client, packet: PublishPacket, done: (err?: Error | null) => void): void;
  /** A device subscribed to one of the twin topics (e.g. to push desired changes made while it was away). */
  onSubscribe?(device: string, client: Client, topic: string): void;
  /** True for the handler's own replies: the only `$iothub/` packets the broker may forward to a client. */
  isDirect?(packet: PublishPacket): boolean;
}

/** Topics a device may subscribe to besides its own `devices/{id}/…` tree. */
const TWIN_SUBSCRIPTIONS = new Set([topics.twinResponses, topics.twinDesiredPatches]);

export interface MqttBrokerDeps {
  auth: DeviceAuthenticator;
  twin?: TwinHandler;
  /** Serves rolled-out models to devices (`$edgetwin/models/…`, collector/models/mqtt-models.ts). */
  models?: TwinHandler;
  spoolWriter: SpoolWriter;
  log: Logger;
  registry: Registry;
  /** Gives collector-built readings (IoT Hub SDK metric maps) their seq; without it such messages are refused. */
  sequencer?: DeviceSequencer;
  /** How often to drop revoked devices and expired SAS tokens (default 500 ms). */
  revocationPollMs?: number;
}

const DEVICE = Symbol('edgetwin.device');
const EMPTY_ID = Symbol('edgetwin.emptyClientId');
const EXPIRES = Symbol('edgetwin.expiresAtMs');
type DeviceClient = Client & { [DEVICE]?: string; [EMPTY_ID]?: boolean; [EXPIRES]?: number };
const deviceIdRe = new RegExp(DEVICE_ID_PATTERN);
/** Telemetry publishes already in the spool: aedes routes them to no one (see start()). */
const SPOOLED = new WeakSet<PublishPacket>();

/** CONNACK return codes (MQTT 3.1.1, 3.2.2.3). */
const IDENTIFIER_REJECTED = 2;
const SERVER_UNAVAILABLE = 3;
const BAD_USERNAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;

export class MqttBroker {
  private aedes: Aedes | undefined;
  private listeners: MqttListeners | undefined;
  private readonly devices = new Map<string, DeviceClient>();
  private readonly buckets: TokenBuckets;
  private enforceTimer: NodeJS.Timeout | undefined;
  private lastGeneration = 0;
  private readonly mRejected;
  private readonly mAccepted;
  private readonly mClients;
  private readonly mAuthFailures;
  private readonly mConnErrors;
  private readonly mDropped;
  private readonly mDelayed;
  private readonly mSkippedFields;
  ports: ListenerPorts = {};
  /** PUBACKs of fast-path publishes (mqtt-fast-path.ts), one write per connection and commit group. */
  private readonly acks = new AckWriter();
  /** Sockets corked while one group commit's PUBACKs are written: one writev each, not one write per PUBACK. */
  private readonly corked = new Set<Writable>();
  /** Readings acknowledged in the current group, counted once per group rather than per message. */
  private acceptedInGroup = 0;
  private groupOpen = false;

  constructor(private readonly cfg: MqttListenerConfig, private readonly deps: MqttBrokerDeps) {
    const r = deps.registry;
    this.mRejected = counter(r, 'edgetwin_broker_rejected_total', 'Publishes refused or dropped', ['code']);
    this.mAccepted = counter(r, 'edgetwin_broker_accepted_readings_total', 'Readings spooled and acknowledged');
    this.mClients = gauge(r, 'edgetwin_broker_clients', 'Connected MQTT clients');
    this.mAuthFailures = counter(r, 'edgetwin_broker_auth_failures_total', 'Refused connections', ['reason']);
    this.mConnErrors = counter(r, 'edgetwin_broker_connection_errors_total', 'Connections closed on an error: garbage bytes, bad packets, no CONNECT in time, resets', ['phase']);
    this.mDropped = counter(r, 'edgetwin_broker_disconnects_total', 'Connected devices the collector dropped', ['reason']);
    this.mDelayed = counter(r, 'edgetwin_broker_rate_limited_total', 'Publishes over the per-device rate (delayed or refused)', ['action']);
    this.mSkippedFields = counter(r, 'edgetwin_broker_skipped_fields_total', 'Non-numeric fields of IoT Hub SDK metric maps, not stored');
    this.buckets = new TokenBuckets(cfg.rateLimit.messagesPerS, cfg.rateLimit.burst);
  }

  async start(): Promise<number> {
    const aedes = await Aedes.createBroker({
      // A client may pipeline packets right after CONNECT; they wait for authentication. aedes counts
      // them (default 42); capPacketSize bounds their bytes instead.
      queueLimit: 1000,
      // Remember an empty client id before aedes invents one, so authenticate can refuse it.
      preConnect: (client, packet, done) => {
        (client as DeviceClient)[EMPTY_ID] = !packet.clientId;
        done(null, true);
      },
      authenticate: (client, username, password, done) => this.authenticate(client as DeviceClient, username, password, done),
      authorizePublish: (client, packet, done) => this.authorizePublish(client as DeviceClient | null, packet, done),
      // Nothing a device publishes under $iothub/ is ever routed to other clients: only the twin handler's direct replies pass.
      authorizeForward: (_client, packet) => (!packet.topic.startsWith('$iothub/') || this.deps.twin?.isDirect?.(packet) ? packet : null),
      authorizeSubscribe: (client, sub, done) => {
        const device = (client as DeviceClient)[DEVICE];
        if (device && sub.topic.startsWith(`devices/${device}/`)) return done(null, sub);
        if (device && this.deps.models && sub.topic === modelTopics.responses) return done(null, sub);
        if (device && this.deps.twin && TWIN_SUBSCRIPTIONS.has(sub.topic)) {
          done(null, sub);
          this.deps.twin.onSubscribe?.(device, client, sub.topic);
          return;
        }
        // SUBACK 0x80 for this filter; the connection and its other subscriptions stay.
        this.mRejected.inc({ code: ErrorCodes.FORBIDDEN });
        this.deps.log.warn({ clientId: client.id, topic: sub.topic, code: ErrorCodes.FORBIDDEN }, 'subscription outside the device topics refused');
        done(null, null);
      },
    });
    // Device-to-cloud telemetry ends in the spool, as in IoT Hub: it is never routed back to MQTT
    // subscribers. Skipping aedes' routing (topic matching, per-packet copies) for it is most of
    // the broker's cost per message once the spool write is done.
    const route = aedes.publish.bind(aedes) as unknown as (packet: PublishPacket, client: Client | null, done?: (err?: Error) => void) => void;
    (aedes as unknown as { publish: typeof route }).publish = (packet, client, done) => {
      if (typeof client === 'function') return route(packet, null, client);
      if (SPOOLED.has(packet)) return done?.();
      route(packet, client, done);
    };
    this.aedes = aedes;
    aedes.on('client', (c: DeviceClient) => {
      if (c[DEVICE]) this.devices.set(c[DEVICE], c);
      this.mClients.set(aedes.connectedClients);
    });
    aedes.on('clientDisconnect', (c: DeviceClient) => {
      if (c[DEVICE] && this.devices.get(c[DEVICE]) === c) this.devices.delete(c[DEVICE]);
      this.mClients.set(aedes.connectedClients);
    });
    aedes.on('clientError', (client, err) => {
      this.mConnErrors.inc({ phase: 'connected' });
      this.deps.log.debug({ clientId: client.id, err: err.message }, 'client error');
    });
    // Garbage on the socket, a malformed CONNECT, no CONNECT in time: closed before any device exists.
    aedes.on('connectionError', (client, err) => {
      this.mConnErrors.inc({ phase: 'connecting' });
      this.deps.log.debug({ clientId: client?.id, err: err.message }, 'connection error');
    });

    this.listeners = new MqttListeners(
      this.cfg,
      (stream, req) => this.handle(stream, req),
      this.deps.log,
      () => this.mConnErrors.inc({ phase: 'tls' }),
      this.deps.registry,
    );
    this.ports = await this.listeners.start();
    this.enforceTimer = setInterval(() => this.enforce(), this.deps.revocationPollMs ?? 500);
    this.enforceTimer.unref();
    return this.ports.mqtt ?? this.ports.mqtts ?? this.ports.ws ?? 0;
  }

  /** Serves one connection's byte stream (what the listeners hand over; tests pass their own streams). */
  handle(stream: Duplex, req?: IncomingMessage): Client {
    const aedes = this.aedes;
    if (!aedes) throw new EdgetwinError(ErrorCodes.CLOSED, 'broker is not running');
    return attachFastPath(capPacketSize(aedes.handle(stream, req), this.maxPacket), this.fast, this.acks, this.maxPacket);
  }

  /** A PUBLISH may carry a topic of up to 64 KiB besides its payload; anything longer is hostile. */
  private get maxPacket(): number {
    return this.cfg.maxPayloadBytes + 70 * 1024;
  }

  private readonly fast: FastPathHandler = {
    prefix: (client) => {
      const device = (client as DeviceClient)[DEVICE];
      return device === undefined ? undefined : Buffer.from(topics.telemetryPrefix(device));
    },
    publish: (client, payload, topic, done) => {
      const device = (client as DeviceClient)[DEVICE]!;
      if (!this.buckets.enabled) return this.spoolTelemetry(device, payload, topic, done);
      this.throttle(device, () => this.spoolTelemetry(device, payload, topic, done), done);
    },
  };

  private authenticate(
    client: DeviceClient,
    username: string | undefined,
    password: Buffer | undefined,
    done: (err: AuthenticateError | null, ok: boolean | null) => void,
  ): void {
    const refuse = (returnCode: number, reason: string, detail: string): void => {
      this.mAuthFailures.inc({ reason });
      this.deps.log.warn({ clientId: client.id, reason, err: detail }, 'connection refused');
      const err = new Error(detail) as AuthenticateError;
      err.returnCode = returnCode as AuthenticateError['returnCode'];
      done(err, null);
    };
    // MQTT-3.1.3-8: a zero-byte client id with CleanSession=0 must get CONNACK 2. Devices here are
    // named by their client id, so an empty one is refused with a clean session too.
    if (client[EMPTY_ID]) return refuse(IDENTIFIER_REJECTED, 'client_id', `empty client id (clean=${client.clean})`);
    const named = deviceFromUsername(username);
    if (!deviceIdRe.test(client.id) || (named !== undefined && named !== client.id)) {
      return refuse(IDENTIFIER_REJECTED, 'client_id', 'client id must be a valid device id and equal the device named in the username');
    }
    if (this.devices.size >= this.cfg.maxConnections && !this.devices.has(client.id)) {
      return refuse(SERVER_UNAVAILABLE, 'max_connections', `already ${this.devices.size} clients (mqtt.maxConnections)`);
    }
    Promise.resolve()
      .then(() => this.deps.auth.authenticate(client.id, username, password, this.authContext(client)))
      .then(
        (res) => {
          const who = typeof res === 'string' ? { device: res } : res;
          if (!who) return refuse(NOT_AUTHORIZED, 'refused', 'not authorized');
          client[DEVICE] = who.device;
          if (who.expiresAtMs !== undefined) client[EXPIRES] = who.expiresAtMs;
          done(null, true);
        },
        (err: unknown) => {
          if (isEdgetwinError(err, ErrorCodes.UNAUTHORIZED)) {
            const reason = String(err.details?.['reason'] ?? 'refused');
            const code = reason === 'unknown_device' || reason === 'revoked' ? NOT_AUTHORIZED : BAD_USERNAME_OR_PASSWORD;
            return refuse(code, reason, err.message);
          }
          refuse(SERVER_UNAVAILABLE, 'error', errorMessage(err));
        },
      );
  }

  private authContext(client: Client): AuthContext {
    const sock = (client.req?.socket ?? client.conn) as Partial<TLSSocket>;
    if (typeof sock.getPeerCertificate !== 'function') return {};
    const cn = sock.getPeerCertificate().subject?.CN;
    return { tls: { authorized: sock.authorized === true, cn: Array.isArray(cn) ? cn[0] : cn } };
  }

  /** Drops devices that were revoked, or whose SAS token expired, while connected. */
  private enforce(): void {
    const auth = this.deps.auth;
    const generation = auth.generation?.() ?? 0;
    const recheck = generation !== this.lastGeneration;
    this.lastGeneration = generation;
    const now = Date.now();
    for (const [device, c] of this.devices) {
      let reason: string | undefined;
      if (recheck && auth.stillAllowed && !auth.stillAllowed(device)) reason = 'revoked';
      else if (c[EXPIRES] !== undefined && c[EXPIRES] <= now) reason = 'token_expired';
      if (!reason) continue;
      this.mDropped.inc({ reason });
      this.deps.log.warn({ device, reason }, 'disconnecting device');
      this.devices.delete(device);
      c.close();
    }
  }

  private authorizePublish(client: DeviceClient | null, packet: PublishPacket, done: (err?: Error | null) => void): void {
    const device = client?.[DEVICE];
    // Broker-internal publishes ($SYS heartbeats, wills of vanished clients) are not device data.
    if (!client) return done(packet.topic.startsWith('$SYS/') ? null : new Error('no client'));
    const twin = device && this.deps.twin && packet.topic.startsWith(topics.twinPrefix) ? this.deps.twin : device && packet.topic.startsWith(modelTopics.prefix) ? this.deps.models : undefined;
    if (!device || (!twin && !packet.topic.startsWith(topics.telemetryPrefix(device)))) {
      // MQTT 3.1.1 has no negative PUBACK: the connection is closed and nothing acknowledged.
      this.mRejected.inc({ code: ErrorCodes.FORBIDDEN });
      this.deps.log.warn({ clientId: client.id, topic: packet.topic, code: ErrorCodes.FORBIDDEN }, 'publish outside the device topic refused');
      return done(new EdgetwinError(ErrorCodes.FORBIDDEN, 'topic not allowed'));
    }
    if (twin) return this.throttle(device, () => twin.onPublish(device, client, packet, done), done);
    // Telemetry is never retained: topics carry property bags, so retained copies would pile up in memory.
    packet.retain = false;
    const spooled = (err: Error | null): void => {
      if (!err) {
        SPOOLED.add(packet);
        // PUBACKs of earlier fast-path publishes on this connection go first (MQTT-4.6.0-2).
        this.acks.flush(client.conn);
        this.cork(client.conn);
      }
      done(err);
    };
    this.throttle(device, () => this.spoolTelemetry(device, packet.payload as Buffer, () => packet.topic, spooled), done);
  }

  /** The per-device rate limit (mqtt.rateLimit) in front of `next`. */
  private throttle(device: string, next: () => void, done: (err: Error | null) => void): void {
    if (!this.buckets.enabled) return next();
    if (this.cfg.rateLimit.onExceed === 'disconnect') {
      if (this.buckets.tryTake(device)) return next();
      this.mDelayed.inc({ action: 'disconnect' });
      this.mRejected.inc({ code: ErrorCodes.RATE_LIMITED });
      this.mDropped.inc({ reason: 'rate_limit' });
      this.deps.log.warn({ device, code: ErrorCodes.RATE_LIMITED }, 'publish rate over mqtt.rateLimit: disconnecting, unacknowledged');
      return done(new EdgetwinError(ErrorCodes.RATE_LIMITED, 'publish rate limit exceeded'));
    }
    const waitMs = this.buckets.takeOrWait(device);
    if (waitMs === 0) return next();
    this.mDelayed.inc({ action: 'delay' });
    setTimeout(next, waitMs);
  }

  private spoolTelemetry(device: string, payload: Buffer, topic: () => string, done: (err: Error | null) => void): void {
    if (payload.length > this.cfg.maxPayloadBytes) {
      this.mRejected.inc({ code: ErrorCodes.PAYLOAD_TOO_LARGE });
      this.deps.log.warn({ device, bytes: payload.length, code: ErrorCodes.PAYLOAD_TOO_LARGE }, 'oversize payload dropped');
      // Acknowledged in turn, after the publishes ahead of it are on disk (PUBACKs keep their order).
      return this.deps.spoolWriter.after(done);
    }
    let readings: number;
    let build: (() => string) | undefined;
    try {
      const msg = parseDeviceMessage(device, payload, () => propertyBag(topic(), topics.telemetryPrefix(device)), Date.now());
      readings = msg.kind === 'batch' ? msg.readings : msg.readings.length;
      if (msg.kind === 'metrics') {
        const seq = this.deps.sequencer;
        if (!seq) throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, 'metric maps need a sequencer; send a telemetry batch');
        if (msg.skipped > 0) this.mSkippedFields.inc(msg.skipped);
        build = () => seq.assign(device, msg.readings);
      }
    } catch (err) {
      const code = isEdgetwinError(err) ? err.code : ErrorCodes.BAD_PAYLOAD;
      this.mRejected.inc({ code });
      this.deps.log.warn({ device, code, err: errorMessage(err) }, 'invalid payload dropped');
      return this.deps.spoolWriter.after(done);
    }
    const finish = (err: Error | null): void => {
      if (err) {
        this.mRejected.inc({ code: isEdgetwinError(err) ? err.code : ErrorCodes.INTERNAL });
        return done(err);
      }
      this.inGroup(readings);
      done(null);
    };
    if (build) this.deps.spoolWriter.write({ body: '', key: device }, finish, build);
    else this.deps.spoolWriter.write({ body: payload.toString('utf8'), key: device }, finish);
  }

  /** The spool writer answers a whole group in one go; what follows it runs once, after the last PUBACK. */
  private inGroup(readings: number): void {
    this.acceptedInGroup += readings;
    this.openGroup();
  }

  private openGroup(): void {
    if (!this.groupOpen) {
      this.groupOpen = true;
      process.nextTick(() => {
        for (const c of this.corked) c.uncork();
        this.corked.clear();
        this.mAccepted.inc(this.acceptedInGroup);
        this.acceptedInGroup = 0;
        this.groupOpen = false;
      });
    }
  }

  /** aedes writes one PUBACK per publish; corked, a group's PUBACKs leave in one writev. */
  private cork(conn: Writable): void {
    this.openGroup();
    if (this.corked.has(conn) || typeof conn.cork !== 'function') return;
    conn.cork();
    this.corked.add(conn);
  }

  get clients(): number {
    return this.aedes?.connectedClients ?? 0;
  }

  async stop(): Promise<void> {
    if (this.enforceTimer) clearInterval(this.enforceTimer);
    this.enforceTimer = undefined;
    await this.listeners?.stop();
    this.listeners = undefined;
    const aedes = this.aedes;
    this.aedes = undefined;
    if (aedes) await new Promise<void>((resolve) => aedes.close(() => resolve()));
  }
}

interface MqttPacketParser {
  packet: { length: number };
  _parseLength(): boolean;
  _emitError(err: Error): void;
}

/**
 * aedes has no packet size limit: mqtt-packet would buffer a packet of any announced length (up to
 * 256 MiB), before authentication even. This refuses one as soon as its length header is read, and
 * bounds the bytes a client may send before its CONNACK (aedes queues those packets in memory).
 */
function capPacketSize(client: Client, maxBytes: number): Client {
  const parser = (client as unknown as { _parser?: MqttPacketParser })._parser;
  if (!parser || typeof parser._parseLength !== 'function') return client;
  const parseLength = parser._parseLength;
  const maxBeforeConnack = Math.max(4 * 1024 * 1024, 2 * maxBytes);
  let beforeConnack = 0;
  parser._parseLength = function (this: MqttPacketParser): boolean {
    const ok = parseLength.call(this);
    if (!ok) return ok;
    if (!(client as unknown as { connackSent?: boolean }).connackSent) beforeConnack += this.packet.length;
    if (this.packet.length > maxBytes || beforeConnack > maxBeforeConnack) {
      this._emitError(new EdgetwinError(ErrorCodes.PAYLOAD_TOO_LARGE, `packet of ${this.packet.length} bytes exceeds ${maxBytes}, or ${beforeConnack} bytes before CONNACK`));
      return false;
    }
    return ok;
  };
  return client;
}
