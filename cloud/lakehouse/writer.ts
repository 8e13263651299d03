/**
 * LakehouseWriter: turns staged batches into Parquet, in micro-batches. One flush takes the oldest
 * staged batches (up to flushMaxBytes), hands their raw bodies to DuckDB — which parses the JSON and
 * writes every table with PARTITION_BY (site, date) on its own threads — fsyncs the files, renames
 * them into their partitions, and only then moves the lake cursor and frees the staging rows.
 *
 * A crash anywhere leaves either nothing or files beyond the cursor, which start() deletes before
 * the same batches are written again: each reading reaches silver exactly once.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { ErrorCodes, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { counter, gauge, histogram, type Registry } from '../../common/metrics.js';
import type { LakehouseConfig } from '../config.js';
import type { DuckDBConnection } from '@duckdb/node-api';
import type { Duck } from './duckdb.js';
import { fsyncPath, listFiles, sqlString, TABLE_NAMES, TABLES, writerFileName, type TableName } from './layout.js';
import type { StagedBatch, StagingStore } from './staging.js';

/** The telemetry part of an envelope, as DuckDB's json_transform extracts it (extra keys are ignored). */
const ENVELOPE_STRUCTURE = JSON.stringify({
  messages: [
    {
      kind: 'VARCHAR',
      device: 'VARCHAR',
      epoch: 'BIGINT',
      readings: [{ seq: 'BIGINT', ts: 'BIGINT', metric: 'VARCHAR', value: 'DOUBLE', unit: 'VARCHAR', score: 'DOUBLE', model: 'VARCHAR', alert: 'BOOLEAN' }],
    },
  ],
});

const SETUP = [
  'CREATE OR REPLACE TEMP TABLE mb_batches (stg BIGINT, site VARCHAR, batch_id VARCHAR, received BIGINT, body BLOB, clean BLOB)',
  `CREATE OR REPLACE TEMP TABLE mb_quarantine (site VARCHAR, batch_id VARCHAR, received BIGINT, device VARCHAR, epoch BIGINT, seq BIGINT,
     ts_ms BIGINT, metric VARCHAR, value DOUBLE, unit VARCHAR, reason VARCHAR, detail VARCHAR, raw VARCHAR)`,
];

const READINGS = `CREATE OR REPLACE TEMP TABLE mb_readings AS
  WITH m AS (
    SELECT site, batch_id, received, unnest(json_transform(decode(coalesce(clean, body)), ${sqlString(ENVELOPE_STRUCTURE)}).messages) AS msg
    FROM mb_batches
  )
  SELECT site, batch_id, received, msg.device AS device, msg.epoch AS epoch, unnest(msg.readings, recursive := true)
  FROM m WHERE msg.kind IS NULL AND msg.device IS NOT NULL`;

const rollup = (interval: string): string => `
  SELECT device, metric, b::TIMESTAMPTZ AS bucket_start, count(*) AS count, min(value) AS min, max(value) AS max,
    sum(value) AS sum, avg(value) AS mean, arg_max(value, ts) AS last, epoch_ms(max(ts))::TIMESTAMPTZ AS last_ts,
    any_value(unit) AS unit, max(score) AS max_score, count(*) FILTER (WHERE alert) AS alerts,
    site, b::DATE AS date
  FROM (SELECT *, time_bucket(INTERVAL ${interval}, epoch_ms(ts)) AS b FROM mb_readings)
  GROUP BY site, device, metric, b`;

/** What each table's files hold; partition columns (site, date) go in the folder names, not the files. */
export const WRITER_QUERIES: Record<TableName, string> = {
  bronze: `SELECT batch_id, epoch_ms(received)::TIMESTAMPTZ AS received_at, stg AS staging_id, octet_length(body) AS bytes,
      decode(body) AS body, site, epoch_ms(received)::DATE AS date FROM mb_batches`,
  silver: `SELECT device, epoch, seq, epoch_ms(ts)::TIMESTAMPTZ AS ts, metric, value, unit, score, model, coalesce(alert, false) AS alert,
      batch_id, epoch_ms(received)::TIMESTAMPTZ AS received_at, site, epoch_ms(ts)::DATE AS date FROM mb_readings`,
  quarantine: `SELECT device, epoch, seq, ts_ms, metric, value, unit, reason, detail, raw, batch_id,
      epoch_ms(received)::TIMESTAMPTZ AS received_at, site, epoch_ms(received)::DATE AS date FROM mb_quarantine`,
  rollup1m: rollup('1 minute'),
  rollup1h: rollup('1 hour'),
  anomalies: `SELECT device, metric, epoch_ms(ts)::TIMESTAMPTZ AS ts, epoch, seq, value, unit, score, model, batch_id,
      site, epoch_ms(ts)::DATE AS date FROM mb_readings WHERE alert`,
};

/** The envelope without the messages/readings the pipeline left out of silver. */
function cleanedBody(b: StagedBatch): Buffer | null {
  if (!b.extra || b.extra.drop.length === 0) return null;
  const env = JSON.parse(b.body.toString('utf8')) as { messages: unknown[] };
  const wholly = new Set<number>();
  const readings = new Map<number, Set<number>>();
  for (const [i, j] of b.extra.drop) {
    if (j < 0) wholly.add(i);
    else {
      const s = readings.get(i) ?? new Set<number>();
      s.add(j);
      readings.set(i, s);
    }
  }
  const messages: unknown[] = [];
  env.messages.forEach((m, i) => {
    if (wholly.has(i)) return;
    const drop = readings.get(i);
    if (!drop) return void messages.push(m);
    const msg = m as { readings: unknown[] };
    const kept = msg.readings.filter((_, j) => !drop.has(j));
    if (kept.length > 0) messages.push({ ...msg, readings: kept });
  });
  return Buffer.from(JSON.stringify({ messages }));
}

export interface WriterStatus {
  cursor: number;
  pendingBatches: number;
  pendingBytes: number;
  lastFlushAt: string | null;
  lastError: string | null;
  failingSinceMs: number;
}

export class LakehouseWriter {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private stopped = false;
  private lastFlushAt: number | null = null;
  private lastError: string | null = null;
  private failingSince = 0;
  private readonly tmp: string;
  private readonly mFlushes;
  private readonly mSeconds;
  private readonly mRows;
  private readonly mPendingBytes;
  private readonly mPendingBatches;
  /** Called after each flush is committed (the lake cursor moved): the Blob mirror uploads then. */
  onCommit: (() => void) | undefined;

  constructor(
    private readonly root: string,
    private readonly cfg: LakehouseConfig,
    private readonly staging: StagingStore,
    private readonly duck: Duck,
    private readonly log: Logger,
    registry: Registry,
  ) {
    this.tmp = join(root, '_tmp');
    this.mFlushes = counter(registry, 'edgetwin_cloud_lake_flushes_total', 'Lakehouse micro-batch flushes, by result', ['result']);
    this.mSeconds = histogram(registry, 'edgetwin_cloud_lake_flush_seconds', 'Duration of one lakehouse flush', [], [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]);
    this.mRows = counter(registry, 'edgetwin_cloud_lake_batches_written_total', 'Staged batches written to the lakehouse');
    this.mPendingBytes = gauge(registry, 'edgetwin_cloud_lake_pending_bytes', 'Staged bytes not yet in the lakehouse');
    this.mPendingBatches = gauge(registry, 'edgetwin_cloud_lake_pending_batches', 'Staged batches not yet in the lakehouse');
  }

  /** Removes what an interrupted flush left behind, then flushes on a timer. */
  start(): void {
    this.recover();
    this.schedule();
  }

  private recover(): void {
    // Only the writer's own leftovers: a concurrent `edgetwin cloud compact` keeps its files here too.
    for (const d of existsSync(this.tmp) ? readdirSync(this.tmp) : []) if (d.startsWith('flush-')) rmSync(join(this.tmp, d), { recursive: true, force: true });
    this.removeUncommitted();
  }

  /** Deletes files beyond the lake cursor: a flush that did not finish (they are written again). */
  private removeUncommitted(): void {
    const cursor = this.staging.cursor();
    let removed = 0;
    for (const t of TABLE_NAMES) {
      for (const f of listFiles(this.root, t)) {
        if (f.hi > cursor) {
          unlinkSync(f.path);
          removed++;
        }
      }
    }
    if (removed > 0) this.log.warn({ removed, cursor }, 'removed Parquet files of an unfinished flush; their batches are written again');
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      void this.flush().finally(() => this.schedule());
    }, this.cfg.flushIntervalMs);
    this.timer.unref();
  }

  /** Asks for a flush now when enough is staged (called after each ingest). */
  poke(): void {
    if (this.staging.pendingBytes >= this.cfg.flushMaxBytes) void this.flush();
  }

  /** Writes everything staged so far; resolves when it is in the lakehouse (or the flush failed). */
  flush(): Promise<void> {
    this.running = this.running.then(() => this.flushAll());
    return this.running;
  }

  private async flushAll(): Promise<void> {
    while (this.staging.pendingBatches > 0) {
      if (!(await this.flushOnce())) break;
    }
    this.mPendingBytes.set(this.staging.pendingBytes);
    this.mPendingBatches.set(this.staging.pendingBatches);
  }

  private async flushOnce(): Promise<boolean> {
    const batches = this.staging.take(this.cfg.flushMaxBytes);
    if (batches.length === 0) return false;
    const lo = batches[0]!.id;
    const hi = batches[batches.length - 1]!.id;
    const end = this.mSeconds.startTimer();
    try {
      await this.write(batches, lo, hi);
      this.staging.release(hi);
      this.onCommit?.();
      this.mFlushes.inc({ result: 'ok' });
      this.mRows.inc(batches.length);
      this.lastFlushAt = Date.now();
      if (this.failingSince !== 0) this.log.info({ failedMs: Date.now() - this.failingSince }, 'lakehouse writes recovered');
      this.failingSince = 0;
      this.lastError = null;
      return true;
    } catch (err) {
      this.mFlushes.inc({ result: 'error' });
      this.lastError = errorMessage(err);
      const first = this.failingSince === 0;
      if (first) this.failingSince = Date.now();
      // The batches stay staged and are written again on the next flush: nothing is lost. Files
      // this attempt already renamed in must go, or a retry over a longer range would add to them.
      try {
        this.removeUncommitted();
      } catch {
        // retried with the next flush; start-up removes them in any case
      }
      this.log[first ? 'error' : 'debug']({ code: ErrorCodes.LAKEHOUSE, lo, hi, err: this.lastError }, 'lakehouse flush failed; retrying');
      return false;
    } finally {
      end();
    }
  }

  /**
   * Splits the micro-batch over the writer connections: DuckDB parses one table's JSON on one
   * thread, so two halves on two connections use two cores. Both halves' files carry the same
   * `<lo>-<hi>`; their index starts with the half's number.
   */
  private async write(batches: StagedBatch[], lo: number, hi: number): Promise<void> {
    const conns = this.duck.writers;
    const parts = conns.map((): StagedBatch[] => []);
    batches.forEach((b, i) => parts[i % conns.length]!.push(b));
    const dir = join(this.tmp, `flush-${lo}-${hi}`);
    rmSync(dir, { recursive: true, force: true });
    await Promise.all(parts.map((part, k) => (part.length > 0 ? this.writePart(conns[k]!, part, join(dir, String(k)), `part-${lo}-${hi}-${k}{i}`) : undefined)));
    for (let k = 0; k < conns.length; k++) this.publish(join(dir, String(k)), lo, hi);
    rmSync(dir, { recursive: true, force: true });
  }

  private async writePart(conn: DuckDBConnection, batches: StagedBatch[], dir: string, pattern: string): Promise<void> {
    for (const sql of SETUP) await conn.run(sql);
    const ab = await conn.createAppender('mb_batches');
    const aq = await conn.createAppender('mb_quarantine');
    try {
      for (const b of batches) {
        ab.appendBigInt(BigInt(b.id));
        ab.appendVarchar(b.site);
        ab.appendVarchar(b.batchId);
        ab.appendBigInt(BigInt(b.received));
        ab.appendBlob(b.body);
        const clean = cleanedBody(b);
        if (clean) ab.appendBlob(clean);
        else ab.appendNull();
        ab.endRow();
        for (const q of b.extra?.quarantine ?? []) {
          aq.appendVarchar(b.site);
          aq.appendVarchar(b.batchId);
          aq.appendBigInt(BigInt(b.received));
          appendOrNull(aq, q.device, (v) => aq.appendVarchar(v));
          appendOrNull(aq, q.epoch, (v) => aq.appendBigInt(BigInt(v)));
          appendOrNull(aq, q.seq, (v) => aq.appendBigInt(BigInt(v)));
          appendOrNull(aq, q.ts, (v) => aq.appendBigInt(BigInt(v)));
          appendOrNull(aq, q.metric, (v) => aq.appendVarchar(v));
          appendOrNull(aq, q.value, (v) => aq.appendDouble(v));
          appendOrNull(aq, q.unit, (v) => aq.appendVarchar(v));
          aq.appendVarchar(q.reason);
          aq.appendVarchar(q.detail);
          aq.appendVarchar(q.raw);
          aq.endRow();
        }
      }
      ab.flushSync();
      aq.flushSync();
    } finally {
      ab.closeSync();
      aq.closeSync();
    }
    await conn.run(READINGS);
    for (const t of TABLE_NAMES) {
      mkdirSync(join(dir, t), { recursive: true });
      await conn.run(
        `COPY (${WRITER_QUERIES[t]}) TO ${sqlString(join(dir, t))} (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, PARTITION_BY (site, date), OVERWRITE_OR_IGNORE, FILENAME_PATTERN ${sqlString(pattern)})`,
      );
    }
  }

  /** fsyncs each new file, renames it into its partition, and fsyncs the folders that changed. */
  private publish(dir: string, lo: number, hi: number): void {
    const dirs = new Set<string>();
    for (const t of TABLE_NAMES) {
      for (const file of walk(join(dir, t))) {
        const rel = relative(join(dir, t), file); // site=…/date=…/part-lo-hi-i.parquet
        const index = /-(\d+)\.parquet$/.exec(rel)?.[1] ?? '0';
        const target = join(this.root, TABLES[t], dirname(rel), writerFileName(lo, hi, index));
        fsyncPath(file);
        const made = mkdirSync(dirname(target), { recursive: true });
        // A new folder's entry lives in its parent: every folder from the target up to the parent of
        // the first one created needs its fsync.
        for (let d = dirname(target); ; d = dirname(d)) {
          dirs.add(d);
          if (!made || d === dirname(made) || d === dirname(d)) break;
        }
        renameSync(file, target);
      }
    }
    for (const d of dirs) {
      try {
        fsyncPath(d);
      } catch {
        // A parent outside the lakehouse may not be ours to open; its entry was fsynced on creation.
      }
    }
  }

  status(): WriterStatus {
    return {
      cursor: this.staging.cursor(),
      pendingBatches: this.staging.pendingBatches,
      pendingBytes: this.staging.pendingBytes,
      lastFlushAt: this.lastFlushAt === null ? null : new Date(this.lastFlushAt).toISOString(),
      lastError: this.lastError,
      failingSinceMs: this.failingSince === 0 ? 0 : Date.now() - this.failingSince,
    };
  }

  /** Stops the timer and writes what is staged (best effort: what fails stays staged for next start). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
  }
}

function appendOrNull<T>(a: { appendNull(): void }, v: T | null, append: (v: T) => void): void {
  if (v === null) a.appendNull();
  else append(v);
}

function* walk(dir: string): Generator<string> {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return;
  }
  for (const e of entries) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) yield* walk(p);
    else if (e.endsWith('.parquet')) yield p;
  }
}
