/**
 * The site broker (aedes). A QoS 1 PUBACK from here means the message is in the spool on disk:
 * aedes writes the PUBACK right after authorizePublish calls back, so that is where the spool
 * write happens (with group commit). Payloads are validated against the wire schema first; a bad
 * one is acknowledged (so the device does not resend it forever), counted and not stored.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Aedes, type AuthenticateError, type Client, type PublishPacket } from 'aedes';
import { EdgetwinError, ErrorCodes, errorMessage, isEdgetwinError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { counter, gauge, type Registry } from '../common/metrics.js';
import { decodeBatch, topics } from '../common/record.js';
import type { DeviceAuthenticator } from './auth.js';
import type { MqttListenerConfig } from './config.js';
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
}

/** Topics a device may subscribe to besides its own `devices/{id}/…` tree. */
const TWIN_SUBSCRIPTIONS = new Set([topics.twinResponses, topics.twinDesiredPatches]);

export interface MqttBrokerDeps {
  auth: DeviceAuthenticator;
  twin?: TwinHandler;
  spoolWriter: SpoolWriter;
  log: Logger;
  registry: Registry;
}

const DEVICE = Symbol('edgetwin.device');
type DeviceClient = Client & { [DEVICE]?: string };

export class MqttBroker {
  private aedes: Aedes | undefined;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly mRejected;
  private readonly mAccepted;
  private readonly mClients;
  private readonly mAuthFailures;

  constructor(private readonly cfg: MqttListenerConfig, private readonly deps: MqttBrokerDeps) {
    const r = deps.registry;
    this.mRejected = counter(r, 'edgetwin_broker_rejected_total', 'Publishes refused or dropped', ['code']);
    this.mAccepted = counter(r, 'edgetwin_broker_accepted_readings_total', 'Readings spooled and acknowledged');
    this.mClients = gauge(r, 'edgetwin_broker_clients', 'Connected MQTT clients');
    this.mAuthFailures = counter(r, 'edgetwin_broker_auth_failures_total', 'Refused connections', ['reason']);
  }

  async start(): Promise<number> {
    const aedes = await Aedes.createBroker({
      authenticate: (client, username, password, done) => this.authenticate(client as DeviceClient, username, password, done),
      authorizePublish: (client, packet, done) => this.authorizePublish(client as DeviceClient | null, packet, done),
      authorizeSubscribe: (client, sub, done) => {
        const device = (client as DeviceClient)[DEVICE];
        if (device && sub.topic.startsWith(`devices/${device}/`)) return done(null, sub);
        if (device && this.deps.twin && TWIN_SUBSCRIPTIONS.has(sub.topic)) {
          done(null, sub);
          this.deps.twin.onSubscribe?.(device, client, sub.topic);
          return;
        }
        this.mRejected.inc({ code: ErrorCodes.FORBIDDEN });
        done(new EdgetwinError(ErrorCodes.FORBIDDEN, `subscription outside the device's topics: ${sub.topic}`), null);
      },
    });
    this.aedes = aedes;
    aedes.on('client', () => this.mClients.set(aedes.connectedClients));
    aedes.on('clientDisconnect', () => this.mClients.set(aedes.connectedClients));
    aedes.on('clientError', (client, err) => this.deps.log.debug({ clientId: client.id, err: err.message }, 'client error'));
    aedes.on('connectionError', (client, err) => this.deps.log.debug({ clientId: client?.id, err: err.message }, 'connection error'));

    const server = createServer((socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      aedes.handle(socket);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.cfg.port, this.cfg.host, () => resolve());
    });
    return (server.address() as AddressInfo).port;
  }

  private authenticate(
    client: DeviceClient,
    username: string | undefined,
    password: Buffer | undefined,
    done: (err: AuthenticateError | null, ok: boolean | null) => void,
  ): void {
    Promise.resolve()
      .then(() => this.deps.auth.authenticate(client.id, username, password))
      .then(
        (device) => {
          if (!device) {
            this.mAuthFailures.inc({ reason: 'refused' });
            const err = new Error('not authorized') as AuthenticateError;
            err.returnCode = 5;
            return done(err, null);
          }
          client[DEVICE] = device;
          done(null, true);
        },
        (err: unknown) => {
          this.mAuthFailures.inc({ reason: 'error' });
          this.deps.log.warn({ clientId: client.id, err: errorMessage(err) }, 'authentication error');
          const e = new Error('server unavailable') as AuthenticateError;
          e.returnCode = 3;
          done(e, null);
        },
      );
  }

  private authorizePublish(client: DeviceClient | null, packet: PublishPacket, done: (err?: Error | null) => void): void {
    const device = client?.[DEVICE];
    // Broker-internal publishes ($SYS heartbeats, wills of vanished clients) are not device data.
    if (!client) return done(packet.topic.startsWith('$SYS/') ? null : new Error('no client'));
    if (device && this.deps.twin && packet.topic.startsWith(topics.twinPrefix)) {
      return this.deps.twin.onPublish(device, client, packet, done);
    }
    if (!device || !packet.topic.startsWith(topics.telemetryPrefix(device))) {
      this.mRejected.inc({ code: ErrorCodes.FORBIDDEN });
      this.deps.log.warn({ clientId: client.id, topic: packet.topic, code: ErrorCodes.FORBIDDEN }, 'publish outside the device topic refused');
      return done(new EdgetwinError(ErrorCodes.FORBIDDEN, 'topic not allowed'));
    }
    const payload = packet.payload as Buffer;
    if (payload.length > this.cfg.maxPayloadBytes) {
      this.mRejected.inc({ code: ErrorCodes.PAYLOAD_TOO_LARGE });
      this.deps.log.warn({ device, bytes: payload.length, code: ErrorCodes.PAYLOAD_TOO_LARGE }, 'oversize payload dropped');
      return done(null);
    }
    let readings: number;
    try {
      const batch = decodeBatch(payload);
      if (batch.device !== device) throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, `payload names device ${batch.device}, connection is ${device}`);
      readings = batch.readings.length;
    } catch (err) {
      const code = isEdgetwinError(err) ? err.code : ErrorCodes.BAD_PAYLOAD;
      this.mRejected.inc({ code });
      this.deps.log.warn({ device, code, err: errorMessage(err) }, 'invalid payload dropped');
      return done(null);
    }
    this.deps.spoolWriter.write({ body: payload.toString('utf8'), key: device }, (err) => {
      if (err) {
        this.mRejected.inc({ code: isEdgetwinError(err) ? err.code : ErrorCodes.INTERNAL });
        return done(err);
      }
      this.mAccepted.inc(readings);
      done(null);
    });
  }

  get clients(): number {
    return this.aedes?.connectedClients ?? 0;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) {
      for (const s of this.sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    const aedes = this.aedes;
    this.aedes = undefined;
    if (aedes) await new Promise<void>((resolve) => aedes.close(() => resolve()));
  }
}
