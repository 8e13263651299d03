/**
 * Token buckets keyed by a string (a device, a principal, a site, a notification destination):
 * each refills at `ratePerS` up to `burst` tokens. One definition for every limiter in edgetwin —
 * the collector's per-device publish limit, the cloud's per-principal and per-site HTTP limits,
 * the alert notifier's per-destination limit.
 *
 * A request may cost more than one token (an ingest batch costs its readings). A cost larger than
 * the burst can never be "available"; it is let through when the bucket is full and leaves a debt,
 * so a big batch is delayed in proportion to its size instead of being refused forever.
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly ratePerS: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
    /** Keys kept at most; beyond it, buckets that have refilled (idle keys) are forgotten first. */
    private readonly maxKeys = 100_000,
  ) {}

  get enabled(): boolean {
    return this.ratePerS > 0;
  }

  get size(): number {
    return this.buckets.size;
  }

  private refill(key: string): { tokens: number; at: number } {
    const t = this.now();
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= this.maxKeys) this.sweep(t);
      b = { tokens: this.burst, at: t };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(this.burst, b.tokens + ((t - b.at) * this.ratePerS) / 1000);
      b.at = t;
    }
    return b;
  }

  /** Forgets buckets that are full again (their keys went quiet): a full bucket and no bucket are the same. */
  private sweep(t: number): void {
    for (const [k, b] of this.buckets) {
      if (b.tokens + ((t - b.at) * this.ratePerS) / 1000 >= this.burst) this.buckets.delete(k);
    }
    // Every key is busy: drop the oldest half rather than grow without bound.
    if (this.buckets.size >= this.maxKeys) {
      let n = Math.floor(this.buckets.size / 2);
      for (const k of this.buckets.keys()) {
        if (n-- <= 0) break;
        this.buckets.delete(k);
      }
    }
  }

  /** Takes a token if one is there. */
  tryTake(key: string): boolean {
    return this.take(key, 1) === 0;
  }

  /**
   * Takes `cost` tokens if they are there (or the bucket is full) and returns 0; otherwise takes
   * nothing and returns the ms until they would be (the Retry-After of a refused request).
   */
  take(key: string, cost = 1): number {
    if (!this.enabled) return 0;
    const b = this.refill(key);
    if (b.tokens >= cost || b.tokens >= this.burst) {
      b.tokens -= cost;
      return 0;
    }
    const need = Math.min(cost, this.burst) - b.tokens;
    return Math.max(1, Math.ceil((need * 1000) / this.ratePerS));
  }

  /** Takes a token, borrowing if need be; returns how many ms the caller should wait (0: none). */
  takeOrWait(key: string, cost = 1): number {
    if (!this.enabled) return 0;
    const b = this.refill(key);
    b.tokens -= cost;
    return b.tokens >= 0 ? 0 : Math.ceil((-b.tokens * 1000) / this.ratePerS);
  }

  forget(key: string): void {
    this.buckets.delete(key);
  }
}
