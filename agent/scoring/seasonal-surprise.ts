/**
 * How surprised a head usually is at this time of day, per stream.
 *
 * A forecaster that cannot represent something the stream does every day (a sharp daily edge it
 * places a few minutes off, a shift change) is surprised at the same time every day. That is the
 * model's limit, not news: the detector divides a head's surprise by 1 + weight × (the largest
 * surprise that head had around this time on previous days), so what recurs daily stops alerting
 * after a day or two while a surprise at an unusual time keeps its full weight.
 *
 * One bucket per `bucketMinutes` of the day holds the peak surprise seen in it, blended across days
 * (newest day's weight `blend`); a bucket is committed when the stream leaves it. A lookup takes the
 * largest of the bucket and its two neighbours, each as it stood before the current half day, so
 * the minutes just gone (perhaps the start of the very anomaly being scored) never explain
 * themselves away. Memory: 8 bytes per bucket (96 with 15-minute buckets).
 */

const MINUTE = 60_000;
const DAY = 1440 * MINUTE;

export interface SeasonalSurpriseSettings {
  bucketMinutes: number;
  /** Weight of the newest day when a bucket's peak is folded in. */
  blend: number;
  /** Surprise is divided by 1 + weight × the usual peak. */
  weight: number;
}

export class SeasonalSurprise {
  private readonly peaks: Float32Array;
  private readonly before: Float32Array;
  /** Minute (since the epoch) of each bucket's last commit; 0: never. */
  private readonly committed: Uint32Array;
  private readonly bucketMs: number;
  private open = -1;
  private openMax = 0;
  private openTs = 0;

  constructor(private readonly s: SeasonalSurpriseSettings) {
    this.bucketMs = s.bucketMinutes * MINUTE;
    const n = Math.max(1, Math.round(DAY / this.bucketMs));
    this.peaks = new Float32Array(n);
    this.before = new Float32Array(n);
    this.committed = new Uint32Array(n);
  }

  private slot(ts: number): number {
    return Math.floor((((ts % DAY) + DAY) % DAY) / this.bucketMs) % this.peaks.length;
  }

  private value(k: number, ts: number): number {
    const at = this.committed[k]!;
    if (at === 0) return 0;
    return ts - at * MINUTE >= DAY / 2 ? this.peaks[k]! : this.before[k]!;
  }

  /** The divisor for a surprise at `ts`: 1 + weight × the usual peak around this time (1 without history). */
  divisor(ts: number): number {
    const n = this.peaks.length;
    const k = this.slot(ts);
    const usual = Math.max(this.value(k, ts), this.value((k + n - 1) % n, ts), this.value((k + 1) % n, ts));
    return 1 + this.s.weight * usual;
  }

  /** Records the surprise a head had at `ts` (after divisor() was asked for that reading). */
  add(ts: number, surprise: number): void {
    const k = this.slot(ts);
    if (k !== this.open) {
      this.commit();
      this.open = k;
    }
    if (surprise > this.openMax) this.openMax = surprise;
    this.openTs = ts;
  }

  private commit(): void {
    if (this.open < 0) return;
    const k = this.open;
    const old = this.value(k, this.openTs);
    const had = this.committed[k] !== 0;
    this.before[k] = old;
    this.peaks[k] = had ? old + this.s.blend * (this.openMax - old) : this.openMax;
    this.committed[k] = Math.max(1, Math.floor(this.openTs / MINUTE));
    this.openMax = 0;
  }
}
