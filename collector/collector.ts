/**
 * The collector: broker → spool (group commit) → one SinkRunner per sink. Spool rows are released
 * once every runner's cursor has passed them.
 */
import { join } from 'node:path';
import { AdminHttpServer } from '../common/admin-http.js';
import { createLogger, type Logger } from '../common/log.js';
import { createRegistry, type Registry } from '../common/metrics.js';
import { LANE_NORMAL, SqliteOutbox } from '../common/outbox/outbox.js';
import { StateLock } from '../common/state-lock.js';
import type { TokenCredential } from '@azure/identity';
import { OpenAuthenticator, type DeviceAuthenticator } from './broker/auth.js';
import { MqttBroker } from './broker/broker.js';
import type { CollectorConfig } from './config.js';
import { DeviceSequencer } from './spool/device-seq.js';
import type { ListenerPorts } from './broker/listeners.js';
import { DeviceRegistry } from './registry/device-registry.js';
import { RegistryAuthenticator } from './registry/registry-authenticator.js';
import { SinkRunner } from './sinks/runner.js';
import type { Sink } from './sinks/sink.js';
import { EventHubsSink } from './sinks/event-hubs.js';
import { FileSink } from './sinks/file.js';
import { CloudClients, cloudEndpoint } from './cloud/cloud-client.js';
import { HttpIngestSink } from './sinks/http-ingest.js';
import { SpoolWriter } from './spool/spool-writer.js';
import { WalSync } from './spool/wal-sync.js';
import { CollectorTwin } from './twin/collector-twin.js';
import { collectorSnapshot, SiteStatusReporter } from './heartbeat/site-status-reporter.js';
import { CollectorModels } from './model-cache/collector-models.js';
import { CollectorC2d } from './c2d/collector-c2d.js';
import { ErrorCodes } from '../common/errors.js';
import { timestampWindow } from '../common/wire/storable.js';

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
  /** Cloud to device (direct methods, device-bound messages); undefined when c2d.enabled is false. */
  readonly c2d: CollectorC2d | undefined;
  private readonly admin: AdminHttpServer;
  /** HTTP clients of the cloud, one per endpoint (collector/cloud/cloud-client.ts); closed last. */
  private readonly clouds: CloudClients;
  private readonly lock: StateLock;
  /** The device registry (auth.mode "registry"). */
  readonly devices: DeviceRegistry | undefined;
  mqttPort = 0;
  ports: ListenerPorts = {};
  adminPort: number | undefined;

  constructor(
    readonly cfg: CollectorConfig,
    deps: CollectorDeps = {},
  ) {
    this.log = deps.log ?? createLogger(`collector:${cfg.siteId}`, cfg.log);
    this.registry = deps.registry ?? createRegistry('collector', true);
    // One collector per state directory (common/state-lock.ts), taken before any file is opened.
    this.lock = StateLock.acquire(cfg.stateDir, `collector ${cfg.siteId}`);
    // Ingest's connections plus one each for the feed, the heartbeat and model downloads.
    this.clouds = new CloudClients({ connections: cfg.sinks.http.connections + 3 });
    const spoolPath = cfg.spool.path ?? join(cfg.stateDir, 'spool.db');
    // With asyncFsync the WAL is fsynced by WalSync before any PUBACK, off the event loop.
    const walSync = cfg.spool.synchronous === 'full' && cfg.spool.asyncFsync ? new WalSync(`${spoolPath}-wal`) : undefined;
    this.spool = new SqliteOutbox(
      {
        path: spoolPath,
        maxBytes: cfg.spool.maxBytes,
        whenFull: cfg.spool.whenFull,
        synchronous: walSync ? 'normal' : cfg.spool.synchronous,
      },
      { log: this.log, registry: this.registry, metricPrefix: 'edgetwin_spool' },
    );
    const sinks = deps.sinks ?? this.sinksFromConfig(deps);
    this.runners = sinks.map(
      (s) =>
        new SinkRunner(s, cfg.runner, {
          spool: this.spool,
          siteId: cfg.siteId,
          log: this.log,
          registry: this.registry,
          onProgress: () => this.release(),
          deadLetterDir: join(cfg.stateDir, 'dead-letter'),
        }),
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
    // Where the cloud is, resolved once; every HTTP exchange with it goes through one client per endpoint.
    const cloud = cloudEndpoint(cfg);
    const modelsCloud = cfg.models.cloudUrl ? { url: cfg.models.cloudUrl, token: cfg.models.cloudToken ?? cloud?.token } : cloud;
    this.twin = cfg.twin.enabled
      ? new CollectorTwin(cfg.twin, {
          siteId: cfg.siteId,
          stateDir: cfg.stateDir,
          cloud: cloud ? this.clouds.get(cloud) : undefined,
          spoolWriter: this.writer,
          log: this.log,
          registry: this.registry,
        })
      : undefined;
    this.models = cfg.models.enabled
      ? new CollectorModels(cfg.models, {
          siteId: cfg.siteId,
          stateDir: cfg.stateDir,
          cloud: modelsCloud ? this.clouds.get(modelsCloud) : undefined,
          log: this.log,
          registry: this.registry,
        })
      : undefined;
    this.siteStatus =
      cfg.siteStatus.enabled && cloud
        ? new SiteStatusReporter(
            { ...cfg.siteStatus, siteId: cfg.siteId },
            {
              cloud: this.clouds.get(cloud),
              log: this.log.child({ part: 'site-status' }),
              registry: this.registry,
              snapshot: () =>
                collectorSnapshot({
                  spool: this.spool,
                  maxBytes: cfg.spool.maxBytes,
                  runners: this.runners,
                  clients: this.broker.clients,
                  twinFeed: this.twin?.health().feed,
                }),
            },
          )
        : undefined;
    if (!deps.auth && cfg.auth.mode === 'registry')
      this.devices = new DeviceRegistry(cfg.auth.registryPath ?? join(cfg.stateDir, 'devices.db'), this.log);
    const auth = deps.auth ?? (this.devices ? new RegistryAuthenticator(this.devices) : new OpenAuthenticator());
    const devices = this.devices;
    this.c2d = cfg.c2d.enabled
      ? new CollectorC2d(cfg.c2d, {
          siteId: cfg.siteId,
          stateDir: cfg.stateDir,
          cloud: { url: cloud?.url, token: cloud?.token },
          clientOf: (device) => this.broker.deviceClient(device),
          refuseDevice: devices
            ? (d) => (devices.isActive(d) ? undefined : `device ${d} is not registered at site ${cfg.siteId}`)
            : undefined,
          log: this.log,
          registry: this.registry,
        })
      : undefined;
    this.broker = new MqttBroker(cfg.mqtt, {
      auth,
      twin: this.twin?.handler,
      models: this.models?.handler,
      methods: this.c2d?.methods,
      deviceEvents: this.c2d,
      spoolWriter: this.writer,
      log: this.log,
      registry: this.registry,
      sequencer: new DeviceSequencer(this.spool),
      revocationPollMs: cfg.auth.revocationPollMs,
      timestamps: timestampWindow(cfg.timestamps),
      maxMetricsPerMessage: cfg.limits.metricsPerDevice,
    });
    this.admin = new AdminHttpServer(cfg.admin, this.registry, () => this.health());
  }

  private sinksFromConfig(deps: CollectorDeps): Sink[] {
    const s = this.cfg.sinks;
    const out: Sink[] = [];
    if (s.http.enabled) out.push(new HttpIngestSink(s.http, this.clouds.get({ url: s.http.url, token: s.http.token })));
    if (s.eventHubs.enabled)
      out.push(new EventHubsSink(s.eventHubs, deps.eventHubsCredential ? { credential: deps.eventHubsCredential } : {}));
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
    this.c2d?.start();
    this.mqttPort = await this.broker.start();
    this.ports = this.broker.ports;
    this.adminPort = await this.admin.start();
    this.siteStatus?.start();
    this.log.info(
      {
        siteId: this.cfg.siteId,
        ports: this.ports,
        auth: this.cfg.auth.mode,
        sinks: this.runners.map((r) => r.sink.name),
        spool: this.spool.depth(),
      },
      'collector listening',
    );
  }

  health(): {
    ok: boolean;
    clients: number;
    spool: { rows: number; bytes: number };
    sinks: Record<string, unknown>;
    twin?: unknown;
    models?: unknown;
    c2d?: unknown;
    diskFull?: string;
  } {
    const sinks = Object.fromEntries(this.runners.map((r) => [r.sink.name, r.healthy]));
    const twin = this.twin ? { twin: this.twin.health() } : {};
    const models = this.models ? { models: this.models.health() } : {};
    const c2d = this.c2d ? { c2d: this.c2d.health() } : {};
    const full = this.writer.diskFullSince;
    return {
      ok: this.runners.every((r) => r.healthy.ok) && full === undefined,
      ...(full === undefined ? {} : { diskFull: `${ErrorCodes.DISK_FULL}: spool commits fail since ${new Date(full).toISOString()}` }),
      clients: this.broker.clients,
      spool: this.spool.depth(),
      sinks,
      ...twin,
      ...models,
      ...c2d,
    };
  }

  async stop(): Promise<void> {
    await this.siteStatus?.stop();
    await this.c2d?.stop();
    await this.broker.stop();
    this.writer.close();
    await this.twin?.stop();
    await this.models?.stop();
    await Promise.all(this.runners.map((r) => r.stop()));
    await this.clouds.close();
    await this.admin.stop();
    this.spool.close();
    this.devices?.close();
    this.lock.release();
    this.log.info({ siteId: this.cfg.siteId }, 'collector stopped');
  }
}
