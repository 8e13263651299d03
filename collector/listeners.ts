/**
 * The collector's MQTT listeners, each optional: plain TCP (`mqtt://`), TLS (`mqtts://`, optionally
 * with client certificates), and WebSocket (`ws://` or `wss://`, subprotocol `mqtt`). All of them
 * hand their byte streams to the one aedes instance. A TLS-only collector has no plain listener at
 * all, so a plain client only ever meets a TLS handshake it cannot complete.
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { createWebSocketStream, WebSocketServer } from 'ws';
import { EdgetwinError, ErrorCodes, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { MqttListenerConfig } from './config.js';

export type HandleStream = (stream: Duplex, req?: IncomingMessage) => void;

export interface ListenerPorts {
  mqtt?: number;
  mqtts?: number;
  ws?: number;
}

function readPem(file: string, key: string): Buffer {
  try {
    return readFileSync(file);
  } catch (cause) {
    throw new EdgetwinError(ErrorCodes.CONFIG, `collector config: key "${key}": cannot read ${file}: ${errorMessage(cause)}`, { cause, details: { key } });
  }
}

async function listen(server: Server | HttpServer, port: number, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

export class MqttListeners {
  private readonly servers: (Server | HttpServer)[] = [];
  private readonly sockets = new Set<Socket>();
  private wss: WebSocketServer | undefined;
  readonly ports: ListenerPorts = {};

  constructor(
    private readonly cfg: MqttListenerConfig,
    private readonly handle: HandleStream,
    private readonly log: Logger,
    /** A TLS handshake failed: plain text on the TLS port, a bad or missing client certificate. */
    private readonly onTlsError: () => void = () => undefined,
  ) {}

  private track = (socket: Socket): void => {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  };

  private tlsOptions(): { cert: Buffer; key: Buffer; ca?: Buffer; requestCert: boolean; rejectUnauthorized: boolean } {
    const t = this.cfg.tls;
    const opts = {
      cert: readPem(t.certFile!, 'mqtt.tls.certFile'),
      key: readPem(t.keyFile!, 'mqtt.tls.keyFile'),
      requestCert: t.clientCerts !== 'none',
      rejectUnauthorized: t.clientCerts === 'require',
    };
    return t.caFile ? { ...opts, ca: readPem(t.caFile, 'mqtt.tls.caFile') } : opts;
  }

  async start(): Promise<ListenerPorts> {
    const c = this.cfg;
    // Read every certificate before opening any port: a bad file fails start-up cleanly.
    const tls = c.tls.enabled || (c.ws.enabled && c.ws.tls) ? this.tlsOptions() : undefined;
    if (c.enabled) {
      const server = createNetServer((socket) => {
        this.track(socket);
        this.handle(socket);
      });
      this.servers.push(server);
      this.ports.mqtt = await listen(server, c.port, c.host);
    }
    if (c.tls.enabled) {
      const server = createTlsServer(tls!, (socket: TLSSocket) => this.handle(socket));
      server.on('connection', this.track);
      // A plain-text client or a bad certificate ends here, before MQTT: logged, never thrown.
      server.on('tlsClientError', (err) => {
        this.onTlsError();
        this.log.debug({ err: err.message }, 'TLS handshake failed');
      });
      this.servers.push(server);
      this.ports.mqtts = await listen(server, c.tls.port, c.tls.host);
    }
    if (c.ws.enabled) {
      const server = c.ws.tls ? createHttpsServer(tls!) : createHttpServer();
      server.on('connection', this.track);
      const wss = new WebSocketServer({
        server,
        ...(c.ws.path ? { path: c.ws.path } : {}),
        // One WebSocket message normally carries one MQTT packet; the broker caps packets at this size too.
        maxPayload: c.maxPayloadBytes + 70 * 1024,
        handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false),
      });
      wss.on('connection', (ws, req) => {
        const stream = createWebSocketStream(ws);
        stream.on('error', (err) => this.log.debug({ err: err.message }, 'websocket stream error'));
        this.handle(stream, req);
      });
      this.wss = wss;
      this.servers.push(server);
      this.ports.ws = await listen(server, c.ws.port, c.ws.host);
    }
    return this.ports;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.wss?.close();
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    this.servers.length = 0;
  }
}
