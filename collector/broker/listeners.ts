/**
 * The collector's MQTT listeners, each optional: plain TCP (`mqtt://`), TLS (`mqtts://`, optionally
 * with client certificates), and WebSocket (`ws://` or `wss://`, subprotocol `mqtt`). All of them
 * hand their byte streams to the one aedes instance. A TLS-only collector has no plain listener at
 * all, so a plain client only ever meets a TLS handshake it cannot complete.
 *
 * Every accepted connection is "pending" until the broker has sent its CONNACK. A pending one is
 * closed after `mqtt.connectTimeoutMs` (TLS handshake, WebSocket upgrade and CONNECT together),
 * and at most `mqtt.maxPendingConnections` may be pending at once: sockets that never speak must
 * not hold file descriptors for aedes' own 30 s nor crowd out devices that do.
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { createWebSocketStream, WebSocketServer } from 'ws';
import { EdgetwinError, ErrorCodes, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { counter, gauge, type Counter, type Gauge, type Registry } from '../../common/metrics.js';
import type { MqttListenerConfig } from './config.js';

/** Serves one connection; what it returns is the broker's client, whose `connackSent` ends the pending state. */
export type HandleStream = (stream: Duplex, req?: IncomingMessage) => unknown;

interface Pending {
  timer: NodeJS.Timeout;
  socket: Socket;
  client?: { connackSent?: boolean } | undefined;
}

/** One key per TCP connection that the raw socket and the TLS socket over it share. */
const connKey = (s: { localPort?: number | undefined; remoteAddress?: string | undefined; remotePort?: number | undefined }): string =>
  `${s.localPort}|${s.remoteAddress}|${s.remotePort}`;

export interface ListenerPorts {
  mqtt?: number;
  mqtts?: number;
  ws?: number;
}

function readPem(file: string, key: string): Buffer {
  try {
    return readFileSync(file);
  } catch (cause) {
    throw new EdgetwinError(ErrorCodes.CONFIG, `collector config: key "${key}": cannot read ${file}: ${errorMessage(cause)}`, {
      cause,
      details: { key },
    });
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
  private readonly pending = new Map<string, Pending>();
  readonly ports: ListenerPorts = {};
  /** Connections closed without CONNECT, by reason (also in edgetwin_collector_mqtt_slow_connections_total when a registry is given). */
  readonly closedPending = { connect_timeout: 0, max_pending: 0 };
  private readonly mSlow: Counter<string> | undefined;
  private readonly mPending: Gauge<string> | undefined;

  constructor(
    private readonly cfg: MqttListenerConfig,
    private readonly handle: HandleStream,
    private readonly log: Logger,
    /** A TLS handshake failed: plain text on the TLS port, a bad or missing client certificate. */
    private readonly onTlsError: () => void = () => undefined,
    registry?: Registry,
  ) {
    if (registry) {
      this.mSlow = counter(
        registry,
        'edgetwin_collector_mqtt_slow_connections_total',
        'MQTT connections closed before CONNECT completed, by reason',
        ['reason'],
      );
      this.mPending = gauge(
        registry,
        'edgetwin_collector_mqtt_pending_connections',
        'MQTT connections accepted that have not completed CONNECT yet',
      );
    }
  }

  /** Connections accepted whose CONNACK has not been sent yet. */
  get pendingConnections(): number {
    this.sweep();
    return this.pending.size;
  }

  private track = (socket: Socket): void => {
    this.sockets.add(socket);
    const key = connKey(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
      const p = this.pending.get(key);
      if (p) {
        clearTimeout(p.timer);
        this.pending.delete(key);
        this.mPending?.set(this.pending.size);
      }
    });
    if (this.pending.size >= this.cfg.maxPendingConnections) this.sweep();
    // Full: the oldest pending connection makes room. A device's CONNECT arrives within a round trip,
    // so a flood of silent sockets evicts mostly its own, and a newcomer always gets its chance.
    if (this.pending.size >= this.cfg.maxPendingConnections) this.evictOldest();
    const timer = setTimeout(() => {
      const p = this.pending.get(key);
      this.pending.delete(key);
      this.mPending?.set(this.pending.size);
      if (!p?.client?.connackSent) this.closeSlow(socket, 'connect_timeout');
    }, this.cfg.connectTimeoutMs);
    timer.unref();
    this.pending.set(key, { timer, socket });
    this.mPending?.set(this.pending.size);
  };

  /** Drops connections that have completed CONNECT from the pending set (cheap: only run when it looks full). */
  private sweep(): void {
    for (const [key, p] of this.pending) {
      if (!p.client?.connackSent) continue;
      clearTimeout(p.timer);
      this.pending.delete(key);
    }
    this.mPending?.set(this.pending.size);
  }

  private evictOldest(): void {
    const oldest = this.pending.keys().next();
    if (oldest.done) return;
    const p = this.pending.get(oldest.value)!;
    clearTimeout(p.timer);
    this.pending.delete(oldest.value);
    this.closeSlow(p.socket, 'max_pending');
  }

  private closeSlow(socket: Socket, reason: keyof MqttListeners['closedPending']): void {
    this.closedPending[reason]++;
    this.mSlow?.inc({ reason });
    this.log.debug({ reason, remote: socket.remoteAddress }, 'MQTT connection closed before CONNECT');
    socket.destroy();
  }

  /** Hands a stream to the broker and remembers its client, so the deadline can tell whether CONNECT completed. */
  private serve(
    conn: { localPort?: number | undefined; remoteAddress?: string | undefined; remotePort?: number | undefined },
    stream: Duplex,
    req?: IncomingMessage,
  ): void {
    const client = this.handle(stream, req);
    const p = this.pending.get(connKey(conn));
    if (p && client && typeof client === 'object') p.client = client as Pending['client'];
  }

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
        if (!socket.destroyed) this.serve(socket, socket);
      });
      this.servers.push(server);
      this.ports.mqtt = await listen(server, c.port, c.host);
    }
    if (c.tls.enabled) {
      const server = createTlsServer({ ...tls!, handshakeTimeout: c.connectTimeoutMs }, (socket: TLSSocket) => this.serve(socket, socket));
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
        this.serve(req.socket, stream, req);
      });
      this.wss = wss;
      this.servers.push(server);
      this.ports.ws = await listen(server, c.ws.port, c.ws.host);
    }
    return this.ports;
  }

  async stop(): Promise<void> {
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
    for (const s of this.sockets) s.destroy();
    this.wss?.close();
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    this.servers.length = 0;
  }
}
