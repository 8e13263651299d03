/**
 * Lakehouse: the history (bronze, silver, gold Parquet under one root) — the writer that fills it
 * from staging, queries over it, and compaction and retention on a schedule.
 */
import { mkdirSync } from 'node:fs';
import { errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { counter, type Registry } from '../../common/metrics.js';
import type { SqliteDb } from '../../common/sqlite.js';
import type { CloudConfig } from '../config.js';
import { lakehouseRoot } from '../config.js';
import { compact, type CompactionReport } from './compaction.js';
import { Duck } from './duckdb.js';
import { withMaintenanceLock } from './layout.js';
import { LakehouseQuery } from './query.js';
import { applyRetention, type RetentionReport } from './retention.js';
import type { StagingStore } from './staging.js';
import { LakehouseWriter } from './writer.js';

export class Lakehouse {
  readonly writer: LakehouseWriter;
  readonly query: LakehouseQuery;
  private readonly timers: NodeJS.Timeout[] = [];
  /** The maintenance run in progress, awaited before DuckDB closes. */
  private maintenance: Promise<unknown> = Promise.resolve();
  private readonly mMaintenance;

  private constructor(
    readonly root: string,
    readonly duck: Duck,
    private readonly cfg: CloudConfig,
    private readonly staging: StagingStore,
    private readonly db: SqliteDb,
    private readonly log: Logger,
    registry: Registry,
  ) {
    this.writer = new LakehouseWriter(root, cfg.lakehouse, staging, duck, log, registry);
    this.query = new LakehouseQuery(root, duck, () => staging.cursor());
    this.mMaintenance = counter(registry, 'edgetwin_cloud_lake_maintenance_total', 'Compaction and retention runs, by job and result', ['job', 'result']);
  }

  static async open(cfg: CloudConfig, staging: StagingStore, db: SqliteDb, log: Logger, registry: Registry): Promise<Lakehouse> {
    const root = lakehouseRoot(cfg);
    mkdirSync(root, { recursive: true });
    const duck = await Duck.open({ threads: cfg.lakehouse.duckdbThreads, memoryLimitMb: cfg.lakehouse.duckdbMemoryLimitMb });
    return new Lakehouse(root, duck, cfg, staging, db, log, registry);
  }

  start(): void {
    this.writer.start();
    const every = (ms: number, job: 'compaction' | 'retention', fn: () => Promise<unknown>): void => {
      if (ms <= 0) return;
      const t = setInterval(() => {
        this.maintenance = fn().then(
          () => this.mMaintenance.inc({ job, result: 'ok' }),
          (err: unknown) => {
            this.mMaintenance.inc({ job, result: 'error' });
            this.log.warn({ job, err: errorMessage(err) }, 'lakehouse maintenance failed; next run retries');
          },
        );
      }, ms);
      t.unref();
      this.timers.push(t);
    };
    every(this.cfg.lakehouse.compaction.intervalMs, 'compaction', () => this.compact());
    every(this.cfg.lakehouse.retention.intervalMs, 'retention', () => this.retention());
  }

  /** Merges small files (skipped, resolving undefined, while another process holds the maintenance lock). */
  compact(): Promise<CompactionReport | undefined> {
    const c = this.cfg.lakehouse.compaction;
    return withMaintenanceLock(this.root, () =>
      compact(this.root, this.duck, { cursor: this.staging.cursor(), minFiles: c.minFiles, targetFileBytes: c.targetFileBytes, closedBefore: new Date().toISOString().slice(0, 10) }, this.log),
    );
  }

  retention(opts: { dryRun?: boolean } = {}): Promise<RetentionReport | undefined> {
    return withMaintenanceLock(this.root, async () =>
      applyRetention(this.root, this.cfg.lakehouse.retention, { db: this.db, batchIdRetentionDays: this.cfg.ingest.batchIdRetentionDays }, this.log, opts),
    );
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    await this.maintenance;
    await this.writer.stop();
    this.duck.close();
  }
}
