/**
 * The collector: broker → spool (group commit) → one SinkRunner per sink. Spool rows are released
 * once every runner's cursor has passed them.
 */
import { join } from 'node:path';
import { AdminHttpServer } from '../common/admin-http.js';
import { createLogger, type Logger } from '../common/log.js';
import { createRegistry, type Registry } from '../common/metrics.js';
import { LANE_NORMAL, SqliteOutbox } from '../common/outbox.js';
import { OpenAuthenticator, type DeviceAuthenticator } from './auth.js';
import { MqttBroker } from './broker.js';
import type { CollectorConfig } from './config.js';
import { SinkRunner } from './runner.js';
import type { Sink } from './sink.js';
import { HttpIngestSink } from './sinks/http-ingest.js';
import { SpoolWriter } from './spool-writer.js';

export interface CollectorDeps {
  log?: Logger;
  registry?: Registry;
  auth?: DeviceAuthenticator;
  /** Replaces the sinks built from config. */
  sinks?: Sink[];
}

export class Collector {
  readonly log: Logger;
  readonly registry: Registry;
  readonly spool: SqliteOutbox;
  readonly runners: SinkRunner[];
  private readonly writer: SpoolWriter;
  private readonly broker: MqttBroker;
  private readonly admin: AdminHttpServer;
  mqttPort = 0;
  adminPort: number | undefined;

  constructor(readonly cfg: CollectorConfig, deps: CollectorDeps = {}) {
    this.log = deps.log ?? createLogger(`collector:${cfg.siteId}`, cfg.log);
    this.registry = deps.registry ?? createRegistry('collector', true);
    this.spool = new SqliteOutbox(
      { path: cfg.spool.path ?? join(cfg.stateDir, 'spool.db'), maxBytes: cfg.spool.maxBytes, whenFull: cfg.spool.whenFull, synchronous: cfg.spool.synchronous },
      { log: this.log, registry: this.registry, metricPrefix: 'edgetwin_spool' },
    );
    const sinks = deps.sinks ?? this.sinksFromConfig();
    this.runners = sinks.map(
      (s) => new SinkRunner(s, cfg.runner, { spool: this.spool, siteId: cfg.siteId, log: this.log, registry: this.registry, onProgress: () => this.release() }),
    );
    this.writer = new SpoolWriter(this.spool, cfg.spool, this.log, () => {
      for (const r of this.runners) r.notify();
    });
    this.broker = new MqttBroker(cfg.mqtt, { auth: deps.auth ?? new OpenAuthenticator(), spoolWriter: this.writer, log: this.log, registry: this.registry });
    this.admin = new AdminHttpServer(cfg.admin, this.registry, () => this.health());
  }

  private sinksFromConfig(): Sink[] {
    const out: Sink[] = [];
    if (this.cfg.sinks.http.enabled) out.push(new HttpIngestSink(this.cfg.sinks.http));
    return out;
  }

  /** Deletes spool rows that every sink has delivered. */
  private release(): void {
    if (this.runners.length === 0) return;
    const upTo = Math.min(...this.runners.map((r) => r.cursor));
    if (upTo > 0) this.spool.ack(LANE_NORMAL, 0, upTo);
  }

  async start(): Promise<void> {
    for (const r of this.runners) r.start();
    this.mqttPort = await this.broker.start();
    this.adminPort = await this.admin.start();
    this.log.info({ siteId: this.cfg.siteId, mqtt: `mqtt://${this.cfg.mqtt.host}:${this.mqttPort}`, spool: this.spool.depth() }, 'collector listening');
  }

  health(): { ok: boolean; clients: number; spool: { rows: number; bytes: number }; sinks: Record<string, unknown> } {
    const sinks = Object.fromEntries(this.runners.map((r) => [r.sink.name, r.healthy]));
    return { ok: this.runners.every((r) => r.healthy.ok), clients: this.broker.clients, spool: this.spool.depth(), sinks };
  }

  async stop(): Promise<void> {
    await this.broker.stop();
    this.writer.close();
    await Promise.all(this.runners.map((r) => r.stop()));
    await this.admin.stop();
    this.spool.close();
    this.log.info({ siteId: this.cfg.siteId }, 'collector stopped');
  }
}
