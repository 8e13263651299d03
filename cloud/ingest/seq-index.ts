/**
 * The identity index: which (device, epoch, seq) the cloud has stored, as sorted, merged seq ranges
 * per (device, epoch). A device's seqs are consecutive, so a device-boot that sent a million
 * readings is one range `[1, 1000000]`; gaps (readings dropped at the edge, alerts sent ahead of
 * telemetry) are a few more. Checking a reading is a binary search, and the index stays tiny where a
 * row per reading would grow without bound.
 */
import type { SqliteDb } from '../../common/sqlite.js';

export class SeqRanges {
  /** Inclusive, sorted, disjoint and non-adjacent ranges. */
  constructor(private starts: number[] = [], private ends: number[] = []) {}

  static parse(json: string): SeqRanges {
    const pairs = JSON.parse(json) as [number, number][];
    return new SeqRanges(pairs.map((p) => p[0]), pairs.map((p) => p[1]));
  }

  toJSON(): [number, number][] {
    return this.starts.map((s, i) => [s, this.ends[i]!]);
  }

  get size(): number {
    return this.starts.length;
  }

  clone(): SeqRanges {
    return new SeqRanges(this.starts.slice(), this.ends.slice());
  }

  /** Index of the last range starting at or before seq, or -1. */
  private floor(seq: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.starts[mid]! <= seq) lo = mid + 1;
      else hi = mid - 1;
    }
    return hi;
  }

  has(seq: number): boolean {
    const n = this.ends.length;
    if (n === 0 || seq > this.ends[n - 1]!) return false;
    const i = this.floor(seq);
    return i >= 0 && seq <= this.ends[i]!;
  }

  /** Adds one seq (known not to be present). */
  add(seq: number): void {
    const n = this.ends.length;
    // Readings arrive mostly in order: extending or appending the last range is the common case.
    if (n === 0 || seq > this.ends[n - 1]! + 1) {
      this.starts.push(seq);
      this.ends.push(seq);
      return;
    }
    if (seq === this.ends[n - 1]! + 1) {
      this.ends[n - 1] = seq;
      return;
    }
    const i = this.floor(seq);
    const joinsLeft = i >= 0 && this.ends[i]! + 1 === seq;
    const joinsRight = i + 1 < n && this.starts[i + 1]! - 1 === seq;
    if (joinsLeft && joinsRight) {
      this.ends[i] = this.ends[i + 1]!;
      this.starts.splice(i + 1, 1);
      this.ends.splice(i + 1, 1);
    } else if (joinsLeft) {
      this.ends[i] = seq;
    } else if (joinsRight) {
      this.starts[i + 1] = seq;
    } else {
      this.starts.splice(i + 1, 0, seq);
      this.ends.splice(i + 1, 0, seq);
    }
  }
}

const key = (device: string, epoch: number): string => `${device}\u0000${epoch}`;

/** The working set of one ingest transaction: clones, persisted in the transaction, installed after commit. */
export class SeqTxn {
  private readonly touched = new Map<string, { device: string; epoch: number; ranges: SeqRanges }>();
  constructor(private readonly index: SeqIndex) {}

  get(device: string, epoch: number): SeqRanges {
    const k = key(device, epoch);
    let t = this.touched.get(k);
    if (!t) {
      t = { device, epoch, ranges: this.index.load(device, epoch).clone() };
      this.touched.set(k, t);
    }
    return t.ranges;
  }

  /** Writes the touched ranges; call inside the ingest transaction. */
  persist(): void {
    for (const t of this.touched.values()) this.index.write(t.device, t.epoch, t.ranges);
  }

  /** Makes the committed ranges the cached truth; call only after the transaction committed. */
  install(): void {
    for (const [k, t] of this.touched) this.index.remember(k, t.ranges);
  }
}

export class SeqIndex {
  private readonly cache = new Map<string, SeqRanges>();
  private readonly select;
  private readonly upsert;

  constructor(db: SqliteDb, private readonly maxCached = 100_000) {
    this.select = db.prepare<[string, number], { ranges: string }>('SELECT ranges FROM seq_ranges WHERE device = ? AND epoch = ?');
    this.upsert = db.prepare('INSERT INTO seq_ranges (device, epoch, ranges) VALUES (?, ?, ?) ON CONFLICT(device, epoch) DO UPDATE SET ranges = excluded.ranges');
  }

  begin(): SeqTxn {
    return new SeqTxn(this);
  }

  load(device: string, epoch: number): SeqRanges {
    const k = key(device, epoch);
    const hit = this.cache.get(k);
    if (hit) return hit;
    const row = this.select.get(device, epoch);
    const r = row ? SeqRanges.parse(row.ranges) : new SeqRanges();
    this.remember(k, r);
    return r;
  }

  write(device: string, epoch: number, ranges: SeqRanges): void {
    this.upsert.run(device, epoch, JSON.stringify(ranges));
  }

  remember(k: string, ranges: SeqRanges): void {
    this.cache.delete(k);
    if (this.cache.size >= this.maxCached) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(k, ranges);
  }

  /** Drops the cache (after a failed transaction nothing of it may be trusted). */
  forget(): void {
    this.cache.clear();
  }
}
