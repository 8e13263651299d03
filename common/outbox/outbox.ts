/**
 * SqliteOutbox: the durable queue behind every hop that forwards data (the agent's outbox, the
 * collector's spool). Rows are opaque encoded bodies; a consumer reads a run of rows, ships them,
 * and deletes them only once the next hop has acknowledged them.
 *
 * Lanes: lane 0 is the priority lane (alerts): read first, dropped last. Lane 1 is telemetry.
 * Groups: a consumer never mixes groups in one read (the agent keys rows by boot epoch, because a
 * batch on the wire carries one epoch).
 *
 * Bounds: `maxBytes` caps the queued body bytes; `maxFileBytes` (the agent sets it) caps what the
 * store occupies on disk, database file plus WAL, by page accounting — see FileCap (file-cap.ts) and
 * docs/architecture.md. `maxAgeMs` drops rows that waited too long. Every drop is counted in
 * `<prefix>_dropped_total{lane, reason}` once its transaction has committed.
 */
import { EdgetwinError, ErrorCodes } from '../errors.js';
import { Gauge, counter, gauge } from '../metrics.js';
import { MetaStore, openDatabase, type SqliteDb } from '../sqlite.js';
import { FileCap, fileFootprint } from './file-cap.js';
import {
  LANE_NORMAL,
  LANES_DROP_ORDER,
  type DropReason,
  type Lane,
  type OutboxConfig,
  type OutboxItem,
  type OutboxOptions,
  type OutboxRow,
} from './types.js';

// The outbox's public face: its types and the disk-cap margin are defined beside it.
export { FILE_CAP_MARGIN_BYTES } from './file-cap.js';
export * from './types.js';

/** Rows per multi-row INSERT in appendInTx (6 parameters each, far below SQLite's limit). */
const ROWS_PER_INSERT = 32;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS queue (
  -- AUTOINCREMENT: ids are never reused, even when the queue empties, because readers keep cursors.
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  lane INTEGER NOT NULL,
  grp INTEGER NOT NULL,
  key TEXT,
  bytes INTEGER NOT NULL,
  body TEXT NOT NULL,
  at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS queue_lane_id ON queue (lane, id);
`;

export class SqliteOutbox {
  readonly db: SqliteDb;
  readonly meta: MetaStore;
  readonly quarantinedTo: string | undefined;
  private rows = 0;
  private bytes = 0;
  private maxId = 0;
  private closed = false;
  private txDepth = 0;
  private readonly cap: FileCap | undefined;
  private readonly insert;
  private readonly insertMany;
  private readonly readLane;
  private readonly deleteRange;
  private readonly oldest;
  private readonly minId;
  private readonly deleteId;
  private readonly expireChunk;
  /** Counted only once the transaction that made them commits (a rollback undoes them). */
  private pendingAppended = [0, 0];
  private pendingDropped = new Map<string, number>();
  private readonly mAppended;
  private readonly mDropped;
  private readonly mDepthRows;
  private readonly mDepthBytes;

  constructor(
    readonly cfg: OutboxConfig,
    private readonly opts: OutboxOptions = {},
  ) {
    const opened = openDatabase({
      path: cfg.path,
      synchronous: cfg.synchronous,
      log: opts.log,
      schema: SCHEMA,
      ...(cfg.maxFileBytes ? { autoVacuum: 'incremental' as const } : {}),
      ...(cfg.cacheKiB ? { cacheKiB: cfg.cacheKiB } : {}),
    });
    this.db = opened.db;
    this.quarantinedTo = opened.quarantinedTo;
    this.migrate();
    this.meta = new MetaStore(this.db);
    this.cap = cfg.maxFileBytes ? new FileCap(this.db, cfg.maxFileBytes) : undefined;
    this.recount();

    this.insert = this.db.prepare('INSERT INTO queue (lane, grp, key, bytes, body, at) VALUES (?, ?, ?, ?, ?, ?)');
    this.insertMany = this.db.prepare(
      `INSERT INTO queue (lane, grp, key, bytes, body, at) VALUES ${Array(ROWS_PER_INSERT).fill('(?, ?, ?, ?, ?, ?)').join(', ')}`,
    );
    this.readLane = this.db.prepare<[number, number, number, number], OutboxRow>(
      'SELECT id, lane, grp, key, bytes, body, at FROM queue WHERE lane = ? AND id > ? AND id <= ? ORDER BY id LIMIT ?',
    );
    this.deleteRange = this.db
      .prepare<[number, number, number]>('DELETE FROM queue WHERE lane = ? AND id >= ? AND id <= ? RETURNING bytes')
      .pluck();
    this.minId = this.db.prepare<[], number | null>('SELECT min(id) FROM queue').pluck();
    this.oldest = this.db.prepare<[number], { id: number; bytes: number }>(
      'SELECT id, bytes FROM queue WHERE lane = ? ORDER BY id LIMIT 256',
    );
    this.deleteId = this.db.prepare<[number]>('DELETE FROM queue WHERE id = ?');
    this.expireChunk = this.db
      .prepare<[number, number, number]>(
        'DELETE FROM queue WHERE id IN (SELECT id FROM queue WHERE lane = ? ORDER BY id LIMIT ?) AND at < ? RETURNING bytes',
      )
      .pluck();

    const p = opts.metricPrefix ?? 'edgetwin_outbox';
    const reg = opts.registry;
    this.mAppended = reg ? counter(reg, `${p}_appended_total`, 'Rows appended', ['lane']) : undefined;
    this.mDropped = reg
      ? counter(reg, `${p}_dropped_total`, 'Rows dropped (full: over maxBytes/maxFileBytes, age: over maxAgeMs)', ['lane', 'reason'])
      : undefined;
    this.mDepthRows = reg ? gauge(reg, `${p}_depth_rows`, 'Rows waiting') : undefined;
    this.mDepthBytes = reg ? gauge(reg, `${p}_depth_bytes`, 'Bytes waiting') : undefined;
    if (reg && this.cap) {
      const self = this;
      new Gauge({
        name: `${p}_file_bytes`,
        help: 'Database file plus WAL, bytes',
        registers: [reg],
        collect() {
          this.set(self.footprint().total);
        },
      });
    }
    this.updateGauges();
  }

  /** Files from before the `at` column get it, stamped now (so nothing expires at once). */
  private migrate(): void {
    const cols = this.db.prepare('PRAGMA table_info(queue)').all() as { name: string }[];
    if (cols.some((c) => c.name === 'at')) return;
    this.db.exec('ALTER TABLE queue ADD COLUMN at INTEGER NOT NULL DEFAULT 0');
    this.db.prepare('UPDATE queue SET at = ?').run(Date.now());
  }

  private recount(): void {
    const totals = this.db.prepare('SELECT count(*) AS n, coalesce(sum(bytes), 0) AS b FROM queue').get() as { n: number; b: number };
    this.rows = totals.n;
    this.bytes = totals.b;
    const seq = this.db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'queue'").get() as { seq: number } | undefined;
    this.maxId = seq?.seq ?? 0;
  }

  /** Suggested upper bound on the body bytes a writer puts in one transaction (keeps the WAL in its reserve). */
  get txnMaxBytes(): number {
    return this.cap?.txnMaxBytes ?? Infinity;
  }

  /** Appends items in one transaction. With whenFull=block, throws EDGETWIN_ERR_STORE_FULL and writes nothing. */
  append(items: readonly OutboxItem[]): void {
    if (this.closed) throw new EdgetwinError(ErrorCodes.CLOSED, 'outbox is closed');
    if (items.length === 0) return;
    this.transaction(() => this.appendInTx(items));
  }

  /** Runs fn inside one transaction with the appends it makes (e.g. to persist a sequence counter alongside). */
  transaction<T>(fn: () => T): T {
    if (this.closed) throw new EdgetwinError(ErrorCodes.CLOSED, 'outbox is closed');
    this.txDepth++;
    let ok = false;
    try {
      const out = this.db.transaction(fn)();
      ok = true;
      return out;
    } finally {
      if (--this.txDepth === 0) this.settle(ok);
    }
  }

  /** After the outermost transaction: count what it did, or forget it and re-read the totals. */
  private settle(committed: boolean): void {
    if (committed) {
      for (const lane of LANES_DROP_ORDER) {
        const n = this.pendingAppended[lane]!;
        if (n > 0) this.mAppended?.inc({ lane: String(lane) }, n);
      }
      for (const [k, n] of this.pendingDropped) {
        const [lane, reason] = k.split(':');
        this.mDropped?.inc({ lane: lane!, reason: reason! }, n);
      }
    } else {
      this.recount();
    }
    this.pendingAppended = [0, 0];
    this.pendingDropped.clear();
    this.updateGauges();
  }

  /** Appends within a transaction the caller already holds (see transaction()). */
  appendInTx(items: readonly OutboxItem[]): void {
    let incoming = 0;
    const sized = new Array<number>(items.length);
    for (let i = 0; i < items.length; i++) {
      const b = Buffer.byteLength(items[i]!.body);
      sized[i] = b;
      incoming += b;
    }
    if (this.bytes + incoming > this.cfg.maxBytes) this.makeRoom(this.bytes + incoming - this.cfg.maxBytes, incoming);
    const now = Date.now();
    let last = 0;
    let i = 0;
    // Large appends (the collector's group commits) insert ROWS_PER_INSERT rows per statement:
    // one bind-and-step instead of 32 saves most of the per-row cost outside the B-tree.
    if (items.length >= ROWS_PER_INSERT) {
      const args = new Array<unknown>(ROWS_PER_INSERT * 6);
      for (; i + ROWS_PER_INSERT <= items.length; i += ROWS_PER_INSERT) {
        for (let j = 0, a = 0; j < ROWS_PER_INSERT; j++, a += 6) {
          const it = items[i + j]!;
          const lane = it.lane ?? LANE_NORMAL;
          args[a] = lane;
          args[a + 1] = it.grp ?? 0;
          args[a + 2] = it.key ?? null;
          args[a + 3] = sized[i + j]!;
          args[a + 4] = it.body;
          args[a + 5] = now;
          this.pendingAppended[lane]!++;
        }
        // Rows of one VALUES list are inserted in order: the statement's last rowid is its last row's.
        last = this.insertMany.run(args).lastInsertRowid as number;
      }
    }
    for (; i < items.length; i++) {
      const it = items[i]!;
      const lane = it.lane ?? LANE_NORMAL;
      last = this.insert.run(lane, it.grp ?? 0, it.key ?? null, sized[i]!, it.body, now).lastInsertRowid as number;
      this.pendingAppended[lane]!++;
    }
    this.maxId = Number(last);
    this.rows += items.length;
    this.bytes += incoming;
    if (this.cap?.over()) this.enforceFileCap();
  }

  private fullError(what: string, incoming: number): EdgetwinError {
    return new EdgetwinError(ErrorCodes.STORE_FULL, `outbox full (${what})`, {
      details: { bytes: this.bytes, maxBytes: this.cfg.maxBytes, maxFileBytes: this.cfg.maxFileBytes, incoming },
    });
  }

  private makeRoom(needed: number, incoming: number): void {
    if (this.cfg.whenFull === 'block' && this.rows === 0) {
      // Waiting for room is pointless when the store is empty: a writer that groups several
      // messages into one append (the collector's group commit) would retry the same group
      // forever. The write goes in; the store is over maxBytes by at most this one write.
      this.opts.log?.warn(
        { code: ErrorCodes.STORE_FULL, incoming, maxBytes: this.cfg.maxBytes },
        'one write larger than maxBytes accepted into an empty store',
      );
      return;
    }
    if (this.cfg.whenFull === 'block' || incoming > this.cfg.maxBytes)
      throw this.fullError(`${this.bytes} of ${this.cfg.maxBytes} bytes`, incoming);
    const freed = this.dropOldest(needed, 'full');
    this.opts.log?.warn({ code: ErrorCodes.STORE_FULL, freedBytes: freed }, 'outbox full: dropped oldest rows');
  }

  /** Pages over the cap: free pages go back first, then the oldest rows (never in block mode). */
  private enforceFileCap(): void {
    const cap = this.cap!;
    cap.vacuum();
    let freed = 0;
    while (cap.over()) {
      if (this.cfg.whenFull === 'block') throw this.fullError(`file cap of ${this.cfg.maxFileBytes} bytes`, 0);
      const excess = (cap.pages() - cap.maxPages) * cap.pageSize;
      const got = this.dropOldest(excess, 'full');
      if (got === 0) throw this.fullError(`one write is larger than the file cap of ${this.cfg.maxFileBytes} bytes`, 0);
      freed += got;
      cap.vacuum();
    }
    if (freed > 0) this.opts.log?.debug({ code: ErrorCodes.STORE_FULL, freedBytes: freed }, 'outbox file cap: dropped oldest rows');
  }

  /** Deletes oldest rows, telemetry before alerts, until `needed` body bytes are gone; returns the bytes freed. */
  private dropOldest(needed: number, reason: DropReason): number {
    let freed = 0;
    for (const lane of LANES_DROP_ORDER) {
      while (freed < needed) {
        const victims = this.oldest.all(lane);
        if (victims.length === 0) break;
        for (const v of victims) {
          this.deleteId.run(v.id);
          freed += v.bytes;
          this.forget(lane, v.bytes, reason);
          if (freed >= needed) break;
        }
      }
    }
    return freed;
  }

  private forget(lane: Lane, bytes: number, reason: DropReason): void {
    this.rows--;
    this.bytes -= bytes;
    const k = `${lane}:${reason}`;
    this.pendingDropped.set(k, (this.pendingDropped.get(k) ?? 0) + 1);
  }

  /** Drops rows older than maxAgeMs (by append time); returns how many. Callers run it periodically. */
  expire(now = Date.now()): number {
    const maxAge = this.cfg.maxAgeMs ?? 0;
    if (this.closed || maxAge <= 0 || this.rows === 0) return 0;
    const cutoff = now - maxAge;
    const CHUNK = 1000;
    return this.transaction(() => {
      let n = 0;
      for (const lane of LANES_DROP_ORDER) {
        for (;;) {
          const gone = this.expireChunk.all(lane, CHUNK, cutoff) as number[];
          for (const b of gone) this.forget(lane, b, 'age');
          n += gone.length;
          if (gone.length < CHUNK) break;
        }
      }
      if (n > 0)
        this.opts.log?.warn({ code: ErrorCodes.STORE_FULL, rows: n, maxAgeMs: maxAge }, 'outbox: dropped rows older than maxAgeMs');
      return n;
    });
  }

  /**
   * Reads up to maxRows rows of one lane with afterId < id <= untilId, stopping before maxBytes
   * would be exceeded (at least one row is always returned) and before the group changes.
   * `rowOverheadBytes` is added per row (e.g. the comma between spliced bodies).
   */
  read(
    lane: Lane,
    afterId: number,
    maxRows: number,
    maxBytes = Infinity,
    untilId = Number.MAX_SAFE_INTEGER,
    rowOverheadBytes = 0,
  ): OutboxRow[] {
    const rows = this.readLane.all(lane, afterId, untilId, maxRows);
    let bytes = 0;
    let n = 0;
    for (const r of rows) {
      const b = r.bytes + rowOverheadBytes;
      if (n > 0 && (bytes + b > maxBytes || r.grp !== rows[0]!.grp)) break;
      bytes += b;
      n++;
    }
    return n === rows.length ? rows : rows.slice(0, n);
  }

  /** Deletes the rows of `lane` with ids in [fromId, toId]; returns how many were still there. */
  ack(lane: Lane, fromId: number, toId: number): number {
    if (this.closed) return 0;
    const gone = this.deleteRange.all(lane, fromId, toId) as number[];
    for (const b of gone) this.bytes -= b;
    this.rows -= gone.length;
    this.cap?.shrinkStep();
    this.updateGauges();
    return gone.length;
  }

  depth(): { rows: number; bytes: number } {
    return { rows: this.rows, bytes: this.bytes };
  }

  /** The lowest id still waiting (any lane), undefined when empty: "has everything up to id N gone?" */
  oldestId(): number | undefined {
    return this.closed ? undefined : (this.minId.get() ?? undefined);
  }

  /** The highest id ever appended (ids are never reused). */
  lastId(): number {
    return this.maxId;
  }

  /** Bytes on disk: the database file and its WAL. */
  footprint(): { db: number; wal: number; total: number } {
    return fileFootprint(this.cfg.path);
  }

  private updateGauges(): void {
    this.mDepthRows?.set(this.rows);
    this.mDepthBytes?.set(this.bytes);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}
