/**
 * LakehouseWriter: turns staged batches into Parquet, in micro-batches. One flush takes the oldest
 * staged batches (up to flushMaxBytes), hands their raw bodies to DuckDB — which parses the JSON and
 * writes every table with PARTITION_BY (site, date) on its own threads — fsyncs the files, renames
 * them into their partitions, and only then moves the lake cursor and frees the staging rows.
 *
 * A crash anywhere leaves either nothing or files beyond the cursor, which start() deletes before
 * the same batches are written again: each reading reaches silver exactly once.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, unlinkSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fsyncPath } from '../../common/durable-file.js';
import { ErrorCodes, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { counter, gauge, histogram, type Registry } from '../../common/metrics.js';
import type { LakehouseConfig } from '../config.js';
import type { DuckDBConnection } from '@duckdb/node-api';
import type { Duck } from './duckdb.js';
import { isDataError, Isolator, publicError } from './isolate.js';
import { listFiles, sqlString, TABLE_NAMES, TABLES, walkParquet, writerFileName } from './layout.js';
import { READINGS, SETUP, WRITER_QUERIES } from './writer-sql.js';
import { cleanedBody, CursorMoved, type StagedBatch, type StagingStore } from './staging.js';
import type { Lease } from '../store/store.js';

export interface WriterStatus {
  cursor: number;
  pendingBatches: number;
  pendingBytes: number;
  lastFlushAt: string | null;
  /** The last failure's class only (`Invalid Input Error`, `ENOSPC`): /healthz is public, the data it quoted is not. */
  lastError: string | null;
  failingSinceMs: number;
  /** Rows the writer itself could not store and sent to quarantine (reason `lake`) since start. */
  lakeQuarantined: number;
  /** This replica holds the writer lease (always, with SQLite). */
  leader: boolean;
}

/** How long stop() waits for a flush in progress before it interrupts DuckDB (SIGTERM must exit within 10 s). */
const STOP_WAIT_MS = 5000;
const FLUSH_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class LakehouseWriter {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private stopped = false;
  private lastFlushAt: number | null = null;
  private lastError: string | null = null;
  private failingSince = 0;
  /** While a failing micro-batch is being split: at most this many staged batches per flush (0 = no limit). */
  private narrow = 0;
  /** …until the cursor passes the failing micro-batch's end. */
  private suspectHi = 0;
  /** Quarantines what a staged batch that fails alone cannot store (isolate.ts). */
  private readonly isolator: Isolator;
  private readonly tmp: string;
  private readonly mFlushes;
  private readonly mSeconds;
  private readonly mRows;
  private readonly mPendingBytes;
  private readonly mPendingBatches;
  /** Called after each flush is committed (the lake cursor moved): the Blob mirror uploads then. */
  onCommit: (() => void) | undefined;
  /** This replica writes (holds the lease, and has cleaned up after the previous writer). */
  private leader = false;

  constructor(
    private readonly root: string,
    private readonly cfg: LakehouseConfig,
    private readonly staging: StagingStore,
    private readonly duck: Duck,
    private readonly log: Logger,
    registry: Registry,
    /**
     * One writer across replicas (PostgreSQL: a session advisory lock; SQLite: always held). A
     * replica that takes it over first removes what an unfinished flush of the previous one left.
     */
    private readonly lease?: Lease,
  ) {
    this.tmp = join(root, '_tmp');
    this.mFlushes = counter(registry, 'edgetwin_cloud_lake_flushes_total', 'Lakehouse micro-batch flushes, by result', ['result']);
    this.mSeconds = histogram(registry, 'edgetwin_cloud_lake_flush_seconds', 'Duration of one lakehouse flush', [], FLUSH_BUCKETS);
    this.mRows = counter(registry, 'edgetwin_cloud_lake_batches_written_total', 'Staged batches written to the lakehouse');
    this.mPendingBytes = gauge(registry, 'edgetwin_cloud_lake_pending_bytes', 'Staged bytes not yet in the lakehouse');
    this.mPendingBatches = gauge(registry, 'edgetwin_cloud_lake_pending_batches', 'Staged batches not yet in the lakehouse');
    this.isolator = new Isolator(root, staging, log, registry, (b) => this.probe(b));
  }

  /** Flushes on a timer; the first flush as the lease holder removes what an interrupted flush left behind. */
  start(): void {
    // SQLite (one process, always the writer): clean up at once, before anything reads the lake.
    if (!this.staging.shared && (!this.lease || this.lease.held)) {
      this.recover();
      this.setLeader(true);
    }
    this.schedule();
  }

  /** Whether this replica may write now; on taking the lease, cleans up after the previous writer. */
  private async mayWrite(): Promise<boolean> {
    if (this.lease && !this.lease.held) {
      if (this.leader) this.log.warn('lakehouse writer lease lost: another replica writes now');
      this.setLeader(false);
      // Not writing, but the pending figures (ingest backpressure) and the cursor (queries) follow the leader's.
      if (this.staging.shared) await this.staging.refresh();
      return false;
    }
    if (this.staging.shared || !this.leader) await this.staging.refresh();
    if (!this.leader) {
      this.recover();
      this.setLeader(true);
      if (this.lease && this.staging.shared)
        this.log.info({ cursor: this.staging.cursor() }, 'lakehouse writer lease taken: this replica writes');
    }
    return true;
  }

  private setLeader(leader: boolean): void {
    this.leader = leader;
    // The writer keeps the bodies its own replica stages (PostgreSQL); the others need not hold them.
    this.staging.keepOwnBodies = leader;
  }

  private recover(): void {
    // Only the writer's own leftovers: a concurrent `edgetwin cloud compact` keeps its files here too.
    for (const d of existsSync(this.tmp) ? readdirSync(this.tmp) : [])
      if (d.startsWith('flush-')) rmSync(join(this.tmp, d), { recursive: true, force: true });
    this.removeUncommitted();
  }

  /** Deletes files beyond the lake cursor: a flush that did not finish (they are written again). */
  private removeUncommitted(): void {
    const cursor = this.staging.cursor();
    const stale = TABLE_NAMES.flatMap((t) => listFiles(this.root, t)).filter((f) => f.hi > cursor);
    for (const f of stale) unlinkSync(f.path);
    if (stale.length > 0)
      this.log.warn({ removed: stale.length, cursor }, 'removed Parquet files of an unfinished flush; their batches are written again');
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
    // flushAll handles its own failures; the catch only keeps one unforeseen rejection from stopping every later flush.
    this.running = this.running.catch(() => undefined).then(() => this.flushAll());
    return this.running;
  }

  private async flushAll(): Promise<void> {
    try {
      if (!(await this.mayWrite())) return;
    } catch (err) {
      // The store or the lake folder cannot be read now (database down, broken scratch space): the next flush retries.
      this.lastError = errorMessage(err);
      if (this.failingSince === 0) this.failingSince = Date.now();
      this.log.debug({ err }, 'lakehouse writer: cannot start a flush; next one retries');
      return;
    }
    try {
      for (;;) {
        while (this.staging.pendingBatches > 0) {
          if (!(await this.flushOnce())) break;
        }
        // PostgreSQL: what other replicas staged meanwhile is only seen by reading the table (poke()
        // knows only the last refresh); a full micro-batch waiting goes now, as poke() does with SQLite.
        if (!this.staging.shared || this.stopped || this.staging.pendingBatches > 0 || !this.leader) break;
        await this.staging.refresh();
        if (this.staging.pendingBytes < this.cfg.flushMaxBytes) break;
      }
    } catch (err) {
      // Reading the staged batches failed (database gone mid-flush): nothing was released, the next flush retries.
      this.lastError = errorMessage(err);
      if (this.failingSince === 0) this.failingSince = Date.now();
      this.log.debug({ err }, 'lakehouse writer: cannot read the staged batches; next flush retries');
    }
    this.mPendingBytes.set(this.staging.pendingBytes);
    this.mPendingBatches.set(this.staging.pendingBatches);
  }

  private async flushOnce(): Promise<boolean> {
    let batches = await this.staging.take(this.cfg.flushMaxBytes);
    if (this.narrow > 0 && batches.length > this.narrow) batches = batches.slice(0, this.narrow);
    if (batches.length === 0) return false;
    // A body the database gave back damaged: the batches before it are written, then it is set aside.
    const damaged = batches.findIndex((b) => b.damaged !== undefined);
    if (damaged === 0) return this.isolator.setAside(batches[0]!, batches[0]!.damaged!);
    if (damaged > 0) batches = batches.slice(0, damaged);
    const lo = batches[0]!.id;
    const hi = batches[batches.length - 1]!.id;
    const end = this.mSeconds.startTimer();
    try {
      await this.write(batches, lo, hi);
      await this.staging.release(hi);
      this.onCommit?.();
      this.mFlushes.inc({ result: 'ok' });
      this.mRows.inc(batches.length);
      this.lastFlushAt = Date.now();
      if (this.failingSince !== 0) this.log.info({ failedMs: Date.now() - this.failingSince }, 'lakehouse writes recovered');
      this.failingSince = 0;
      this.lastError = null;
      if (this.narrow > 0 && hi >= this.suspectHi) this.narrow = 0;
      this.isolator.written(batches);
      return true;
    } catch (err) {
      if (err instanceof CursorMoved) {
        // Another replica took the lease: its cursor rules, and files above ours may be its own.
        this.setLeader(false);
        this.log.warn({ lo, hi }, 'lakehouse writer: another replica moved the cursor; this one stops writing');
        return false;
      }
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
      if (this.stopped || !isDataError(err)) return false;
      // Something in the data: halve the micro-batch until the failing staged batch stands alone,
      // writing the good halves on the way (every site's history keeps moving), then isolate its rows.
      if (batches.length > 1) {
        this.narrow = Math.ceil(batches.length / 2);
        this.suspectHi = Math.max(this.suspectHi, hi);
        this.log.warn({ code: ErrorCodes.LAKEHOUSE, lo, hi, next: this.narrow }, 'lakehouse micro-batch failed on its data: splitting it');
        return true;
      }
      return this.isolator.handle(batches[0]!, this.lastError);
    } finally {
      end();
    }
  }

  /** Writes one batch to a scratch folder as a flush would; the error, or undefined. */
  private async probe(b: StagedBatch): Promise<string | undefined> {
    const dir = join(this.tmp, `probe-${b.id}`);
    rmSync(dir, { recursive: true, force: true });
    try {
      await this.writePart(this.duck.writers[0]!, [b], dir, 'probe-{i}');
      return undefined;
    } catch (err) {
      return errorMessage(err);
    } finally {
      rmSync(dir, { recursive: true, force: true });
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
    await Promise.all(
      parts.map((part, k) =>
        part.length > 0 ? this.writePart(conns[k]!, part, join(dir, String(k)), `part-${lo}-${hi}-${k}{i}`) : undefined,
      ),
    );
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
      for (const file of walkParquet(join(dir, t))) {
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
      lastError: publicError(this.lastError),
      failingSinceMs: this.failingSince === 0 ? 0 : Date.now() - this.failingSince,
      lakeQuarantined: this.isolator.quarantined,
      leader: this.leader,
    };
  }

  /**
   * Stops the timer and writes what is staged (best effort: what fails stays staged for next start),
   * waiting at most STOP_WAIT_MS: then DuckDB is interrupted, and what the flush left beyond the
   * cursor is removed at the next start — shutdown never waits on a writer that fails or hangs.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([
      this.flush().then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), STOP_WAIT_MS))),
    ]);
    clearTimeout(timer);
    if (done) return;
    this.log.warn(
      { code: ErrorCodes.LAKEHOUSE, waitedMs: STOP_WAIT_MS },
      'lakehouse flush still running at shutdown: interrupted, redone at the next start',
    );
    for (const c of this.duck.writers) c.interrupt();
  }
}

function appendOrNull<T>(a: { appendNull(): void }, v: T | null, append: (v: T) => void): void {
  if (v === null) a.appendNull();
  else append(v);
}
