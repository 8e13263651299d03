/**
 * The collector: broker → spool (group commit) → one SinkRunner per sink. Spool rows are released
 * once every runner's cursor has passed them.
 */
import { join } from 'node:path';
import { AdminHttpServer } from '../common/admin-http.js';
import { createLogger, type Logger } from '../common/log.js';
import { createRegistry, type Registry } from '../common/metrics.js';
import { LANE_NORMAL, SqliteOutbox } from '../common/outbox.js';
import type { TokenCredential } from '@azure/identity';
import { OpenAuthenticator, type DeviceAuthenticator } from './auth.js';
import { MqttBroker } from './broker.js';
import type { CollectorConfig } from './config.js';
import { DeviceSequencer } from './device-seq.js';
import type { ListenerPorts } from './listeners.js';
import { DeviceRegistry } from './registry/device-registry.js';
import { RegistryAuthenticator } from './registry/registry-authenticator.js';
import { SinkRunner } from './runner.js';
import type { Sink } from './sink.js';
import { EventHubsSink } from './sinks/event-hubs.js';
import { FileSink } from './sinks/file.js';
import { HttpIngestSink } from './sinks/http-ingest.js';
import { SpoolWriter } from './spool-writer.js';
import { WalSync } from './wal-sync.js';
import { CollectorTwin } from './twin/collector-twin.js';
import { collectorSnapshot, SiteStatusReporter } from './twin/site-status.js';
import { CollectorModels } from './models/collector-models.js';

export interface CollectorDeps {
  log?: Logger;
  registry?: Registry;
  auth?: DeviceAuthenticator;
  /** Replaces the sinks built from config. */
  sinks?: Sink[];
  /** For the Event Hubs sink with fullyQualifiedNamespace, instead of DefaultAzureCredential. */
  eventHubsCredential?: TokenCredential;
}

export class Collector {
  readonly log: Logger;
  readonly registry: Registry;
  readonly spool: SqliteOutbox;
  readonly runners: SinkRunner[];
  private readonly writer: SpoolWriter;
  private readonly broker: MqttBroker;
  readonly twin: CollectorTwin | undefined;
  /** Model cache served to devices (model rollout); undefined when models.enabled is false. */
  readonly models: CollectorModels | undefined;
  /** The site heartbeat to the cloud; undefined when siteStatus.enabled is false or no cloud URL is known. */
  readonly siteStatus: SiteStatusReporter | undefined;
  private readonly admin: AdminHttpServer;
  /** The device registry (auth.mode "registry"). */
  readonly devices: DeviceRegistry | undefined;
  mqttPort = 0;
  ports: ListenerPorts = {};
  adminPort: number | undefined;

  constructor(readonly cfg: CollectorConfig, deps: CollectorDeps = {}) {
    this.log = deps.log ?? createLogger(`collector:${cfg.siteId}`, cfg.log);
    this.registry = deps.registry ?? createRegistry('collector', true);
    const spoolPath = cfg.spool.path ?? join(cfg.stateDir, 'spool.db');
    // With asyncFsync the WAL is fsynced by WalSync before any PUBACK, off the event loop.
    const walSync = cfg.spool.synchronous === 'full' && cfg.spool.asyncFsync ? new WalSync(`${spoolPath}-wal`) : undefined;
    this.spool = new SqliteOutbox(
      { path: spoolPath, maxBytes: cfg.spool.maxBytes, whenFull: cfg.spool.whenFull, synchronous: walSync ? 'normal' : cfg.spool.synchronous },
      { log: this.log, registry: this.registry, metricPrefix: 'edgetwin_spool' },
    );
    const sinks = deps.sinks ?? this.sinksFromConfig(deps);
    this.runners = sinks.map(
      (s) => new SinkRunner(s, cfg.runner, { spool: this.spool, siteId: cfg.siteId, log: this.log, registry: this.registry, onProgress: () => this.release(), deadLetterDir: join(cfg.stateDir, 'dead-letter') }),
    );
    this.writer = new SpoolWriter(
      this.spool,
      cfg.spool,
      this.log,
      () => {
        for (const r of this.runners) r.notify();
      },
      walSync,
    );
    this.twin = cfg.twin.enabled
      ? new CollectorTwin(cfg.twin, { siteId: cfg.siteId, stateDir: cfg.stateDir, http: cfg.sinks.http, spoolWriter: this.writer, log: this.log, registry: this.registry })
      : undefined;
    this.models = cfg.models.enabled
      ? new CollectorModels(cfg.models, { siteId: cfg.siteId, stateDir: cfg.stateDir, twin: cfg.twin, http: cfg.sinks.http, log: this.log, registry: this.registry })
      : undefined;
    const cloudUrl = cfg.twin.cloudUrl ?? (cfg.sinks.http.enabled ? cfg.sinks.http.url : undefined);
    this.siteStatus =
      cfg.siteStatus.enabled && cloudUrl
        ? new SiteStatusReporter(
            { ...cfg.siteStatus, url: cloudUrl, token: cfg.twin.cloudToken ?? cfg.sinks.http.token, siteId: cfg.siteId },
            {
              log: this.log.child({ part: 'site-status' }),
              registry: this.registry,
              snapshot: () =>
                collectorSnapshot({ spool: this.spool, maxBytes: cfg.spool.maxBytes, runners: this.runners, clients: this.broker.clients, twinFeed: this.twin?.health().feed }),
            },
          )
        : undefined;
    if (!deps.auth && cfg.auth.mode === 'registry') this.devices = new DeviceRegistry(cfg.auth.registryPath ?? join(cfg.stateDir, 'devices.db'), this.log);
    const auth = deps.auth ?? (this.devices ? new RegistryAuthenticator(this.devices) : new OpenAuthenticator());
    this.broker = new MqttBroker(cfg.mqtt, {
      auth,
      twin: this.twin?.handler,
      models: this.models?.handler,
      spoolWriter: this.writer,
      log: this.log,
      registry: this.registry,
      sequencer: new DeviceSequencer(this.spool),
      revocationPollMs: cfg.auth.revocationPollMs,
    });
    this.admin = new AdminHttpServer(cfg.admin, this.registry, () => this.health());
  }

  private sinksFromConfig(deps: CollectorDeps): Sink[] {
    const s = this.cfg.sinks;
    const out: Sink[] = [];
    if (s.http.enabled) out.push(new HttpIngestSink(s.http));
    if (s.eventHubs.enabled) out.push(new EventHubsSink(s.eventHubs, deps.eventHubsCredential ? { credential: deps.eventHubsCredential } : {}));
    if (s.file.enabled) out.push(new FileSink({ ...s.file, dir: s.file.dir ?? join(this.cfg.stateDir, 'outbound') }, this.cfg.siteId));
    return out;
  }

  /** Deletes spool rows that every sink has delivered. */
  private release(): void {
    if (this.runners.length === 0) return;
    const upTo = Math.min(...this.runners.map((r) => r.cursor));
    if (upTo > 0) this.spool.ack(LANE_NORMAL, 0, upTo);
  }

  async start(): Promise<void> {
    try {
      await this.startParts();
    } catch (err) {
      // A listener that cannot bind, an unreadable certificate: leave nothing running behind.
      await this.stop().catch(() => undefined);
      throw err;
    }
  }

  private async startParts(): Promise<void> {
    for (const r of this.runners) r.start();
    this.twin?.start();
    this.models?.start();
    this.mqttPort = await this.broker.start();
    this.ports = this.broker.ports;
    this.adminPort = await this.admin.start();
    this.siteStatus?.start();
    this.log.info({ siteId: this.cfg.siteId, ports: this.ports, auth: this.cfg.auth.mode, sinks: this.runners.map((r) => r.sink.name), spool: this.spool.depth() }, 'collector listening');
  }

  health(): { ok: boolean; clients: number; spool: { rows: number; bytes: number }; sinks: Record<string, unknown>; twin?: unknown; models?: unknown } {
    const sinks = Object.fromEntries(this.runners.map((r) => [r.sink.name, r.healthy]));
    const twin = this.twin ? { twin: this.twin.health() } : {};
    const models = this.models ? { models: this.models.health() } : {};
    return { ok: this.runners.every((r) => r.healthy.ok), clients: this.broker.clients, spool: this.spool.depth(), sinks, ...twin, ...models };
  }

  async stop(): Promise<void> {
    await this.siteStatus?.stop();
    await this.broker.stop();
    this.writer.close();
    await this.twin?.stop();
    await this.models?.stop();
    await Promise.all(this.runners.map((r) => r.stop()));
    await this.admin.stop();
    this.spool.close();
    this.devices?.close();
    this.log.info({ siteId: this.cfg.siteId }, 'collector stopped');
  }
}
