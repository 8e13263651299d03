/**
 * Lakehouse: the history (bronze, silver, gold Parquet under one root) — the writer that fills it
 * from staging, queries over it, and compaction and retention on a schedule.
 */
import { mkdirSync } from 'node:fs';
import type { TokenCredential } from '@azure/identity';
import type { StoragePipelineOptions } from '@azure/storage-blob';
import type { Logger } from '../../common/log.js';
import { counter, type Registry } from '../../common/metrics.js';
import type { Lease, Store } from '../store/store.js';
import type { CloudConfig } from '../config.js';
import { lakehouseRoot } from '../config.js';
import type { BlobMirror } from './blob-mirror.js';
import { compact, type CompactionReport } from './compaction.js';
import { Duck } from './duckdb.js';
import { withMaintenanceLock } from './layout.js';
import { LakehouseQuery } from './query.js';
import { applyRetention, type RetentionReport } from './retention.js';
import type { StagingStore } from './staging.js';
import { LakehouseWriter } from './writer.js';

export interface LakehouseOpenOptions {
  /** Credential for the Blob copy instead of DefaultAzureCredential (hosts with their own). */
  blobCredential?: TokenCredential;
  /** Storage client pipeline options (tests shorten the SDK's retries). */
  blobPipeline?: StoragePipelineOptions;
}

export class Lakehouse {
  readonly writer: LakehouseWriter;
  readonly query: LakehouseQuery;
  private readonly timers: NodeJS.Timeout[] = [];
  /** The maintenance run in progress, awaited before DuckDB closes. */
  private maintenance: Promise<unknown> = Promise.resolve();
  private readonly mMaintenance;
  readonly lease: Lease;

  private constructor(
    readonly root: string,
    readonly duck: Duck,
    private readonly cfg: CloudConfig,
    private readonly staging: StagingStore,
    private readonly store: Store,
    private readonly log: Logger,
    registry: Registry,
    /** The Azure Blob copy, when `lakehouse.url` is set. */
    readonly mirror: BlobMirror | undefined,
  ) {
    // One writer across replicas; compaction and retention run where it runs (they rewrite its files).
    this.lease = store.lease('lakehouse-writer', cfg.store.leaseRetryMs);
    this.writer = new LakehouseWriter(root, cfg.lakehouse, staging, duck, log, registry, this.lease);
    if (mirror) this.writer.onCommit = () => mirror.requestSync();
    this.query = new LakehouseQuery(root, duck, () => staging.cursor());
    this.mMaintenance = counter(registry, 'edgetwin_cloud_lake_maintenance_total', 'Compaction and retention runs, by job and result', [
      'job',
      'result',
    ]);
  }

  static async open(
    cfg: CloudConfig,
    staging: StagingStore,
    store: Store,
    log: Logger,
    registry: Registry,
    opts: LakehouseOpenOptions = {},
  ): Promise<Lakehouse> {
    const root = lakehouseRoot(cfg);
    mkdirSync(root, { recursive: true });
    // The SDK loads only when a container is configured.
    const mirror = cfg.lakehouse.url
      ? await (
          await import('./blob-mirror.js')
        ).openBlobMirror({ root, cfg: cfg.lakehouse, staging, log, registry, credential: opts.blobCredential, pipeline: opts.blobPipeline })
      : undefined;
    const duck = await Duck.open({ threads: cfg.lakehouse.duckdbThreads, memoryLimitMb: cfg.lakehouse.duckdbMemoryLimitMb });
    return new Lakehouse(root, duck, cfg, staging, store, log, registry, mirror);
  }

  start(): void {
    this.writer.start();
    if (this.mirror) {
      this.mirror.start();
      // Catches up on what a crash left unmirrored.
      this.mirror.requestSync();
    }
    const every = (ms: number, job: 'compaction' | 'retention', fn: () => Promise<unknown>): void => {
      if (ms <= 0) return;
      const t = setInterval(() => {
        // Scheduled maintenance runs on the writer's replica only: it rewrites the writer's files.
        if (!this.lease.held) return;
        this.maintenance = fn().then(
          () => this.mMaintenance.inc({ job, result: 'ok' }),
          (err: unknown) => {
            this.mMaintenance.inc({ job, result: 'error' });
            this.log.warn({ job, err }, 'lakehouse maintenance failed; next run retries');
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
      compact(
        this.root,
        this.duck,
        {
          cursor: this.staging.cursor(),
          minFiles: c.minFiles,
          targetFileBytes: c.targetFileBytes,
          closedBefore: new Date().toISOString().slice(0, 10),
        },
        this.log,
      ),
    ).finally(() => this.mirror?.requestSync());
  }

  retention(opts: { dryRun?: boolean } = {}): Promise<RetentionReport | undefined> {
    return withMaintenanceLock(this.root, async () =>
      applyRetention(
        this.root,
        this.cfg.lakehouse.retention,
        { db: this.store, batchIdRetentionDays: this.cfg.ingest.batchIdRetentionDays },
        this.log,
        opts,
      ),
    ).finally(() => this.mirror?.requestSync());
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    await this.maintenance;
    await this.writer.stop();
    await this.lease.release();
    await this.mirror?.stop();
    this.duck.close();
  }
}
