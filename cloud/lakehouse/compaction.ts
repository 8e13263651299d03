/**
 * Compaction: merges runs of small Parquet files of one partition into one file, sorted for range
 * pruning (silver by device, metric, ts; gold by device, metric, bucket). Gold rollups hold partial
 * aggregates per micro-batch, so merging them re-aggregates per key — a compacted partition has one
 * row per (device, metric, bucket).
 *
 * Only files at or below the committed lake cursor are touched, and only contiguous runs (no other
 * file of the partition between), so the merged file's range covers exactly its inputs. The merged
 * file is fsynced and renamed in before the inputs are deleted; a crash in between leaves inputs
 * that the merged file supersedes (see layout.ts), which readers skip and the next run deletes.
 */
import { mkdirSync, renameSync, rmSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fsyncPath } from '../../common/durable-file.js';
import type { Logger } from '../../common/log.js';
import type { Duck } from './duckdb.js';
import {
  listFiles,
  liveAndSuperseded,
  mergedFileName,
  sqlFileList,
  sqlString,
  TABLE_NAMES,
  type DataFile,
  type TableName,
} from './layout.js';

export interface CompactionOptions {
  /** Committed lake cursor: files beyond it belong to a flush in progress. */
  cursor: number;
  minFiles: number;
  targetFileBytes: number;
  tables?: TableName[];
  /** Partitions before this date (YYYY-MM-DD) are closed: any run of 2+ files is merged. */
  closedBefore?: string;
}

export interface CompactionReport {
  merged: number;
  inputFiles: number;
  removedLeftovers: number;
}

// sum() of BIGINT is HUGEINT, which Parquet stores as DOUBLE: without the casts a merged file's
// count/alerts would differ in type from the writer's INT64 ones, and Spark refuses a folder whose
// files disagree (docs/lakehouse.md, Parquet contract).
const ROLLUP_MERGE = `SELECT device, metric, bucket_start, sum(count)::BIGINT AS count, min(min) AS min, max(max) AS max, sum(sum) AS sum,
  sum(sum) / sum(count) AS mean, arg_max(last, last_ts) AS last, max(last_ts) AS last_ts, any_value(unit) AS unit,
  max(max_score) AS max_score, sum(alerts)::BIGINT AS alerts`;

function mergeQuery(table: TableName, src: string): string {
  switch (table) {
    case 'rollup1m':
    case 'rollup1h':
      return `${ROLLUP_MERGE} FROM ${src} GROUP BY device, metric, bucket_start ORDER BY device, metric, bucket_start`;
    case 'silver':
      return `SELECT * FROM ${src} ORDER BY device, metric, ts`;
    case 'anomalies':
      return `SELECT * FROM ${src} ORDER BY device, ts`;
    case 'bronze':
    case 'quarantine':
      return `SELECT * FROM ${src} ORDER BY received_at, batch_id`;
  }
}

/** Runs of consecutive (by range) small files worth merging. */
function runs(files: DataFile[], opts: CompactionOptions, closed: boolean): DataFile[][] {
  const sorted = [...files].sort((a, b) => a.lo - b.lo || a.hi - b.hi);
  const out: DataFile[][] = [];
  let run: DataFile[] = [];
  let runBytes = 0;
  const close = (): void => {
    if (run.length >= (closed ? 2 : opts.minFiles)) out.push(run);
    run = [];
    runBytes = 0;
  };
  for (const f of sorted) {
    // A file beyond the cursor, or already big, ends the run: the merged range must not cover it.
    if (f.hi > opts.cursor || f.bytes >= opts.targetFileBytes) {
      close();
      continue;
    }
    run.push(f);
    runBytes += f.bytes;
    if (runBytes >= opts.targetFileBytes) close();
  }
  close();
  return out;
}

/** `onProgress(done, total)` follows the merged runs (the CLI draws it; the daemon passes none). */
export async function compact(
  root: string,
  duck: Duck,
  opts: CompactionOptions,
  log: Logger,
  onProgress?: (done: number, total: number) => void,
): Promise<CompactionReport> {
  const report: CompactionReport = { merged: 0, inputFiles: 0, removedLeftovers: 0 };
  const tmp = join(root, '_tmp', `compact-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  // Planned first, so progress has a total.
  const plan: { table: TableName; run: DataFile[] }[] = [];
  try {
    for (const table of opts.tables ?? TABLE_NAMES) {
      const { live, superseded } = liveAndSuperseded(listFiles(root, table).filter((f) => f.hi <= opts.cursor || f.gen > 0));
      for (const f of superseded) {
        unlinkSync(f.path);
        report.removedLeftovers++;
      }
      const partitions = new Map<string, DataFile[]>();
      for (const f of live) {
        const k = `${f.site}\u0000${f.date}`;
        partitions.set(k, [...(partitions.get(k) ?? []), f]);
      }
      for (const files of partitions.values()) {
        const closed = opts.closedBefore !== undefined && files[0]!.date < opts.closedBefore;
        for (const run of runs(files, opts, closed)) plan.push({ table, run });
      }
    }
    onProgress?.(0, plan.length);
    for (const { table, run } of plan) {
      await mergeRun(duck, table, run, tmp);
      report.merged++;
      report.inputFiles += run.length;
      onProgress?.(report.merged, plan.length);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  if (report.merged > 0 || report.removedLeftovers > 0) log.info(report, 'lakehouse compaction done');
  return report;
}

async function mergeRun(duck: Duck, table: TableName, run: DataFile[], tmp: string): Promise<void> {
  const lo = run[0]!.lo;
  const hi = run[run.length - 1]!.hi;
  const out = join(tmp, `${table}-${lo}-${hi}.parquet`);
  // union_by_name: files of one table written before a column was added (gold/anomalies' explain) merge with newer ones.
  const src = `read_parquet(${sqlFileList(run)}, hive_partitioning = false, union_by_name = true)`;
  await duck.query(`COPY (${mergeQuery(table, src)}) TO ${sqlString(out)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 100000)`);
  fsyncPath(out);
  const dir = dirname(run[0]!.path);
  const target = join(dir, mergedFileName(lo, hi, Date.now()));
  renameSync(out, target);
  fsyncPath(dir);
  for (const f of run) unlinkSync(f.path);
  fsyncPath(dir);
}
