/**
 * The site broker (aedes). A QoS 1 PUBACK from here means the message is in the spool on disk:
 * aedes writes the PUBACK right after authorizePublish calls back, so that is where the spool
 * write happens (with group commit). Payloads are validated against the wire schema first; a bad
 * one is acknowledged (so the device does not resend it forever), counted and kept in quarantine.
 * A connected device's telemetry PUBLISHes skip aedes' parser and handlers (fast-path.ts)
 * and meet the same rate limit, checks and spool write (telemetry-spool.ts).
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { Aedes, type AuthenticateError, type Client, type PublishPacket } from 'aedes';
import { EdgetwinError, ErrorCodes, errorMessage, isEdgetwinError } from '../../common/errors.js';
import { modelTopics } from '../../common/wire/model-protocol.js';
import { methodTopics } from '../../common/wire/c2d-protocol.js';
import { DEVICE_ID_PATTERN, topics } from '../../common/wire/record.js';
import { deviceFromUsername, type AuthContext } from './auth.js';
import type { MqttListenerConfig } from './config.js';
import { MqttListeners, type ListenerPorts } from './listeners.js';
import { AckWriter, attachFastPath, checkFastPath, type FastPathHandler } from './fast-path.js';
import { AckGroup } from './ack-group.js';
import { brokerMetrics, fastPathCounter, type BrokerMetrics } from './broker-metrics.js';
import type { MqttBrokerDeps } from './broker-deps.js';
import { capPacketSize } from './packet-cap.js';
import { followReadiness, watchPubacks } from './device-events.js';
import { TokenBuckets } from '../../common/token-bucket.js';
import { TakeoverWatch } from './takeovers.js';
import { TelemetrySpool } from './telemetry-spool.js';

export type { MqttBrokerDeps, TwinHandler } from './broker-deps.js';

/** Topics a device may subscribe to besides its own `devices/{id}/…` tree. */
const TWIN_SUBSCRIPTIONS = new Set([topics.twinResponses, topics.twinDesiredPatches]);

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
const NOT_AUTHORIZED = 5;

export class MqttBroker {
  private aedes: Aedes | undefined;
  private listeners: MqttListeners | undefined;
  private readonly devices = new Map<string, DeviceClient>();
  private readonly buckets: TokenBuckets;
  private enforceTimer: NodeJS.Timeout | undefined;
  private lastGeneration = 0;
  private readonly m: BrokerMetrics;
  ports: ListenerPorts = {};
  /** PUBACKs of fast-path publishes (fast-path.ts), one write per connection and commit group. */
  private readonly acks = new AckWriter();
  private readonly group: AckGroup;
  private readonly takeovers: TakeoverWatch;
  private readonly telemetry: TelemetrySpool;

  constructor(
    private readonly cfg: MqttListenerConfig,
    private readonly deps: MqttBrokerDeps,
  ) {
    this.m = brokerMetrics(deps.registry);
    this.takeovers = new TakeoverWatch(deps.registry, deps.log);
    this.group = new AckGroup(this.m.accepted);
    this.telemetry = new TelemetrySpool(cfg.maxPayloadBytes, deps, this.m, this.group);
    this.buckets = new TokenBuckets(cfg.rateLimit.messagesPerS, cfg.rateLimit.burst);
    fastPathCounter(deps.registry, this.acks);
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
      authorizeForward: (_client, packet) =>
        !packet.topic.startsWith('$iothub/') || this.deps.twin?.isDirect?.(packet) || this.deps.methods?.isDirect?.(packet) ? packet : null,
      authorizeSubscribe: (client, sub, done) => {
        const device = (client as DeviceClient)[DEVICE];
        if (device && sub.topic.startsWith(`devices/${device}/`)) return done(null, sub);
        if (device && this.deps.models && sub.topic === modelTopics.responses) return done(null, sub);
        if (device && this.deps.methods && sub.topic === methodTopics.requests) {
          done(null, sub);
          this.deps.methods.onSubscribe?.(device, client, sub.topic);
          return;
        }
        if (device && this.deps.twin && TWIN_SUBSCRIPTIONS.has(sub.topic)) {
          done(null, sub);
          this.deps.twin.onSubscribe?.(device, client, sub.topic);
          return;
        }
        // SUBACK 0x80 for this filter; the connection and its other subscriptions stay.
        this.m.rejected.inc({ code: ErrorCodes.FORBIDDEN });
        this.deps.log.warn(
          { clientId: client.id, topic: sub.topic, code: ErrorCodes.FORBIDDEN },
          'subscription outside the device topics refused',
        );
        done(null, null);
      },
    });
    // Fails loudly (the collector does not start) when aedes' internals changed under the fast path.
    checkFastPath(aedes);
    // Device-to-cloud telemetry ends in the spool, as in IoT Hub: it is never routed back to MQTT
    // subscribers. Skipping aedes' routing (topic matching, per-packet copies) for it is most of
    // the broker's cost per message once the spool write is done.
    const route = aedes.publish.bind(aedes) as unknown as (
      packet: PublishPacket,
      client: Client | null,
      done?: (err?: Error) => void,
    ) => void;
    (aedes as unknown as { publish: typeof route }).publish = (packet, client, done) => {
      if (typeof client === 'function') return route(packet, null, client);
      if (SPOOLED.has(packet)) return done?.();
      route(packet, client, done);
    };
    this.aedes = aedes;
    aedes.on('client', (c: DeviceClient) => {
      if (c[DEVICE]) this.devices.set(c[DEVICE], c);
      this.m.clients.set(aedes.connectedClients);
    });
    aedes.on('clientDisconnect', (c: DeviceClient) => {
      if (c[DEVICE] && this.devices.get(c[DEVICE]) === c) this.devices.delete(c[DEVICE]);
      this.m.clients.set(aedes.connectedClients);
      if (c[DEVICE]) this.deps.deviceEvents?.onGone(c[DEVICE], c);
    });
    if (this.deps.deviceEvents) followReadiness(aedes, (c) => (c as DeviceClient)[DEVICE], this.deps.deviceEvents);
    aedes.on('clientError', (client, err) => {
      this.m.connErrors.inc({ phase: 'connected' });
      this.deps.log.debug({ clientId: client.id, err: err.message }, 'client error');
    });
    // Garbage on the socket, a malformed CONNECT, no CONNECT in time: closed before any device exists.
    aedes.on('connectionError', (client, err) => {
      this.m.connErrors.inc({ phase: 'connecting' });
      this.deps.log.debug({ clientId: client?.id, err: err.message }, 'connection error');
    });

    this.listeners = new MqttListeners(
      this.cfg,
      (stream, req) => this.handle(stream, req),
      this.deps.log,
      () => this.m.connErrors.inc({ phase: 'tls' }),
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
    const client = attachFastPath(capPacketSize(aedes.handle(stream, req), this.maxPacket), this.fast, this.acks, this.maxPacket);
    if (this.deps.deviceEvents) watchPubacks(client, () => (client as DeviceClient)[DEVICE], this.deps.deviceEvents);
    return client;
  }

  /** The connected client of a device, if any (cloud-to-device delivery writes to it directly). */
  deviceClient(device: string): Client | undefined {
    const c = this.devices.get(device);
    return c && c.connected && !c.closed ? c : undefined;
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
      if (!this.buckets.enabled) return this.telemetry.write(device, payload, topic, done);
      this.throttle(device, () => this.telemetry.write(device, payload, topic, done), done);
    },
  };

  private authenticate(
    client: DeviceClient,
    username: string | undefined,
    password: Buffer | undefined,
    done: (err: AuthenticateError | null, ok: boolean | null) => void,
  ): void {
    const refuse = (returnCode: number, reason: string, detail: string): void => {
      this.m.authFailures.inc({ reason });
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
    // At the limit only a connected device may come in again (a takeover), and its refusal answers 3
    // like the limit's: a 5 there would tell a prober which device ids are connected.
    const denied = this.devices.size >= this.cfg.maxConnections ? SERVER_UNAVAILABLE : NOT_AUTHORIZED;
    if (denied === SERVER_UNAVAILABLE && !this.devices.has(client.id)) {
      return refuse(SERVER_UNAVAILABLE, 'max_connections', `already ${this.devices.size} clients (mqtt.maxConnections)`);
    }
    Promise.resolve()
      .then(() => this.deps.auth.authenticate(client.id, username, password, this.authContext(client)))
      .then(
        (res) => {
          const who = typeof res === 'string' ? { device: res } : res;
          if (!who) return refuse(denied, 'refused', 'not authorized');
          client[DEVICE] = who.device;
          const open = this.devices.get(who.device);
          if (open && open !== client && !open.closed) this.takeovers.taken(who.device, open, client);
          if (who.expiresAtMs !== undefined) client[EXPIRES] = who.expiresAtMs;
          done(null, true);
        },
        (err: unknown) => {
          if (isEdgetwinError(err, ErrorCodes.UNAUTHORIZED)) {
            // One CONNACK code for every refusal of identity or credential (unknown, revoked, wrong
            // or expired): a different one would tell a prober which device ids exist. The reason
            // goes to the log and edgetwin_broker_auth_failures_total{reason} only.
            return refuse(denied, String(err.details?.['reason'] ?? 'refused'), err.message);
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
      this.m.dropped.inc({ reason });
      this.deps.log.warn({ device, reason }, 'disconnecting device');
      this.devices.delete(device);
      c.close();
    }
  }

  private authorizePublish(client: DeviceClient | null, packet: PublishPacket, done: (err?: Error | null) => void): void {
    const device = client?.[DEVICE];
    // Broker-internal publishes ($SYS heartbeats, wills of vanished clients) are not device data.
    if (!client) return done(packet.topic.startsWith('$SYS/') ? null : new Error('no client'));
    const twin =
      device && this.deps.twin && packet.topic.startsWith(topics.twinPrefix)
        ? this.deps.twin
        : device && packet.topic.startsWith(modelTopics.prefix)
          ? this.deps.models
          : device && packet.topic.startsWith(methodTopics.prefix)
            ? this.deps.methods
            : undefined;
    if (!device || (!twin && !packet.topic.startsWith(topics.telemetryPrefix(device)))) {
      // MQTT 3.1.1 has no negative PUBACK: the connection is closed and nothing acknowledged.
      this.m.rejected.inc({ code: ErrorCodes.FORBIDDEN });
      this.deps.log.warn(
        { clientId: client.id, topic: packet.topic, code: ErrorCodes.FORBIDDEN },
        'publish outside the device topic refused',
      );
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
        this.group.cork(client.conn);
      }
      done(err);
    };
    this.throttle(device, () => this.telemetry.write(device, packet.payload as Buffer, () => packet.topic, spooled), done);
  }

  /** The per-device rate limit (mqtt.rateLimit) in front of `next`. */
  private throttle(device: string, next: () => void, done: (err: Error | null) => void): void {
    if (!this.buckets.enabled) return next();
    if (this.cfg.rateLimit.onExceed === 'disconnect') {
      if (this.buckets.tryTake(device)) return next();
      this.m.delayed.inc({ action: 'disconnect' });
      this.m.rejected.inc({ code: ErrorCodes.RATE_LIMITED });
      this.m.dropped.inc({ reason: 'rate_limit' });
      this.deps.log.warn({ device, code: ErrorCodes.RATE_LIMITED }, 'publish rate over mqtt.rateLimit: disconnecting, unacknowledged');
      return done(new EdgetwinError(ErrorCodes.RATE_LIMITED, 'publish rate limit exceeded'));
    }
    const waitMs = this.buckets.takeOrWait(device);
    if (waitMs === 0) return next();
    this.m.delayed.inc({ action: 'delay' });
    setTimeout(next, waitMs);
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
