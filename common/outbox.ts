/**
 * SqliteOutbox: the durable queue behind every hop that forwards data (the agent's outbox, the
 * collector's spool). Rows are opaque encoded bodies; a consumer reads a run of rows, ships them,
 * and deletes them only once the next hop has acknowledged them.
 *
 * Lanes: lane 0 is the priority lane (alerts): read first, dropped last. Lane 1 is telemetry.
 * Groups: a consumer never mixes groups in one read (the agent keys rows by boot epoch, because a
 * batch on the wire carries one epoch).
 */
import type { Logger } from './log.js';
import { EdgetwinError, ErrorCodes } from './errors.js';
import { counter, gauge, type Registry } from './metrics.js';
import { MetaStore, openDatabase, type SqliteDb, type SynchronousMode } from './sqlite.js';

export const LANE_PRIORITY = 0;
export const LANE_NORMAL = 1;
export type Lane = typeof LANE_PRIORITY | typeof LANE_NORMAL;

export type WhenFull = 'drop_oldest' | 'block';

export interface OutboxConfig {
  path: string;
  /** Upper bound on the bytes of queued bodies; see docs/architecture.md for the file-size margin. */
  maxBytes: number;
  whenFull: WhenFull;
  synchronous: SynchronousMode;
}

export const outboxConfigSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['path', 'maxBytes', 'whenFull', 'synchronous'],
  properties: {
    path: { type: 'string', minLength: 1 },
    maxBytes: { type: 'integer', minimum: 4096 },
    whenFull: { enum: ['drop_oldest', 'block'] },
    synchronous: { enum: ['full', 'normal'] },
  },
} as const;

export interface OutboxItem {
  body: string;
  lane?: Lane;
  grp?: number;
  key?: string | null;
}

export interface OutboxRow {
  id: number;
  lane: Lane;
  grp: number;
  key: string | null;
  body: string;
  bytes: number;
}

export interface OutboxOptions {
  log?: Logger | undefined;
  registry?: Registry | undefined;
  /** Metric name prefix, e.g. `edgetwin_outbox` or `edgetwin_spool`. */
  metricPrefix?: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS queue (
  -- AUTOINCREMENT: ids are never reused, even when the queue empties, because readers keep cursors.
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  lane INTEGER NOT NULL,
  grp INTEGER NOT NULL,
  key TEXT,
  bytes INTEGER NOT NULL,
  body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_lane_id ON queue (lane, id);
`;

export class SqliteOutbox {
  readonly db: SqliteDb;
  readonly meta: MetaStore;
  readonly quarantinedTo: string | undefined;
  private rows = 0;
  private bytes = 0;
  private closed = false;
  private readonly insert;
  private readonly readLane;
  private readonly deleteRange;
  private readonly oldest;
  private readonly deleteId;
  private readonly appendMany: (items: readonly OutboxItem[]) => void;
  private readonly mAppended;
  private readonly mDropped;
  private readonly mDepthRows;
  private readonly mDepthBytes;

  constructor(readonly cfg: OutboxConfig, private readonly opts: OutboxOptions = {}) {
    const opened = openDatabase({ path: cfg.path, synchronous: cfg.synchronous, log: opts.log, schema: SCHEMA });
    this.db = opened.db;
    this.quarantinedTo = opened.quarantinedTo;
    this.meta = new MetaStore(this.db);
    const totals = this.db.prepare('SELECT count(*) AS n, coalesce(sum(bytes), 0) AS b FROM queue').get() as { n: number; b: number };
    this.rows = totals.n;
    this.bytes = totals.b;

    this.insert = this.db.prepare('INSERT INTO queue (lane, grp, key, bytes, body) VALUES (?, ?, ?, ?, ?)');
    this.readLane = this.db.prepare<[number, number, number], OutboxRow>(
      'SELECT id, lane, grp, key, bytes, body FROM queue WHERE lane = ? AND id > ? ORDER BY id LIMIT ?',
    );
    this.deleteRange = this.db.prepare<[number, number, number]>(
      'DELETE FROM queue WHERE lane = ? AND id >= ? AND id <= ? RETURNING bytes',
    );
    this.oldest = this.db.prepare<[number], { id: number; bytes: number }>('SELECT id, bytes FROM queue WHERE lane = ? ORDER BY id LIMIT 64');
    this.deleteId = this.db.prepare<[number]>('DELETE FROM queue WHERE id = ?');
    this.appendMany = this.db.transaction((items: readonly OutboxItem[]) => this.appendInTx(items));

    const p = opts.metricPrefix ?? 'edgetwin_outbox';
    const reg = opts.registry;
    this.mAppended = reg ? counter(reg, `${p}_appended_total`, 'Rows appended', ['lane']) : undefined;
    this.mDropped = reg ? counter(reg, `${p}_dropped_total`, 'Rows dropped to stay under maxBytes', ['lane', 'reason']) : undefined;
    this.mDepthRows = reg ? gauge(reg, `${p}_depth_rows`, 'Rows waiting') : undefined;
    this.mDepthBytes = reg ? gauge(reg, `${p}_depth_bytes`, 'Bytes waiting') : undefined;
    this.updateGauges();
  }

  /** Appends items in one transaction. With whenFull=block, throws EDGETWIN_ERR_STORE_FULL and writes nothing. */
  append(items: readonly OutboxItem[]): void {
    if (this.closed) throw new EdgetwinError(ErrorCodes.CLOSED, 'outbox is closed');
    if (items.length === 0) return;
    this.appendMany(items);
    this.updateGauges();
  }

  /** Runs fn inside one transaction with the appends it makes (e.g. to persist a sequence counter alongside). */
  transaction<T>(fn: () => T): T {
    const out = this.db.transaction(fn)();
    this.updateGauges();
    return out;
  }

  /** Appends within a transaction the caller already holds (see transaction()). */
  appendInTx(items: readonly OutboxItem[]): void {
    let incoming = 0;
    const sized = items.map((it) => {
      const b = Buffer.byteLength(it.body);
      incoming += b;
      return b;
    });
    if (this.bytes + incoming > this.cfg.maxBytes) this.makeRoom(this.bytes + incoming - this.cfg.maxBytes, incoming);
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      const lane = it.lane ?? LANE_NORMAL;
      this.insert.run(lane, it.grp ?? 0, it.key ?? null, sized[i]!, it.body);
      this.mAppended?.inc({ lane: String(lane) });
    }
    this.rows += items.length;
    this.bytes += incoming;
  }

  private makeRoom(needed: number, incoming: number): void {
    if (this.cfg.whenFull === 'block' || incoming > this.cfg.maxBytes) {
      throw new EdgetwinError(ErrorCodes.STORE_FULL, `outbox full (${this.bytes} of ${this.cfg.maxBytes} bytes)`, {
        details: { bytes: this.bytes, maxBytes: this.cfg.maxBytes, incoming },
      });
    }
    let freed = 0;
    // Telemetry goes first; alerts are only dropped when nothing else is left.
    for (const lane of [LANE_NORMAL, LANE_PRIORITY]) {
      while (freed < needed) {
        const victims = this.oldest.all(lane);
        if (victims.length === 0) break;
        for (const v of victims) {
          this.deleteId.run(v.id);
          freed += v.bytes;
          this.rows--;
          this.bytes -= v.bytes;
          this.mDropped?.inc({ lane: String(lane), reason: 'full' });
          if (freed >= needed) break;
        }
      }
    }
    this.opts.log?.warn({ code: ErrorCodes.STORE_FULL, freedBytes: freed }, 'outbox full: dropped oldest rows');
  }

  /**
   * Reads up to maxRows rows of one lane after `afterId`, stopping before maxBytes would be
   * exceeded (at least one row is always returned) and before the group changes.
   */
  read(lane: Lane, afterId: number, maxRows: number, maxBytes = Infinity): OutboxRow[] {
    const rows = this.readLane.all(lane, afterId, maxRows);
    let bytes = 0;
    let n = 0;
    for (const r of rows) {
      if (n > 0 && (bytes + r.bytes > maxBytes || r.grp !== rows[0]!.grp)) break;
      bytes += r.bytes;
      n++;
    }
    return n === rows.length ? rows : rows.slice(0, n);
  }

  /** Deletes the rows of `lane` with ids in [fromId, toId]; returns how many were still there. */
  ack(lane: Lane, fromId: number, toId: number): number {
    if (this.closed) return 0;
    const gone = this.deleteRange.all(lane, fromId, toId) as { bytes: number }[];
    for (const g of gone) this.bytes -= g.bytes;
    this.rows -= gone.length;
    this.updateGauges();
    return gone.length;
  }

  depth(): { rows: number; bytes: number } {
    return { rows: this.rows, bytes: this.bytes };
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
