/**
 * FileCap: keeps an outbox's database file plus its WAL within `maxFileBytes` by page accounting
 * (docs/architecture.md, "Agent: disk cap"); the SqliteOutbox calls it after each write.
 */
import { statSync } from 'node:fs';
import type { SqliteDb } from '../sqlite.js';

/**
 * What the file plus WAL may exceed maxFileBytes by: the WAL frames of the one transaction that
 * crosses the checkpoint threshold beyond its reserve (writers keep transactions under
 * `txnMaxBytes`, so this stays within a few pages). Measured in test/agent/disk-cap.test.ts.
 */
export const FILE_CAP_MARGIN_BYTES = 64 * 1024;

/**
 * Page accounting for maxFileBytes. The WAL gets a reserve inside the cap: it is checkpointed
 * every half-reserve of frames and truncated back to half the reserve (journal_size_limit), and
 * writers keep each transaction under `txnMaxBytes` of bodies, so the WAL stays within its
 * reserve. The database may use the rest; after each write, pages beyond that are first taken
 * back from the free list (incremental vacuum), then by dropping the oldest rows.
 */
export class FileCap {
  readonly pageSize: number;
  readonly maxPages: number;
  readonly txnMaxBytes: number;
  /** Pages one shrink step may move: each moved page is a WAL frame, so a step stays inside the WAL reserve. */
  readonly shrinkStepPages: number;
  private readonly pageCount;
  private readonly freeCount;

  constructor(
    private readonly db: SqliteDb,
    maxFileBytes: number,
  ) {
    this.pageSize = db.pragma('page_size', { simple: true }) as number;
    const walReserve = Math.min(8 << 20, Math.max(128 << 10, Math.floor(maxFileBytes / 8)));
    const frame = this.pageSize + 24;
    db.pragma(`wal_autocheckpoint = ${Math.max(4, Math.floor(walReserve / 4 / frame))}`);
    db.pragma(`journal_size_limit = ${Math.floor(walReserve / 4)}`);
    this.maxPages = Math.floor((maxFileBytes - walReserve) / this.pageSize);
    // Rows cost about 1.5× their body in pages (row header, index entry, fill); the rest of a
    // transaction's frames are interior pages, the free list and pages moved by the vacuum.
    this.txnMaxBytes = Math.max(4096, Math.floor(walReserve / 8));
    this.shrinkStepPages = Math.max(16, Math.floor(walReserve / 8 / this.pageSize));
    this.pageCount = db.prepare('PRAGMA page_count').pluck();
    this.freeCount = db.prepare('PRAGMA freelist_count').pluck();
  }

  pages(): number {
    return this.pageCount.get() as number;
  }

  free(): number {
    return this.freeCount.get() as number;
  }

  over(): boolean {
    return this.pages() > this.maxPages;
  }

  /** Hands free pages (at most `maxPages`) back to the file system. */
  vacuum(maxPages = Infinity): void {
    const n = Math.min(this.free(), maxPages);
    if (n > 0) this.db.pragma(`incremental_vacuum(${n})`);
  }

  /**
   * Once most of the file is free pages (a drained backlog), gives them back to the disk, a step at
   * a time: a vacuum moves pages, and one big move would grow the WAL past its reserve.
   */
  shrinkStep(): void {
    const free = this.free();
    if (free >= this.shrinkStepPages && free * 2 > this.pages()) this.vacuum(this.shrinkStepPages);
  }
}

/** Bytes on disk of a SQLite file and its WAL. */
export function fileFootprint(path: string): { db: number; wal: number; total: number } {
  const size = (f: string): number => {
    try {
      return statSync(f).size;
    } catch {
      return 0;
    }
  };
  const db = size(path);
  const wal = size(`${path}-wal`);
  return { db, wal, total: db + wal };
}
