/**
 * StagingStore: the durable landing of every accepted batch. An ingest is answered only after its
 * raw body is in the `staging` table (fsynced, in the same transaction as its dedup state); the
 * LakehouseWriter then turns staged batches into Parquet and releases them by moving the lake
 * cursor. Bodies of recent batches are also kept in memory so the writer rarely reads them back.
 */
import { gunzipSync } from 'node:zlib';
import type { MetaStore, SqliteDb } from '../../common/sqlite.js';
import type { QuarantineRow } from '../ingest/quality.js';

/** What the writer must leave out of silver, or route to quarantine, for one staged batch. */
export interface StagingExtra {
  /** [message index, reading index] left out of silver (duplicates, quarantined); reading -1 = whole message. */
  drop: [number, number][];
  quarantine: QuarantineRow[];
}

export interface StagedBatch {
  id: number;
  site: string;
  batchId: string;
  received: number;
  /** The envelope JSON exactly as received (decompressed). */
  body: Buffer;
  extra: StagingExtra | null;
}

interface PendingMeta {
  id: number;
  site: string;
  batchId: string;
  received: number;
  bytes: number;
  extra: StagingExtra | null;
}

const CURSOR = 'lake_cursor';

export class StagingStore {
  private readonly insertStmt;
  private readonly bodyStmt;
  /** Staged and not yet in the lakehouse, oldest first. */
  private readonly pending: PendingMeta[] = [];
  private readonly bodies = new Map<number, Buffer>();
  private memoryBytes = 0;
  private pendingBytesTotal = 0;

  constructor(private readonly db: SqliteDb, private readonly meta: MetaStore, private readonly memoryMaxBytes: number) {
    this.insertStmt = db.prepare('INSERT INTO staging (site, batch_id, received, encoding, body, bytes, extra) VALUES (?, ?, ?, ?, ?, ?, ?)');
    this.bodyStmt = db.prepare<[number], { encoding: string; body: Buffer }>('SELECT encoding, body FROM staging WHERE id = ?');
    const rows = db
      .prepare('SELECT id, site, batch_id, received, bytes, extra FROM staging WHERE id > ? ORDER BY id')
      .all(this.cursor()) as { id: number; site: string; batch_id: string; received: number; bytes: number; extra: string | null }[];
    for (const r of rows) {
      this.pending.push({ id: r.id, site: r.site, batchId: r.batch_id, received: r.received, bytes: r.bytes, extra: r.extra ? (JSON.parse(r.extra) as StagingExtra) : null });
      this.pendingBytesTotal += r.bytes;
    }
  }

  /** Highest staging id already in the lakehouse. */
  cursor(): number {
    return this.meta.get(CURSOR);
  }

  get pendingBatches(): number {
    return this.pending.length;
  }

  get pendingBytes(): number {
    return this.pendingBytesTotal;
  }

  /** Lands one batch; call inside the ingest transaction. `stored` is the body as received (gzip kept gzip). */
  insert(site: string, batchId: string, received: number, stored: { encoding: 'identity' | 'gzip'; bytes: Buffer }, bytes: number, extra: StagingExtra | null): number {
    return Number(this.insertStmt.run(site, batchId, received, stored.encoding, stored.bytes, bytes, extra ? JSON.stringify(extra) : null).lastInsertRowid);
  }

  /** Queues a committed batch for the writer; call only after the ingest transaction committed. */
  remember(b: StagedBatch): void {
    this.pending.push({ id: b.id, site: b.site, batchId: b.batchId, received: b.received, bytes: b.body.length, extra: b.extra });
    this.pendingBytesTotal += b.body.length;
    if (this.memoryBytes + b.body.length <= this.memoryMaxBytes) {
      this.bodies.set(b.id, b.body);
      this.memoryBytes += b.body.length;
    }
  }

  /** The oldest pending batches, up to maxBytes of bodies (at least one). */
  take(maxBytes: number): StagedBatch[] {
    const out: StagedBatch[] = [];
    let bytes = 0;
    for (const p of this.pending) {
      if (out.length > 0 && bytes + p.bytes > maxBytes) break;
      out.push({ id: p.id, site: p.site, batchId: p.batchId, received: p.received, extra: p.extra, body: this.body(p.id) });
      bytes += p.bytes;
    }
    return out;
  }

  private body(id: number): Buffer {
    const inMemory = this.bodies.get(id);
    if (inMemory) return inMemory;
    const row = this.bodyStmt.get(id);
    if (!row) throw new Error(`staged batch ${id} is missing`);
    return row.encoding === 'gzip' ? gunzipSync(row.body) : row.body;
  }

  /**
   * After a restore from the container into a fresh state: the restored files cover staging ids up
   * to `hi`, so the cursor moves there and new batches get ids above it (their file names must not
   * collide with restored ones). Only with nothing staged: pending ids would fall inside that range.
   */
  advanceCursor(hi: number): void {
    if (hi <= this.cursor()) return;
    if (this.pending.length > 0) throw new Error(`cannot move the lake cursor to ${hi}: ${this.pending.length} batches are staged below it`);
    this.db.transaction(() => {
      this.meta.set(CURSOR, hi);
      const seq = this.db.prepare("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'staging'").run(hi);
      if (seq.changes === 0) this.db.prepare("INSERT INTO sqlite_sequence (name, seq) VALUES ('staging', ?)").run(hi);
    })();
  }

  /** Marks everything up to `hi` as written to the lakehouse and frees it (one fsynced transaction). */
  release(hi: number): void {
    this.db.transaction(() => {
      this.meta.set(CURSOR, hi);
      this.db.prepare('DELETE FROM staging WHERE id <= ?').run(hi);
    })();
    while (this.pending.length > 0 && this.pending[0]!.id <= hi) {
      const p = this.pending.shift()!;
      this.pendingBytesTotal -= p.bytes;
      const b = this.bodies.get(p.id);
      if (b) {
        this.memoryBytes -= b.length;
        this.bodies.delete(p.id);
      }
    }
  }
}
