import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { createLogger, type Logger } from '../common/log.js';
import { createRegistry, type Registry } from '../common/metrics.js';
import { AuditLog } from './audit-log.js';
import { Authenticator, isLoopbackHost } from './auth/authenticator.js';
import { TokenStore } from './auth/tokens.js';
import type { CloudConfig } from './config.js';
import { openCloudDb, type CloudDb } from './db.js';
import { CloudEvents } from './events.js';
import type { EventHubsConsumer } from './ingest/event-hubs-consumer.js';
import { IngestPipeline } from './ingest/pipeline.js';
import { QualityRules } from './ingest/quality.js';
import { SeqIndex } from './ingest/seq-index.js';
import { Lakehouse, type LakehouseOpenOptions } from './lakehouse/lakehouse.js';
import { StagingStore } from './lakehouse/staging.js';
import { buildServer } from './server.js';
import { TwinStore } from './twin-store.js';

export interface CloudDeps {
  log?: Logger;
  registry?: Registry;
  /** Passed to Lakehouse.open (Blob credential / pipeline for the lakehouse copy). */
  lakehouse?: LakehouseOpenOptions;
}

/** The lakehouse writer may fail this long (it retries) before /healthz reports it. */
const WRITER_UNHEALTHY_MS = 60_000;

export class Cloud {
  readonly log: Logger;
  readonly registry: Registry;
  readonly db: CloudDb;
  readonly store: TwinStore;
  readonly tokens: TokenStore;
  readonly audit: AuditLog;
  readonly events = new CloudEvents();
  readonly staging: StagingStore;
  readonly pipeline: IngestPipeline;
  readonly auth: Authenticator;
  private lakehouse: Lakehouse | undefined;
  private server: FastifyInstance | undefined;
  private eventHubs: EventHubsConsumer | undefined;
  port = 0;

  constructor(readonly cfg: CloudConfig, private readonly deps: CloudDeps = {}) {
    this.log = deps.log ?? createLogger('cloud', cfg.log);
    this.registry = deps.registry ?? createRegistry('cloud', true);
    this.db = openCloudDb(cfg.stateDir, this.log, { journalMode: cfg.db.journalMode });
    this.audit = new AuditLog(this.db.db);
    this.tokens = new TokenStore(this.db.db);
    this.store = new TwinStore(this.db.db, this.db.meta, this.audit, cfg.twins);
    this.staging = new StagingStore(this.db.db, this.db.meta, cfg.lakehouse.memoryMaxBytes);
    this.auth = new Authenticator(this.tokens, cfg);
    this.pipeline = new IngestPipeline({
      db: this.db.db,
      twins: this.store,
      seq: new SeqIndex(this.db.db),
      staging: this.staging,
      quality: new QualityRules(cfg.quality),
      events: this.events,
      registry: this.registry,
      log: this.log,
      maxStagedBytes: cfg.lakehouse.maxStagedBytes,
    });
  }

  get lake(): Lakehouse {
    if (!this.lakehouse) throw new Error('cloud not started');
    return this.lakehouse;
  }

  get app(): FastifyInstance {
    if (!this.server) throw new Error('cloud not started');
    return this.server;
  }

  get url(): string {
    return `http://${this.cfg.http.host}:${this.port}`;
  }

  health(): { ok: boolean; [k: string]: unknown } {
    const lakehouse = this.lakehouse?.writer.status();
    const eventHubs = this.eventHubs?.status();
    const reasons: string[] = [];
    if (lakehouse && lakehouse.failingSinceMs > WRITER_UNHEALTHY_MS) reasons.push(`lakehouse writes failing for ${Math.round(lakehouse.failingSinceMs / 1000)} s: ${lakehouse.lastError}`);
    if (lakehouse && lakehouse.pendingBytes > this.cfg.lakehouse.maxStagedBytes) reasons.push('staging over lakehouse.maxStagedBytes: ingest answers 503');
    if (eventHubs && !eventHubs.healthy) reasons.push(`event hubs: ${eventHubs.lastError}`);
    const blob = this.lakehouse?.mirror?.status();
    if (blob && blob.failingSinceMs > WRITER_UNHEALTHY_MS) reasons.push(`lakehouse copy to Azure Blob failing for ${Math.round(blob.failingSinceMs / 1000)} s: ${blob.lastError}`);
    return { ok: reasons.length === 0, reasons, lakehouse: blob ? { ...lakehouse, blob } : lakehouse, ...(eventHubs ? { eventHubs } : {}) };
  }

  async start(): Promise<void> {
    this.lakehouse = await Lakehouse.open(this.cfg, this.staging, this.db.db, this.log, this.registry, this.deps.lakehouse);
    this.server = buildServer({
      cfg: this.cfg,
      log: this.log,
      registry: this.registry,
      auth: this.auth,
      twins: this.store,
      pipeline: this.pipeline,
      audit: this.audit,
      events: this.events,
      lake: this.lakehouse,
      health: () => this.health(),
    });
    this.lakehouse.start();
    await this.server.listen({ host: this.cfg.http.host, port: this.cfg.http.port });
    this.port = (this.server.server.address() as AddressInfo).port;
    if (this.auth.open) this.log.warn('no API tokens exist: serving every request as admin on loopback; create one with `edgetwin cloud tokens create --role admin`');
    else if (!isLoopbackHost(this.cfg.http.host) && this.tokens.activeCount() === 0 && this.cfg.ingest.tokens.length === 0) {
      this.log.warn('no API tokens exist: every request is refused; create one with `edgetwin cloud tokens create --role admin`');
    }
    if (this.cfg.eventHubs.enabled) {
      const { EventHubsConsumer } = await import('./ingest/event-hubs-consumer.js');
      this.eventHubs = new EventHubsConsumer(this.cfg.eventHubs, { pipeline: this.pipeline, stateDir: this.cfg.stateDir, journalMode: this.cfg.db.journalMode, log: this.log, registry: this.registry, onStored: () => this.lake.writer.poke() });
      await this.eventHubs.start();
    }
    this.log.info({ url: this.url, lakehouse: this.lakehouse.root, ...(this.lakehouse.mirror ? { lakehouseCopy: this.lakehouse.mirror.status().target } : {}) }, 'cloud twin API listening');
  }

  /** Every stored identity of a device, from the silver Parquet files (verification and tests). */
  identities(device: string): Promise<{ epoch: number; seq: number; metric: string; value: number }[]> {
    return this.lake.query.identities(device);
  }

  /** Writes everything staged to the lakehouse now. */
  flush(): Promise<void> {
    return this.lake.writer.flush();
  }

  async stop(): Promise<void> {
    await this.eventHubs?.stop();
    await this.server?.close();
    await this.lakehouse?.stop();
    this.db.close();
    this.log.info('cloud stopped');
  }
}
