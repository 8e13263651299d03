/**
 * The identity index: which (device, epoch, seq) the cloud has stored, as sorted, merged seq ranges
 * per (device, epoch). A device's seqs are consecutive, so a device-boot that sent a million
 * readings is one range `[1, 1000000]`; gaps (readings dropped at the edge, alerts sent ahead of
 * telemetry) are a few more. Checking a reading is a binary search, and the index stays tiny where a
 * row per reading would grow without bound.
 */
import type { Store, Tx } from '../store/store.js';

export class SeqRanges {
  /** Inclusive, sorted, disjoint and non-adjacent ranges. */
  constructor(
    private starts: number[] = [],
    private ends: number[] = [],
  ) {}

  static parse(json: string): SeqRanges {
    const pairs = JSON.parse(json) as [number, number][];
    return new SeqRanges(
      pairs.map((p) => p[0]),
      pairs.map((p) => p[1]),
    );
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

/**
 * The working set of one ingest transaction: read (and on PostgreSQL row-locked) up front, changed
 * in memory, persisted in the transaction, installed in the cache after commit.
 */
export class SeqTxn {
  private readonly touched = new Map<string, { device: string; epoch: number; ranges: SeqRanges }>();
  constructor(
    private readonly index: SeqIndex,
    private readonly tx: Tx,
  ) {}

  /** Reads the ranges of every (device, epoch) the batch carries; must come before `get`. */
  async load(keys: Iterable<{ device: string; epoch: number }>): Promise<void> {
    const wanted = new Map<string, { device: string; epoch: number }>();
    for (const k of keys) wanted.set(key(k.device, k.epoch), { device: k.device, epoch: k.epoch });
    for (const [k, t] of await this.index.read(this.tx, [...wanted.values()])) this.touched.set(k, t);
  }

  get(device: string, epoch: number): SeqRanges {
    const t = this.touched.get(key(device, epoch));
    if (!t) throw new Error(`identity ranges of ${device}/${epoch} were not loaded`);
    return t.ranges;
  }

  /** Writes the touched ranges; call inside the ingest transaction. */
  async persist(): Promise<void> {
    for (const t of this.touched.values()) await this.index.write(this.tx, t.device, t.epoch, t.ranges);
  }

  /** Makes the committed ranges the cached truth; call only after the transaction committed. */
  install(): void {
    for (const [k, t] of this.touched) this.index.remember(k, t.ranges);
  }
}

/**
 * The index over the store. SQLite has one writer, this process, so its ranges are cached and the
 * cache is the truth. PostgreSQL is written by every replica: ranges are always read in the ingest
 * transaction with a row lock (rows made first, so two replicas with the same new device serialize
 * on the row), and the database decides which copy of a reading is first.
 */
export class SeqIndex {
  private readonly cache = new Map<string, SeqRanges>();
  private readonly trustCache: boolean;

  constructor(
    store: Store,
    private readonly maxCached = 100_000,
  ) {
    this.trustCache = store.kind === 'sqlite';
  }

  begin(tx: Tx): SeqTxn {
    return new SeqTxn(this, tx);
  }

  /** Working copies of the ranges of `keys`, by key (clones: the cache changes only after commit). */
  async read(
    tx: Tx,
    keys: { device: string; epoch: number }[],
  ): Promise<Map<string, { device: string; epoch: number; ranges: SeqRanges }>> {
    const out = new Map<string, { device: string; epoch: number; ranges: SeqRanges }>();
    const missing: { device: string; epoch: number }[] = [];
    for (const k of keys) {
      const hit = this.trustCache ? this.cache.get(key(k.device, k.epoch)) : undefined;
      if (hit) out.set(key(k.device, k.epoch), { ...k, ranges: hit.clone() });
      else missing.push(k);
    }
    if (missing.length === 0) return out;
    // One order for every transaction: two ingests of the same devices lock their rows alike (no deadlock).
    missing.sort((a, b) => (a.device < b.device ? -1 : a.device > b.device ? 1 : a.epoch - b.epoch));
    const pairs = missing.flatMap((k) => [k.device, k.epoch]);
    for (let i = 0; i < missing.length; i += CHUNK) {
      const part = missing.slice(i, i + CHUNK);
      const args = pairs.slice(i * 2, (i + CHUNK) * 2);
      if (!this.trustCache)
        await tx.run(
          `INSERT INTO seq_ranges (device, epoch, ranges) VALUES ${part.map(() => "(?, ?, '[]')").join(', ')} ON CONFLICT DO NOTHING`,
          args,
        );
      const rows = await tx.all<{ device: string; epoch: number; ranges: string }>(
        `SELECT device, epoch, ranges FROM seq_ranges WHERE ${part.map(() => '(device = ? AND epoch = ?)').join(' OR ')} ORDER BY device, epoch${tx.dialect.forUpdate}`,
        args,
      );
      const found = new Map(rows.map((r) => [key(r.device, r.epoch), r.ranges]));
      for (const k of part) {
        const json = found.get(key(k.device, k.epoch));
        out.set(key(k.device, k.epoch), { ...k, ranges: json ? SeqRanges.parse(json) : new SeqRanges() });
      }
    }
    return out;
  }

  async write(tx: Tx, device: string, epoch: number, ranges: SeqRanges): Promise<void> {
    await tx.run(
      'INSERT INTO seq_ranges (device, epoch, ranges) VALUES (?, ?, ?) ON CONFLICT (device, epoch) DO UPDATE SET ranges = excluded.ranges',
      [device, epoch, JSON.stringify(ranges)],
    );
  }

  remember(k: string, ranges: SeqRanges): void {
    if (!this.trustCache) return;
    this.cache.delete(k);
    if (this.cache.size >= this.maxCached) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(k, ranges);
  }

  /** Drops the cache (after a failed transaction nothing of it may be trusted). */
  forget(): void {
    this.cache.clear();
  }
}

/** (device, epoch) pairs per statement: well under both engines' parameter limits. */
const CHUNK = 200;
