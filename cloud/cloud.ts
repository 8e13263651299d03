import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { errorCodeOf, ErrorCodes } from '../common/errors.js';
import { createLogger, type Logger } from '../common/log.js';
import { createRegistry, type Registry } from '../common/metrics.js';
import { StateLock } from '../common/state-lock.js';
import { join } from 'node:path';
import { Alerting } from './alerts/alerting.js';
import { AuditLog } from './audit/audit-log.js';
import { AuditExporter, blobUploader } from './audit/export.js';
import { Authenticator, isLoopbackHost } from './auth/authenticator.js';
import { SignInAudit } from './auth/sign-in-audit.js';
import { TokenStore } from './auth/tokens.js';
import type { CloudConfig } from './config.js';
import { ChangeFeed } from './store/change-feed.js';
import { openStore } from './store/open-store.js';
import type { Lease, Store } from './store/store.js';
import { CloudEvents } from './api/events.js';
import type { EventHubsConsumer } from './ingest/event-hubs-consumer.js';
import { IngestPipeline } from './ingest/pipeline.js';
import { DriftService } from './drift/drift-service.js';
import { DriftStore } from './drift/drift-store.js';
import { PredictionStore } from './predictions/prediction-store.js';
import { QualityRules } from './ingest/quality.js';
import { SeqIndex } from './ingest/seq-index.js';
import { Lakehouse, type LakehouseOpenOptions } from './lakehouse/lakehouse.js';
import { StagingStore } from './lakehouse/staging.js';
import { buildServer } from './api/server.js';
import { CloudC2d } from './c2d/cloud-c2d.js';
import { ModelPromotions } from './models/model-promotions.js';
import { ModelRegistry } from './models/model-registry.js';
import { SiteStatusStore } from './sites/site-status-store.js';
import { DeviceOwnership } from './twins/ownership.js';
import { TwinStore } from './twins/twin-store.js';
import { MetricCap } from './twins/twin-limits.js';

export interface CloudDeps {
  log?: Logger;
  registry?: Registry;
  /** Passed to Lakehouse.open (Blob credential / pipeline for the lakehouse copy). */
  lakehouse?: LakehouseOpenOptions;
}

/** The Blob copy may fail this long (it retries) before /healthz reports it. */
const WRITER_UNHEALTHY_MS = 60_000;

export class Cloud {
  readonly log: Logger;
  readonly registry: Registry;
  // Set by start(), which opens the store first (cloud/store/: SQLite or PostgreSQL, async).
  /** The database (cloud/store/): every service below reads and writes through it. */
  store!: Store;
  twins!: TwinStore;
  /** Which site owns which device (board decision D1). */
  ownership!: DeviceOwnership;
  tokens!: TokenStore;
  audit!: AuditLog;
  feed!: ChangeFeed;
  events!: CloudEvents;
  staging!: StagingStore;
  pipeline!: IngestPipeline;
  auth!: Authenticator;
  /** Alert rules, evaluation and notifications (cloud/alerts/). */
  alerting!: Alerting;
  /** Cloud to device: direct methods, device-bound messages, the collectors' channels (cloud/c2d/). */
  c2d!: CloudC2d;
  /** Failure predictions (cloud/predictions/) and drift monitoring of every model (cloud/drift/). */
  predictions!: PredictionStore;
  driftStore!: DriftStore;
  drift!: DriftService;
  /** The model registry and its promotions (cloud/models/), and the newest heartbeat per site (cloud/sites/). */
  models!: ModelRegistry;
  promotions!: ModelPromotions;
  sites!: SiteStatusStore;
  private reconcileTimer: NodeJS.Timeout | undefined;
  private reconcileLease: Lease | undefined;
  /** The hash-chained audit export (cloud/audit/export.ts); undefined when audit.export.enabled is false. */
  auditExport: AuditExporter | undefined;
  private lakehouse: Lakehouse | undefined;
  private server: FastifyInstance | undefined;
  private eventHubs: EventHubsConsumer | undefined;
  private readonly lock: StateLock | undefined;
  port = 0;

  constructor(
    readonly cfg: CloudConfig,
    private readonly deps: CloudDeps = {},
  ) {
    this.log = deps.log ?? createLogger('cloud', cfg.log);
    this.registry = deps.registry ?? createRegistry('cloud', true);
    // One cloud per state directory (common/state-lock.ts), taken before any file is opened. With
    // PostgreSQL the state is in the database and replicas coordinate there (leases): they may share stateDir.
    this.lock = cfg.store.kind === 'postgres' ? undefined : StateLock.acquire(cfg.stateDir, 'cloud');
  }

  /** Opens the store (applying migrations) and builds the services on it. */
  private async open(): Promise<void> {
    const cfg = this.cfg;
    this.store = await openStore({ stateDir: cfg.stateDir, store: cfg.store, journalMode: cfg.db.journalMode }, this.log);
    this.feed = new ChangeFeed(this.store, { pollMs: cfg.store.changePollMs, retentionMs: cfg.store.changeRetentionMs, log: this.log });
    await this.feed.start();
    this.events = new CloudEvents(this.store, this.feed);
    this.audit = new AuditLog(this.store);
    this.tokens = new TokenStore(this.store);
    this.twins = new TwinStore(this.store, this.audit, cfg.twins);
    this.twins.watch(this.feed);
    this.ownership = new DeviceOwnership(this.store, this.twins, this.audit);
    this.staging = await StagingStore.open(this.store, cfg.lakehouse.memoryMaxBytes);
    this.auth = new Authenticator(this.tokens, cfg);
    await this.auth.isOpen();
    this.models = new ModelRegistry(this.store, this.audit, cfg.models, cfg.stateDir);
    this.promotions = new ModelPromotions(this.store, this.twins, this.models, this.audit);
    this.sites = new SiteStatusStore(this.store);
    this.predictions = new PredictionStore(this.store);
    this.predictions.watch(this.feed);
    this.driftStore = new DriftStore(this.store);
    this.pipeline = new IngestPipeline({
      store: this.store,
      twins: this.twins,
      ownership: this.ownership,
      seq: new SeqIndex(this.store),
      staging: this.staging,
      quality: new QualityRules(cfg.quality),
      registry: this.registry,
      log: this.log,
      maxStagedBytes: cfg.lakehouse.maxStagedBytes,
      reportedMaxBytes: cfg.twins.reportedMaxBytes,
      derived: { predictions: this.predictions, drift: this.driftStore },
      metricCap: new MetricCap(cfg.limits.metricsPerDevice),
    });
    this.alerting = new Alerting({
      cfg: cfg.alerts,
      store: this.store,
      audit: this.audit,
      log: this.log,
      registry: this.registry,
      lakeWriter: () => this.lakehouse?.writer.status(),
      eventHubsLagS: () => this.eventHubs?.lagS(),
    });
    this.c2d = new CloudC2d(cfg.c2d, { store: this.store, audit: this.audit, auth: this.auth, log: this.log, registry: this.registry });
    this.drift = new DriftService(this.store, this.driftStore, cfg.drift, {
      log: this.log,
      predictions: this.predictions,
      onDrift: () => this.alerting.signals.poke(),
    });
    this.alerting.signals.register('rul_low', () => this.predictions.lowRul());
    this.alerting.signals.register('model_drift', (now) => this.drift.signal(now));
    // A new anomaly (or a signal's own event) is evaluated within ~50 ms, not at the next interval.
    const prompt = new Set(['anomaly', 'prediction', 'drift', 'site']);
    this.feed.tap((c) => {
      if (prompt.has(c.type)) this.alerting.engine.poke();
    });
    if (cfg.audit.export.enabled) {
      const e = cfg.audit.export;
      this.auditExport = new AuditExporter({
        store: this.store,
        cfg: e,
        dir: e.dir || join(cfg.stateDir, 'audit'),
        log: this.log,
        registry: this.registry,
        uploader: e.blobUrl ? await blobUploader(e.blobUrl, e.blobConnectionString) : undefined,
      });
    }
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
    // At once: a failing writer means no site gets new history. The error's class only (the status
    // says no more): /healthz answers anyone, and DuckDB's messages quote the data.
    if (lakehouse && lakehouse.lastError !== null)
      reasons.push(`lakehouse writes failing for ${Math.round(lakehouse.failingSinceMs / 1000)} s: ${lakehouse.lastError}`);
    if (lakehouse && lakehouse.pendingBytes > this.cfg.lakehouse.maxStagedBytes)
      reasons.push('staging over lakehouse.maxStagedBytes: ingest answers 503');
    if (eventHubs && !eventHubs.healthy) reasons.push(`event hubs: ${eventHubs.lastError}`);
    const diskFullMs = this.store?.diskFull.failingForMs() ?? 0;
    if (diskFullMs > 0)
      reasons.push(
        `${ErrorCodes.DISK_FULL}: the disk under the cloud database is full; writes refused for ${Math.round(diskFullMs / 1000)} s`,
      );
    const blob = this.lakehouse?.mirror?.status();
    if (blob && blob.failingSinceMs > WRITER_UNHEALTHY_MS)
      reasons.push(`lakehouse copy to Azure Blob failing for ${Math.round(blob.failingSinceMs / 1000)} s: ${blob.lastError}`);
    return { ok: reasons.length === 0, reasons, lakehouse: blob ? { ...lakehouse, blob } : lakehouse, ...(eventHubs ? { eventHubs } : {}) };
  }

  async start(): Promise<void> {
    try {
      await this.open();
    } catch (err) {
      await this.store?.close();
      this.lock?.release();
      throw err;
    }
    this.lakehouse = await Lakehouse.open(this.cfg, this.staging, this.store, this.log, this.registry, this.deps.lakehouse);
    this.server = buildServer({
      cfg: this.cfg,
      log: this.log,
      registry: this.registry,
      auth: this.auth,
      store: this.store,
      twins: this.twins,
      ownership: this.ownership,
      pipeline: this.pipeline,
      audit: this.audit,
      events: this.events,
      lake: this.lakehouse,
      models: this.models,
      promotions: this.promotions,
      sites: this.sites,
      health: () => this.health(),
      alerting: this.alerting,
      c2d: this.c2d,
      predictions: this.predictions,
      drift: this.drift,
      signInAudit: new SignInAudit({ audit: this.audit, store: this.store, log: this.log, registry: this.registry }),
    });
    this.lakehouse.start();
    // The collectors' push channels are WebSocket upgrades on the API's own listener.
    this.c2d.attach(this.server.server);
    this.c2d.start();
    await this.server.listen({ host: this.cfg.http.host, port: this.cfg.http.port });
    this.port = (this.server.server.address() as AddressInfo).port;
    if (this.auth.open)
      this.log.warn(
        'no API tokens exist: serving every request as admin on loopback; create one with `edgetwin cloud tokens create --role admin`',
      );
    else if (!isLoopbackHost(this.cfg.http.host) && (await this.tokens.activeCount()) === 0 && this.cfg.ingest.tokens.length === 0) {
      this.log.warn('no API tokens exist: every request is refused; create one with `edgetwin cloud tokens create --role admin`');
    }
    this.alerting.start();
    this.drift.start();
    this.auditExport?.start();
    this.startReconcile();
    if (this.cfg.eventHubs.enabled) {
      const { EventHubsConsumer } = await import('./ingest/event-hubs-consumer.js');
      this.eventHubs = new EventHubsConsumer(this.cfg.eventHubs, {
        pipeline: this.pipeline,
        stateDir: this.cfg.stateDir,
        journalMode: this.cfg.db.journalMode,
        log: this.log,
        registry: this.registry,
        onStored: () => this.lake.writer.poke(),
      });
      await this.eventHubs.start();
    }
    this.log.info(
      {
        url: this.url,
        store: this.store.describe(),
        lakehouse: this.lakehouse.root,
        ...(this.lakehouse.mirror ? { lakehouseCopy: this.lakehouse.mirror.status().target } : {}),
      },
      'cloud twin API listening',
    );
  }

  /** Every stored identity of a device, from the silver Parquet files (verification and tests). */
  identities(device: string): Promise<{ epoch: number; seq: number; metric: string; value: number }[]> {
    return this.lake.query.identities(device);
  }

  /** Writes everything staged to the lakehouse now. */
  flush(): Promise<void> {
    return this.lake.writer.flush();
  }

  /**
   * Promotions are applied again every models.reconcileIntervalMs (new devices, changed tags), by
   * one replica only: the lease holder. Promote and withdraw reconcile wherever they run.
   */
  private startReconcile(): void {
    if (this.cfg.models.reconcileIntervalMs <= 0) return;
    const lease = this.store.lease('model-promotions-reconcile', this.cfg.store.leaseRetryMs);
    this.reconcileLease = lease;
    this.reconcileTimer = setInterval(() => {
      if (!lease.held) return;
      this.promotions.reconcile().catch((err: unknown) => {
        this.log.error({ err, code: errorCodeOf(err) }, 'model promotions: reconcile failed');
      });
    }, this.cfg.models.reconcileIntervalMs);
    this.reconcileTimer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.reconcileTimer);
    await this.reconcileLease?.release();
    await this.eventHubs?.stop();
    await this.alerting?.stop();
    await this.drift?.stop();
    await this.auditExport?.stop();
    // Channels first: their sockets are upgraded, so closing the HTTP server would not end them.
    await this.c2d?.stop();
    await this.server?.close();
    await this.lakehouse?.stop();
    this.feed?.stop();
    await this.store?.close();
    this.lock?.release();
    this.log.info('cloud stopped');
  }
}
