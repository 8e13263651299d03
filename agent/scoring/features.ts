/**
 * Online per-stream feature windows for the forecasting model (recipe "ctx-v1").
 *
 * The model predicts the next reading of a stream from its recent past and from what the same
 * stream did at this time yesterday and last week. Everything it sees is relative to the last
 * value and divided by the stream's own long-run spread, so one model serves streams of any unit
 * and scale. The same code builds the training set (models/train), so the agent and the trainer
 * cannot disagree on a feature.
 *
 * Memory per stream is fixed whatever the sampling rate: `lags` values plus one profile bucket per
 * `bucketMinutes` over a day and a week (about 4 KiB with the defaults).
 */

export interface FeatureRecipe {
  name: 'ctx-v1';
  /** Past values the model sees, the last one included. */
  lags: number;
  /** Width of a time-of-day / time-of-week profile bucket. */
  bucketMinutes: number;
  /** Weight of the newest day (week) when folding a bucket's mean into the daily (weekly) profile. */
  dayBlend: number;
  weekBlend: number;
  /** Horizon, in readings, of the stream's running mean and spread (normalisation). */
  scaleReadings: number;
  /** Horizon, in readings, of the running error of each naive predictor (hints for the model). */
  hintReadings: number;
  /** Features (and the target) are clipped to ±clip spreads. */
  clip: number;
}

export const DEFAULT_RECIPE: FeatureRecipe = {
  name: 'ctx-v1',
  lags: 16,
  bucketMinutes: 15,
  dayBlend: 0.4,
  weekBlend: 0.5,
  scaleReadings: 2000,
  hintReadings: 300,
  clip: 16,
};

/** Features after the lags: daily step, daily offset, weekly step, weekly offset, 2 flags, 3 hints. */
const CONTEXT_FEATURES = 9;

export function featureCount(r: FeatureRecipe): number {
  return r.lags - 1 + CONTEXT_FEATURES;
}

const MINUTE = 60_000;
const DAY = 1440 * MINUTE;
const WEEK = 7 * DAY;

/**
 * A seasonal profile: the mean value per time-of-period bucket, blended across periods. A bucket is
 * committed when the stream leaves it, so a 1 Hz and a 1/h stream both add one sample per bucket
 * per period. Lookups interpolate between bucket centres.
 */
class Profile {
  private readonly values: Float32Array;
  private readonly seen: Uint8Array;
  private readonly bucketMs: number;
  private open = -1;
  private openSum = 0;
  private openCount = 0;

  constructor(
    private readonly periodMs: number,
    bucketMinutes: number,
    private readonly blend: number,
  ) {
    this.bucketMs = bucketMinutes * MINUTE;
    const n = Math.round(periodMs / this.bucketMs);
    this.values = new Float32Array(n);
    this.seen = new Uint8Array(n);
  }

  private slot(ts: number): number {
    const p = this.periodMs;
    return (((ts % p) + p) % p) / this.bucketMs;
  }

  /** Profile value at `ts`, or NaN while the buckets around it have never been committed. */
  at(ts: number): number {
    const n = this.values.length;
    const pos = this.slot(ts) - 0.5;
    const lo = Math.floor(pos);
    const a = (lo + n) % n;
    const b = (lo + 1) % n;
    const w = pos - lo;
    const sa = this.seen[a]!;
    const sb = this.seen[b]!;
    if (sa && sb) return this.values[a]! * (1 - w) + this.values[b]! * w;
    if (sa) return this.values[a]!;
    if (sb) return this.values[b]!;
    return NaN;
  }

  add(ts: number, x: number): void {
    const k = Math.floor(this.slot(ts)) % this.values.length;
    if (k !== this.open) {
      this.commit();
      this.open = k;
    }
    this.openSum += x;
    this.openCount++;
  }

  private commit(): void {
    if (this.open < 0 || this.openCount === 0) return;
    const mean = this.openSum / this.openCount;
    const k = this.open;
    this.values[k] = this.seen[k] ? this.values[k]! + this.blend * (mean - this.values[k]!) : mean;
    this.seen[k] = 1;
    this.openSum = 0;
    this.openCount = 0;
  }
}

/** Running mean of a squared error, starting as a plain average (so early values are not biased to 0). */
class RunningSquare {
  private n = 0;
  value = 1;
  constructor(private readonly horizon: number) {}
  add(e: number): void {
    this.n++;
    const a = Math.max(1 / this.n, 1 / this.horizon);
    this.value += a * (e * e - this.value);
  }
}

export class StreamFeatures {
  readonly recipe: FeatureRecipe;
  private readonly ring: Float64Array;
  /** Readings seen so far. */
  count = 0;
  private lastTs = 0;
  private mean = 0;
  private variance = 0;
  private readonly day: Profile;
  private readonly week: Profile;
  private readonly stepError: RunningSquare;
  private readonly dayError: RunningSquare;
  private readonly weekError: RunningSquare;

  constructor(recipe: FeatureRecipe = DEFAULT_RECIPE) {
    this.recipe = recipe;
    this.ring = new Float64Array(recipe.lags);
    this.day = new Profile(DAY, recipe.bucketMinutes, recipe.dayBlend);
    this.week = new Profile(WEEK, recipe.bucketMinutes, recipe.weekBlend);
    this.stepError = new RunningSquare(recipe.hintReadings);
    this.dayError = new RunningSquare(recipe.hintReadings);
    this.weekError = new RunningSquare(recipe.hintReadings);
  }

  /** The value `k` readings back (1 = the last one). */
  private back(k: number): number {
    const n = this.ring.length;
    return this.ring[(((this.count - k) % n) + n) % n]!;
  }

  /** The stream's spread, floored so a flat stream does not divide by zero. */
  scale(): number {
    return Math.max(Math.sqrt(this.variance), 1e-6 * Math.abs(this.mean), 1e-9);
  }

  /** True once the stream has enough past for features. */
  ready(): boolean {
    return this.count >= 1;
  }

  /**
   * Writes the features describing reading (ts, ·) into `out` at `at`, before the reading itself
   * is known to the stream. Returns the centre and spread used, to turn a prediction back into
   * the stream's units. Call only when ready().
   */
  write(ts: number, out: Float32Array, at: number): { centre: number; spread: number } {
    const r = this.recipe;
    const m = r.clip;
    const last = this.back(1);
    const s = this.scale();
    let o = at;
    const lags = Math.min(r.lags, this.count);
    for (let k = 2; k <= r.lags; k++) out[o++] = k <= lags ? clip((this.back(k) - last) / s, m) : 0;
    const dayNow = this.day.at(ts);
    const dayPrev = this.day.at(this.lastTs);
    const weekNow = this.week.at(ts);
    const weekPrev = this.week.at(this.lastTs);
    const hasDay = Number.isFinite(dayNow) && Number.isFinite(dayPrev);
    const hasWeek = Number.isFinite(weekNow) && Number.isFinite(weekPrev);
    out[o++] = hasDay ? clip((dayNow - dayPrev) / s, m) : 0;
    out[o++] = hasDay ? clip((last - dayPrev) / s, m) : 0;
    out[o++] = hasWeek ? clip((weekNow - weekPrev) / s, m) : 0;
    out[o++] = hasWeek ? clip((last - weekPrev) / s, m) : 0;
    out[o++] = hasDay ? 1 : 0;
    out[o++] = hasWeek ? 1 : 0;
    // How well each naive predictor has done lately tells the model which context to trust.
    out[o++] = 0.5 * Math.log(this.stepError.value + 1e-6);
    out[o++] = 0.5 * Math.log(this.dayError.value + 1e-6);
    out[o++] = 0.5 * Math.log(this.weekError.value + 1e-6);
    return { centre: last, spread: s };
  }

  /** The training target for reading value x, in the units write() used. */
  target(x: number, centre: number, spread: number): number {
    return clip((x - centre) / spread, this.recipe.clip);
  }

  /** Folds reading (ts, x) into the stream's state. */
  push(ts: number, x: number): void {
    if (this.count > 0) {
      const s = this.scale();
      const m = this.recipe.clip;
      this.stepError.add(clip((x - this.back(1)) / s, m));
      const d = this.day.at(ts);
      if (Number.isFinite(d)) this.dayError.add(clip((x - d) / s, m));
      const w = this.week.at(ts);
      if (Number.isFinite(w)) this.weekError.add(clip((x - w) / s, m));
    }
    this.day.add(ts, x);
    this.week.add(ts, x);
    this.ring[this.count % this.ring.length] = x;
    this.count++;
    this.lastTs = ts;
    const a = Math.max(1 / this.count, 1 / this.recipe.scaleReadings);
    const dev = x - this.mean;
    this.mean += a * dev;
    this.variance = (1 - a) * (this.variance + a * dev * dev);
  }

}

function clip(v: number, m: number): number {
  return v > m ? m : v < -m ? -m : v;
}
