/**
 * Per-device publish rate limit: a token bucket refilled at `ratePerS` up to `burst` tokens.
 * With `delay`, a publish over the limit borrows a token and waits until the bucket would have
 * had it: its PUBACK is simply late, which slows a well-behaved MQTT client down (its in-flight
 * window fills) without losing anything. aedes reads a client's next socket chunk only after every
 * packet of the current one is answered, so the debt one client can run up is bounded.
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly ratePerS: number, private readonly burst: number, private readonly now: () => number = Date.now) {}

  get enabled(): boolean {
    return this.ratePerS > 0;
  }

  private refill(key: string): { tokens: number; at: number } {
    const t = this.now();
    let b = this.buckets.get(key);
    if (!b) {
      b = { tokens: this.burst, at: t };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(this.burst, b.tokens + ((t - b.at) * this.ratePerS) / 1000);
      b.at = t;
    }
    return b;
  }

  /** Takes a token if one is there. */
  tryTake(key: string): boolean {
    if (!this.enabled) return true;
    const b = this.refill(key);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Takes a token, borrowing if need be; returns how many ms the caller should wait (0: none). */
  takeOrWait(key: string): number {
    if (!this.enabled) return 0;
    const b = this.refill(key);
    b.tokens -= 1;
    return b.tokens >= 0 ? 0 : Math.ceil((-b.tokens * 1000) / this.ratePerS);
  }

  forget(key: string): void {
    this.buckets.delete(key);
  }
}
