/**
 * StagingStore: the durable landing of every accepted batch. An ingest is answered only after its
 * raw body is in the `staging` table (committed, in the same transaction as its dedup state); the
 * LakehouseWriter then turns staged batches into Parquet and releases them by moving the lake
 * cursor. Bodies of recent batches are also kept in memory so the writer rarely reads them back.
 *
 * With PostgreSQL every replica stages and one writer (the lease holder) drains: the pending list
 * is then read from the table (`refresh`), never built from this replica's own inserts; the leader
 * keeps only the bodies of its own inserts in memory. Staging ids are taken under `tx.ordered()`, so
 * they commit in id order and the cursor ("written up to id N") never skips a batch that committed late.
 */
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { errorMessage } from '../../common/errors.js';
import { STAGING_CHANNEL, type Store, type Tx } from '../store/store.js';
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
  /**
   * Set when the stored body could not be inflated (storage damage: ingest checked it before it
   * staged it); `body` is then the stored bytes as they are, for the isolator to keep aside.
   */
  damaged?: string;
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
/** Bodies read back in one query at most this many at a time (one round trip per body was the PostgreSQL writer's bottleneck). */
const READ_CHUNK = 200;
const gunzipAsync = promisify(gunzip);

interface PendingRow {
  id: number;
  site: string;
  batch_id: string;
  received: number;
  bytes: number;
  extra: string | null;
}

/** The lake cursor moved under this writer: another replica holds the writer lease now. */
export class CursorMoved extends Error {
  constructor(expected: number) {
    super(`the lake cursor is no longer ${expected}: another writer took over`);
    this.name = 'CursorMoved';
  }
}

export class StagingStore {
  /** Staged and not yet in the lakehouse, oldest first. */
  private readonly pending: PendingMeta[] = [];
  private readonly pendingIds = new Set<number>();
  private readonly bodies = new Map<number, Buffer>();
  private memoryBytes = 0;
  private pendingBytesTotal = 0;
  private cursorNow = 0;
  /** Highest id in `pending` (or released): `refresh` reads above it. */
  private seen = 0;
  /** PostgreSQL: other replicas stage too; the table, not this process, is the list. */
  readonly shared: boolean;
  /**
   * PostgreSQL: keep the bodies this replica stages in memory (set while it holds the writer lease;
   * a replica that does not write would only hold them until the cursor passes them).
   */
  keepOwnBodies = false;

  private constructor(
    private readonly store: Store,
    private readonly memoryMaxBytes: number,
  ) {
    this.shared = store.kind === 'postgres';
  }

  static async open(store: Store, memoryMaxBytes: number): Promise<StagingStore> {
    const s = new StagingStore(store, memoryMaxBytes);
    await s.refresh();
    return s;
  }

  /** Highest staging id already in the lakehouse (as last read). */
  cursor(): number {
    return this.cursorNow;
  }

  get pendingBatches(): number {
    return this.pending.length;
  }

  get pendingBytes(): number {
    return this.pendingBytesTotal;
  }

  /** Bytes of staged bodies held in memory (at most memoryMaxBytes). */
  get bodyBytesInMemory(): number {
    return this.memoryBytes;
  }

  /** Re-reads the cursor and the batches staged after what is known (all replicas'); drops what another writer released. */
  async refresh(): Promise<void> {
    const cursor = (await this.store.get<{ v: number }>('SELECT v FROM meta WHERE k = ?', [CURSOR]))?.v ?? 0;
    this.drop(cursor);
    const rows = await this.store.all<PendingRow>(
      'SELECT id, site, batch_id, received, bytes, extra FROM staging WHERE id > ? ORDER BY id',
      [Math.max(this.seen, cursor)],
    );
    for (const r of rows) {
      const meta = { id: r.id, site: r.site, batchId: r.batch_id, received: r.received, bytes: r.bytes };
      this.enqueue({ ...meta, extra: r.extra ? (JSON.parse(r.extra) as StagingExtra) : null });
    }
  }

  /**
   * Queues one committed batch once, in id order. Both refresh() (reading the table) and remember()
   * (ingest, after its commit) may see the same batch, in either order and even while the other's
   * read is in flight: queued twice it would be written twice; queued out of order, release() of a
   * higher id would drop a lower one unwritten.
   */
  private enqueue(p: PendingMeta): boolean {
    if (p.id <= this.cursorNow || this.pendingIds.has(p.id)) return false;
    let at = this.pending.length;
    while (at > 0 && this.pending[at - 1]!.id > p.id) at--;
    this.pending.splice(at, 0, p);
    this.pendingIds.add(p.id);
    this.pendingBytesTotal += p.bytes;
    this.seen = Math.max(this.seen, p.id);
    return true;
  }

  /** Lands one batch; call inside the ingest transaction (last: it orders the commit). `stored` is the body as received (gzip kept gzip). */
  async insert(
    tx: Tx,
    site: string,
    batchId: string,
    received: number,
    stored: { encoding: 'identity' | 'gzip'; bytes: Buffer },
    bytes: number,
    extra: StagingExtra | null,
  ): Promise<number> {
    await tx.ordered();
    const row = await tx.get<{ id: number }>(
      'INSERT INTO staging (site, batch_id, received, encoding, body, bytes, extra) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id',
      [site, batchId, received, stored.encoding, stored.bytes, bytes, extra ? JSON.stringify(extra) : null],
    );
    tx.afterCommit(() => this.store.bus.notify(STAGING_CHANNEL));
    return row!.id;
  }

  /** Queues a committed batch for the writer; call only after the ingest transaction committed (SQLite; PostgreSQL reads the table). */
  remember(b: StagedBatch): void {
    if (this.shared) {
      // Only the body: a batch of a lower id may still be committing on another replica, so the
      // pending list stays what refresh() reads (queueing this one first would release that one unwritten).
      if (this.keepOwnBodies && b.id > this.cursorNow && this.memoryBytes + b.body.length <= this.memoryMaxBytes) {
        this.bodies.set(b.id, b.body);
        this.memoryBytes += b.body.length;
      }
      return;
    }
    // refresh() (this writer taking the lease) may have read the batch from the table, or written it already.
    const meta = { id: b.id, site: b.site, batchId: b.batchId, received: b.received, bytes: b.body.length, extra: b.extra };
    if (!this.enqueue(meta)) return;
    if (this.memoryBytes + b.body.length <= this.memoryMaxBytes) {
      this.bodies.set(b.id, b.body);
      this.memoryBytes += b.body.length;
    }
  }

  /** The oldest pending batches, up to maxBytes of bodies (at least one). */
  async take(maxBytes: number): Promise<StagedBatch[]> {
    const metas: PendingMeta[] = [];
    let bytes = 0;
    for (const p of this.pending) {
      if (metas.length > 0 && bytes + p.bytes > maxBytes) break;
      metas.push(p);
      bytes += p.bytes;
    }
    const read = await this.readBodies(metas.map((p) => p.id).filter((id) => !this.bodies.has(id)));
    return metas.map((p) => {
      const got = read.get(p.id);
      const body = this.bodies.get(p.id) ?? got?.body;
      if (!body) throw new Error(`staged batch ${p.id} is missing`);
      const b: StagedBatch = { id: p.id, site: p.site, batchId: p.batchId, received: p.received, extra: p.extra, body };
      if (got?.damaged !== undefined) b.damaged = got.damaged;
      return b;
    });
  }

  /**
   * Bodies not in memory: one query per chunk, inflated on the thread pool (off the event loop, in
   * parallel). One that does not inflate comes back as stored, marked damaged: an error here would
   * hold every later batch behind it, at every flush.
   */
  private async readBodies(ids: number[]): Promise<Map<number, { body: Buffer; damaged?: string }>> {
    const out = new Map<number, { body: Buffer; damaged?: string }>();
    for (let i = 0; i < ids.length; i += READ_CHUNK) {
      const chunk = ids.slice(i, i + READ_CHUNK);
      const rows = await this.store.all<{ id: number; encoding: string; body: Buffer }>(
        `SELECT id, encoding, body FROM staging WHERE id IN (${chunk.map(() => '?').join(', ')})`,
        chunk,
      );
      const read = await Promise.all(
        rows.map(async (r) => {
          if (r.encoding !== 'gzip') return { body: r.body };
          try {
            return { body: await gunzipAsync(r.body) };
          } catch (err) {
            return { body: r.body, damaged: `${r.encoding} body does not inflate: ${errorMessage(err)}` };
          }
        }),
      );
      rows.forEach((r, k) => out.set(r.id, read[k]!));
    }
    return out;
  }

  /**
   * Replaces what the writer leaves out of silver (and, rarely, the body it writes) for one pending
   * batch: the lakehouse writer's isolation of rows it cannot store (cloud/lakehouse/isolate.ts).
   * Durable, so a restart does not search again. `also` runs in the same transaction (the isolator
   * counts the rows it quarantined on their twins).
   */
  async update(id: number, extra: StagingExtra, body?: Buffer, also?: (tx: Tx) => Promise<void>): Promise<void> {
    const p = this.pending.find((x) => x.id === id);
    if (!p) throw new Error(`staged batch ${id} is not pending`);
    const json = JSON.stringify(extra);
    await this.store.tx(async (tx) => {
      if (body) await tx.run("UPDATE staging SET extra = ?, body = ?, encoding = 'identity' WHERE id = ?", [json, body, id]);
      else await tx.run('UPDATE staging SET extra = ? WHERE id = ?', [json, id]);
      await also?.(tx);
    });
    p.extra = extra;
    if (body) {
      const old = this.bodies.get(id);
      if (old) {
        this.memoryBytes -= old.length;
        this.bodies.delete(id);
      }
    }
  }

  /**
   * After a restore from the container into a fresh state: the restored files cover staging ids up
   * to `hi`, so the cursor moves there and new batches get ids above it (their file names must not
   * collide with restored ones). Only with nothing staged: pending ids would fall inside that range.
   */
  async advanceCursor(hi: number): Promise<void> {
    if (hi <= this.cursor()) return;
    if (this.pending.length > 0)
      throw new Error(`cannot move the lake cursor to ${hi}: ${this.pending.length} batches are staged below it`);
    await this.store.tx(async (tx) => {
      await tx.run('UPDATE meta SET v = ? WHERE k = ?', [hi, CURSOR]);
      await this.idsAbove(tx, hi);
    });
    this.cursorNow = hi;
    this.seen = Math.max(this.seen, hi);
  }

  /**
   * After a restore of an OLDER database under a newer lake copy (point-in-time restore): the cursor
   * stays (the writer deletes the files beyond it and writes the staged batches again), but new
   * batches get ids above `hi`, so no new file is named like one the copy still holds.
   */
  async reserveIdsAbove(hi: number): Promise<void> {
    await this.store.tx((tx) => this.idsAbove(tx, hi));
  }

  private async idsAbove(tx: Tx, hi: number): Promise<void> {
    if (tx.dialect.kind === 'postgres') {
      await tx.get("SELECT setval(pg_get_serial_sequence('staging', 'id'), GREATEST(?, (SELECT coalesce(max(id), 1) FROM staging)))", [hi]);
    } else {
      const seq = await tx.run("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'staging'", [hi]);
      if (seq.changes === 0) await tx.run("INSERT INTO sqlite_sequence (name, seq) VALUES ('staging', ?)", [hi]);
    }
  }

  /**
   * Marks everything up to `hi` as written to the lakehouse and frees it (one transaction). The
   * cursor moves only from the value this writer last saw: a writer that lost its lease to another
   * replica fails here (CursorMoved) instead of moving the cursor under the new writer's feet.
   */
  async release(hi: number): Promise<void> {
    const from = this.cursorNow;
    await this.store.tx(async (tx) => {
      const moved = await tx.run('UPDATE meta SET v = ? WHERE k = ? AND v = ?', [hi, CURSOR, from]);
      if (moved.changes !== 1) throw new CursorMoved(from);
      await tx.run('DELETE FROM staging WHERE id <= ?', [hi]);
    });
    this.drop(hi);
  }

  private drop(cursor: number): void {
    this.cursorNow = Math.max(this.cursorNow, cursor);
    this.seen = Math.max(this.seen, this.cursorNow);
    while (this.pending.length > 0 && this.pending[0]!.id <= cursor) {
      const p = this.pending.shift()!;
      this.pendingIds.delete(p.id);
      this.pendingBytesTotal -= p.bytes;
    }
    // Every body at or below the cursor, also those the pending list never held (PostgreSQL: kept
    // by the leader, released before its refresh saw them).
    // Insertion order is nearly id order: stop at the first one still pending (a straggler goes with a later drop).
    for (const [id, b] of this.bodies) {
      if (id > this.cursorNow) break;
      this.memoryBytes -= b.length;
      this.bodies.delete(id);
    }
  }
}

/** The envelope without the messages/readings the pipeline left out of silver. */
export function cleanedBody(b: StagedBatch): Buffer | null {
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
