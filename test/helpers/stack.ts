/**
 * Starts real daemons in-process on loopback with ephemeral ports, for integration tests. The
 * agent, collector and cloud modules load when a test first starts one (dynamic import): most
 * importers only want tempDir, waitFor or the broker, and compiling all three trees on import cost
 * every such file about 3 s of CPU.
 */
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { Aedes } from 'aedes';
import type { Agent } from '../../agent/agent.js';
import type { Source, SourceContext } from '../../agent/types.js';
import type { Collector } from '../../collector/collector.js';
import type { startTestCloud } from './cloud.js';
import { deepMerge } from '../../common/config.js';
import { createLogger } from '../../common/log.js';
import { decodeBatch, type TelemetryBatch } from '../../common/wire/record.js';

export const silent = (): ReturnType<typeof createLogger> => createLogger('test', { level: 'silent' });

export { tempDir, waitFor } from './util.js';

/** The one test-cloud starter (deep-merged overrides, maintenance off): test/helpers/cloud.ts. */
export async function startCloud(...args: Parameters<typeof startTestCloud>): ReturnType<typeof startTestCloud> {
  const cloud = await import('./cloud.js');
  return cloud.startTestCloud(...args);
}

export async function startCollector(stateDir: string, cloudUrl: string, port = 0, overrides: object = {}): Promise<Collector> {
  const [{ Collector }, { loadCollectorConfig }] = await Promise.all([
    import('../../collector/collector.js'),
    import('../../collector/config.js'),
  ]);
  const cfg = loadCollectorConfig(
    undefined,
    {
      stateDir,
      mqtt: { port },
      sinks: { http: { url: cloudUrl } },
      admin: { enabled: false },
      runner: { flushIntervalMs: 10, backoff: { initialMs: 50, maxMs: 500 } },
      ...overrides,
    },
    {},
  );
  const c = new Collector(cfg, { log: silent() });
  await c.start();
  return c;
}

/** Emits exactly `total` readings, `perTick` at a time, with values derived from the index. */
export class CountingSource implements Source {
  readonly name = 'counting';
  emitted = 0;
  private timer: NodeJS.Timeout | undefined;
  constructor(
    private readonly total: number,
    private readonly perTick: number,
    private readonly intervalMs = 5,
  ) {}
  start(ctx: SourceContext): void {
    this.timer = setInterval(() => {
      const n = Math.min(this.perTick, this.total - this.emitted);
      if (n <= 0) return this.stop();
      const out = [];
      for (let i = 0; i < n; i++) {
        const k = this.emitted + i;
        out.push({ ts: 1_700_000_000_000 + k, metric: `m${k % 3}`, value: k * 0.5, unit: 'u' });
      }
      this.emitted += n;
      ctx.emit(out);
    }, this.intervalMs);
  }
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
  get done(): boolean {
    return this.emitted >= this.total;
  }
}

/** An in-process agent on loopback; `overrides` merge key by key over the test settings. Sources undefined: built from config. */
export async function startAgent(
  stateDir: string,
  deviceId: string,
  mqttPort: number,
  sources: Source[] | undefined,
  overrides: object = {},
): Promise<Agent> {
  const [{ Agent }, { loadAgentConfig }] = await Promise.all([import('../../agent/agent.js'), import('../../agent/config.js')]);
  const cfg = loadAgentConfig(
    undefined,
    deepMerge(
      {
        deviceId,
        stateDir,
        uplink: { url: `mqtt://127.0.0.1:${mqttPort}`, backoff: { initialMs: 50, maxMs: 300 }, batchMaxDelayMs: 20 },
        outbox: { flushIntervalMs: 10 },
        admin: { enabled: false },
      },
      overrides,
    ),
    {},
  );
  const a = new Agent(
    cfg,
    sources ? { log: silent(), sources } : { log: process.env['DBG'] ? createLogger('dbg', { level: 'debug' }) : silent() },
  );
  await a.start();
  return a;
}

export interface TestBrokerOptions {
  /** Serve MQTT over TLS with this server certificate; `requestCert` asks clients for theirs (mutual TLS). */
  tls?: { key: Buffer; cert: Buffer; ca?: Buffer; requestCert?: boolean };
  /** Decides each CONNECT; the client's TLS certificate subject CN is passed when there is one. */
  authenticate?: (c: {
    clientId: string;
    username: string | undefined;
    password: string | undefined;
    certCn: string | undefined;
  }) => boolean;
}

export interface BrokerConnect {
  clientId: string;
  username: string | undefined;
  password: string | undefined;
  clean: boolean;
  certCn: string | undefined;
}

/**
 * A bare aedes broker on loopback (plain or TLS) for the agent's uplink tests: it records every
 * telemetry batch in arrival order and every CONNECT, and can hold PUBACKs back (`holdAcks`)
 * until release(), to see what the agent does while a broker has not acknowledged.
 */
export class TestBroker {
  batches: TelemetryBatch[] = [];
  connects: BrokerConnect[] = [];
  holdAcks = false;
  port = 0;
  private held: (() => void)[] = [];
  private aedes: Aedes | undefined;
  private server: NetServer | TlsServer | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly opts: TestBrokerOptions = {}) {}

  async start(port = 0): Promise<number> {
    const aedes = await Aedes.createBroker({
      authenticate: (client, username, password, done) => {
        const sock = (client as unknown as { conn?: TLSSocket }).conn;
        const cert = sock && 'getPeerCertificate' in sock ? sock.getPeerCertificate() : undefined;
        const c: BrokerConnect = {
          clientId: client.id,
          username,
          password: password?.toString(),
          clean: (client as unknown as { clean: boolean }).clean,
          certCn: cert && typeof cert.subject?.CN === 'string' ? cert.subject.CN : undefined,
        };
        this.connects.push(c);
        if (this.opts.authenticate && !this.opts.authenticate(c)) {
          const err = Object.assign(new Error('not authorized'), { returnCode: 5 as const });
          return done(err, null);
        }
        done(null, true);
      },
      authorizePublish: (_client, packet, done) => {
        if (packet.topic.startsWith('devices/')) this.batches.push(decodeBatch(packet.payload as Buffer));
        if (this.holdAcks) this.held.push(() => done(null));
        else done(null);
      },
    });
    this.aedes = aedes;
    const handle = (socket: Socket): void => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      aedes.handle(socket);
    };
    const t = this.opts.tls;
    const server = t
      ? createTlsServer(
          { key: t.key, cert: t.cert, ca: t.ca, requestCert: t.requestCert ?? false, rejectUnauthorized: t.requestCert ?? false },
          handle,
        )
      : createNetServer(handle);
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as { port: number }).port;
    return this.port;
  }

  get url(): string {
    return `${this.opts.tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${this.port}`;
  }

  /** Sends the PUBACKs held so far. */
  release(): void {
    this.holdAcks = false;
    const h = this.held;
    this.held = [];
    for (const f of h) f();
  }

  get heldAcks(): number {
    return this.held.length;
  }

  readings(device?: string): { epoch: number; seq: number; metric: string; value: number; alert?: boolean }[] {
    return this.batches
      .filter((b) => !device || b.device === device)
      .flatMap((b) =>
        b.readings.map((r) => ({ epoch: b.epoch, seq: r.seq, metric: r.metric, value: r.value, ...(r.alert ? { alert: true } : {}) })),
      );
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
