/**
 * The system under test, as separate processes on loopback: one cloud, C collectors and N agents,
 * each a compiled `edgetwin` daemon with its own state directory, so a kill -9 and a restart work
 * on the same state exactly as in the field. Every agent reaches its collector through its own
 * FaultyTcpProxy, and the collectors reach the cloud through one more (the slow sink). With
 * `cloudReplicas` > 1 (chaos:cloud) that one is the load balancer over N cloud replicas sharing one
 * store (PostgreSQL, given in overrides.cloud) and one lake folder; API clients use it too.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import type { Role } from '../../cloud/auth/tokens.js';
import { spawnDaemon, type Child } from '../../cli/demo.js';
import { deepMerge } from '../../common/config.js';
import { FaultyTcpProxy } from './tcp-proxy.js';
import { freePort } from '../support.js';

export interface ClusterOptions {
  dir: string;
  agents: number;
  collectors: number;
  /** Collector spool cap (small, whenFull=block: back-pressure, never loss). */
  spoolMaxBytes: number;
  /** Agent outbox cap (whenFull=block). */
  outboxMaxBytes: number;
  /** Overrides of each agent's MQTT window (the agent's defaults otherwise). */
  uplink?: { inflightMax?: number; batchMaxBytes?: number };
  /** Daemons' log level (their logs land in <dir>/logs). */
  logLevel: string;
  /** Called when a daemon exits without having been told to. */
  onCrash(name: string, code: number | string | null, log: string): void;
  /** How long a daemon may take to report ready (spawnDaemon's default otherwise). */
  readyTimeoutMs?: number;
  /** Cloud processes (default 1); more than one needs a shared store in overrides.cloud. */
  cloudReplicas?: number;
  /** Merged key by key over each daemon's config (the fuzz runs use other sources and limits). */
  overrides?: { cloud?: object; collector?: object; agent?: object };
}

export interface Tokens {
  operator: string;
  viewer: string;
  collectors: string[];
}

/** One daemon that can be killed and started again on the same config and state. */
export class ManagedDaemon {
  private child: Child | undefined;
  info: Record<string, unknown> = {};
  starts = 0;
  private expectExit = false;

  constructor(
    readonly name: string,
    private readonly command: 'agent' | 'collector' | 'cloud',
    private readonly configFile: string,
    private readonly logDir: string,
    private readonly env: NodeJS.ProcessEnv,
    private readonly onCrash: ClusterOptions['onCrash'],
    private readonly readyTimeoutMs?: number,
  ) {}

  get up(): boolean {
    return this.child !== undefined;
  }

  get pid(): number | undefined {
    return this.child?.proc.pid;
  }

  async start(): Promise<void> {
    if (this.child) return;
    this.expectExit = false;
    const { child, info } = await spawnDaemon(this.name, this.command, this.configFile, this.logDir, this.env, this.readyTimeoutMs);
    this.starts++;
    this.child = child;
    this.info = info;
    child.proc.once('exit', (code, signal) => {
      if (this.child === child) this.child = undefined;
      if (!this.expectExit) this.onCrash(this.name, code ?? signal, child.log);
    });
  }

  /** SIGKILL: no shutdown code runs, whatever was not durable is gone. */
  async kill9(): Promise<void> {
    await this.signal('SIGKILL', 0);
  }

  /** SIGTERM, then SIGKILL after graceMs. */
  async stop(graceMs = 20_000): Promise<void> {
    await this.signal('SIGTERM', graceMs);
  }

  private async signal(sig: NodeJS.Signals, graceMs: number): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.expectExit = true;
    const exited = new Promise((r) => child.proc.once('exit', r));
    child.proc.kill(sig);
    if (graceMs > 0) {
      const timer = setTimeout(() => child.proc.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    } else await exited;
    this.child = undefined;
  }
}

export class ChaosCluster {
  /** The first cloud replica (the only one unless cloudReplicas > 1). */
  cloud!: ManagedDaemon;
  clouds: ManagedDaemon[] = [];
  /** Each replica's own address (cloudUrl is the balancer's when there are several). */
  replicaUrls: string[] = [];
  collectors: ManagedDaemon[] = [];
  agents: ManagedDaemon[] = [];
  /** agentLinks[i]: the proxy agent i dials instead of its collector. */
  agentLinks: FaultyTcpProxy[] = [];
  /** Between every collector and the cloud. */
  sinkLink!: FaultyTcpProxy;
  cloudUrl = '';
  tokens!: Tokens;
  readonly agentStateDirs: string[] = [];
  readonly deviceIds: string[] = [];
  readonly sites: string[] = [];

  constructor(private readonly o: ClusterOptions) {}

  private write(name: string, cfg: object): string {
    const f = join(this.o.dir, 'config', `${name}.json`);
    const kind = name.split('-')[0] as 'cloud' | 'collector' | 'agent';
    // 0600: a cloud config may name its database (store.url), which the config loader treats as a secret.
    writeFileSync(f, `${JSON.stringify(deepMerge(cfg, this.o.overrides?.[kind]), null, 2)}\n`, { mode: 0o600 });
    return f;
  }

  /** Where silver lives: the one cloud's lakehouse, or the folder the replicas share. */
  get lakeRoot(): string {
    return (this.o.cloudReplicas ?? 1) > 1 ? join(this.o.dir, 'lake') : join(this.o.dir, 'cloud', 'lakehouse');
  }

  /** The last seq each agent committed to its outbox (what silver must hold in the end). */
  committedSeqs(): Record<string, number> {
    const out: Record<string, number> = {};
    this.deviceIds.forEach((id, i) => {
      try {
        const db = new Database(join(this.agentStateDirs[i]!, 'outbox.db'), { readonly: true, fileMustExist: true });
        try {
          out[id] = (db.prepare("SELECT v FROM meta WHERE k = 'seq'").get() as { v: number } | undefined)?.v ?? 0;
        } finally {
          db.close();
        }
      } catch {
        out[id] = 0;
      }
    });
    return out;
  }

  collectorOf(agent: number): number {
    return agent % this.o.collectors;
  }

  async start(): Promise<void> {
    const { dir } = this.o;
    const logDir = join(dir, 'logs');
    mkdirSync(logDir, { recursive: true });
    mkdirSync(join(dir, 'config'), { recursive: true });
    const log = { level: this.o.logLevel };
    const replicas = Math.max(1, this.o.cloudReplicas ?? 1);
    const cloudPorts: number[] = [];
    const cloudCfgs: string[] = [];
    for (let r = 0; r < replicas; r++) {
      const port = await freePort();
      const name = replicas > 1 ? `cloud-${r + 1}` : 'cloud';
      cloudPorts.push(port);
      this.replicaUrls.push(`http://127.0.0.1:${port}`);
      cloudCfgs.push(
        this.write(name, {
          stateDir: join(dir, name),
          http: { host: '127.0.0.1', port },
          auth: { anonymousRole: 'none' },
          // Compaction would make a plain glob read briefly count merged rows twice (docs/lakehouse.md):
          // the checks read the files with plain SQL, so maintenance stays off during the run.
          lakehouse: {
            flushIntervalMs: 500,
            compaction: { intervalMs: 0 },
            retention: { intervalMs: 0 },
            ...(replicas > 1 ? { root: this.lakeRoot } : {}),
          },
          log,
        }),
      );
    }
    for (let c = 0; c < this.o.collectors; c++) this.sites.push(`chaos-site-${c + 1}`);
    this.tokens = await this.createTokens(cloudCfgs[0]!);
    cloudCfgs.forEach((cfg, r) => {
      const name = replicas > 1 ? `cloud-${r + 1}` : 'cloud';
      this.clouds.push(new ManagedDaemon(name, 'cloud', cfg, logDir, {}, this.o.onCrash, this.o.readyTimeoutMs));
    });
    this.cloud = this.clouds[0]!;
    // The first replica alone (it applies the store's migrations), then the others together.
    await this.cloud.start();
    await Promise.all(this.clouds.slice(1).map((d) => d.start()));

    this.sinkLink = new FaultyTcpProxy(cloudPorts);
    const sinkPort = await this.sinkLink.start();
    this.cloudUrl = replicas > 1 ? `http://127.0.0.1:${sinkPort}` : this.replicaUrls[0]!;
    const mqttPorts: number[] = [];
    for (let c = 0; c < this.o.collectors; c++) {
      const port = await freePort();
      mqttPorts.push(port);
      const cfg = this.write(`collector-${c + 1}`, {
        siteId: this.sites[c],
        stateDir: join(dir, `collector-${c + 1}`),
        mqtt: { host: '127.0.0.1', port },
        auth: { mode: 'open' },
        spool: { maxBytes: this.o.spoolMaxBytes, whenFull: 'block' },
        runner: { backoff: { initialMs: 100, maxMs: 2000 } },
        sinks: { http: { url: `http://127.0.0.1:${sinkPort}`, timeoutMs: 15_000 } },
        twin: { desiredPollMs: 500, backoff: { initialMs: 200, maxMs: 2000 } },
        admin: { enabled: true, host: '127.0.0.1', port: 0 },
        log,
      });
      const d = new ManagedDaemon(
        `collector-${c + 1}`,
        'collector',
        cfg,
        logDir,
        { EDGETWIN_CLOUD_TOKEN: this.tokens.collectors[c] },
        this.o.onCrash,
        this.o.readyTimeoutMs,
      );
      this.collectors.push(d);
    }
    // Collectors know nothing of each other: they start together.
    await Promise.all(this.collectors.map((d) => d.start()));

    for (let i = 0; i < this.o.agents; i++) {
      const link = new FaultyTcpProxy(mqttPorts[this.collectorOf(i)]!);
      const port = await link.start();
      this.agentLinks.push(link);
      const deviceId = `chaos-${String(i).padStart(3, '0')}`;
      const stateDir = join(dir, 'agents', deviceId);
      this.deviceIds.push(deviceId);
      this.agentStateDirs.push(stateDir);
      const cfg = this.write(`agent-${deviceId}`, {
        deviceId,
        stateDir,
        outbox: { maxBytes: this.o.outboxMaxBytes, whenFull: 'block', flushIntervalMs: 20 },
        // A short keepalive so a black-holed link is noticed within seconds, as a field device would be configured.
        uplink: {
          url: `mqtt://127.0.0.1:${port}`,
          keepaliveS: 5,
          connectTimeoutMs: 3000,
          backoff: { initialMs: 100, maxMs: 2000 },
          ...this.o.uplink,
        },
        sources: { simulator: { enabled: false }, http: { enabled: true, host: '127.0.0.1', port: 0 } },
        twin: { requestTimeoutMs: 3000 },
        admin: { enabled: true, host: '127.0.0.1', port: 0 },
        log,
      });
      this.agents.push(new ManagedDaemon(`agent-${deviceId}`, 'agent', cfg, logDir, {}, this.o.onCrash, this.o.readyTimeoutMs));
    }
    // A few at a time: twenty cold Node starts at once on two busy cores outlast the ready timeout.
    for (let i = 0; i < this.agents.length; i += 4) await Promise.all(this.agents.slice(i, i + 4).map((a) => a.start()));
  }

  /**
   * The run's tokens, made in this process in one transaction with the store API (as `edgetwin cloud
   * tokens create` does, audit entries included): one CLI run per token cost ~1.8 s of CPU each.
   */
  private async createTokens(cloudCfg: string): Promise<Tokens> {
    const [{ loadCloudConfig }, { openStore }, { TokenStore }, { AuditLog }, { createTokenAudited }] = await Promise.all([
      import('../../cloud/config.js'),
      import('../../cloud/store/open-store.js'),
      import('../../cloud/auth/tokens.js'),
      import('../../cloud/audit/audit-log.js'),
      import('../../cli/cloud-admin-run.js'),
    ]);
    const cfg = loadCloudConfig(cloudCfg);
    const db = await openStore({ stateDir: cfg.stateDir, store: cfg.store });
    try {
      const store = new TokenStore(db);
      const audit = new AuditLog(db);
      const who = { id: 'cli', name: 'cli:chaos', role: 'admin' as const, site: null };
      return await db.tx(async (tx) => {
        const create = async (role: Role, site?: string): Promise<string> => {
          const name = `chaos ${role}${site ? ` ${site}` : ''}`;
          return (await createTokenAudited(tx, store, audit, who, { role, site: site ?? null, name, expiresAt: null })).token;
        };
        const operator = await create('operator');
        const viewer = await create('viewer');
        const collectors: string[] = [];
        for (const s of this.sites) collectors.push(await create('collector', s));
        return { operator, viewer, collectors };
      });
    } finally {
      await db.close();
    }
  }

  /** The agent's local ingest URL, or undefined while it is down. */
  agentIngestUrl(i: number): string | undefined {
    const a = this.agents[i]!;
    return a.up && a.info['httpPort'] ? `http://127.0.0.1:${String(a.info['httpPort'])}/v1/readings` : undefined;
  }

  adminUrl(d: ManagedDaemon): string | undefined {
    return d.up && d.info['adminPort'] ? `http://127.0.0.1:${String(d.info['adminPort'])}` : undefined;
  }

  /** Agents first (they flush into the collectors), then collectors, then the cloud. */
  async stop(): Promise<void> {
    await Promise.all(this.agents.map((a) => a.stop()));
    for (const l of this.agentLinks) await l.stop();
    await Promise.all(this.collectors.map((c) => c.stop()));
    await this.sinkLink?.stop();
    await Promise.all(this.clouds.map((c) => c.stop()));
  }
}
