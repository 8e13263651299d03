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
 * `bucketMinutes` over a day and a week (about 9 KiB with the defaults).
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

/**
 * Layout of a feature row: lags - 1 lags, then daily step, daily offset, weekly step, weekly
 * offset, 2 flags, 3 hints, then the daily and weekly profile levels.
 */
const CONTEXT_FEATURES = 11;

export function featureCount(r: FeatureRecipe): number {
  return r.lags - 1 + CONTEXT_FEATURES;
}

/**
 * The model's heads, in output order. "step" forecasts the reading relative to the last value
 * from everything; "level" forecasts it relative to the running mean from the seasonal profiles
 * and hints only (never the recent values), so it stays surprised for as long as a stream is
 * somewhere it should not be at this time of day or week, where "step" adapts within readings.
 */
export const HEADS = ['step', 'level'] as const;
export type Head = (typeof HEADS)[number];

/** Feature columns the level head may see (flags, hints and profile levels). */
export function levelInputs(r: FeatureRecipe): number[] {
  const first = r.lags - 1 + 4;
  return Array.from({ length: 7 }, (_, i) => first + i);
}

const MINUTE = 60_000;
const DAY = 1440 * MINUTE;
const WEEK = 7 * DAY;

/**
 * A seasonal profile: the mean value per time-of-period bucket, blended across periods. A bucket is
 * committed when the stream leaves it, so a 1 Hz and a 1/h stream both add one sample per bucket
 * per period. Lookups see the profile as it was before the current period began (a bucket
 * committed less than half a period ago answers with its previous value), so "yesterday" never
 * already contains today, and lookups interpolate between bucket centres.
 */
class Profile {
  private readonly values: Float32Array;
  private readonly before: Float32Array;
  /** Minute (since the epoch) of each bucket's last commit; 0: never. */
  private readonly committed: Uint32Array;
  private readonly bucketMs: number;
  private open = -1;
  private openSum = 0;
  private openCount = 0;
  private openTs = 0;

  constructor(
    private readonly periodMs: number,
    bucketMinutes: number,
    private readonly blend: number,
  ) {
    this.bucketMs = bucketMinutes * MINUTE;
    const n = Math.round(periodMs / this.bucketMs);
    this.values = new Float32Array(n);
    this.before = new Float32Array(n);
    this.committed = new Uint32Array(n);
  }

  private slot(ts: number): number {
    const p = this.periodMs;
    return (((ts % p) + p) % p) / this.bucketMs;
  }

  private value(k: number, ts: number): number {
    const at = this.committed[k]!;
    if (at === 0) return NaN;
    if ((ts / MINUTE - at) * MINUTE >= this.periodMs / 2) return this.values[k]!;
    return this.before[k]!;
  }

  /** Profile value at `ts`, or NaN while the buckets around it have no history. */
  at(ts: number): number {
    const n = this.values.length;
    const pos = this.slot(ts) - 0.5;
    const lo = Math.floor(pos);
    const w = pos - lo;
    const a = this.value((lo + n) % n, ts);
    const b = this.value((lo + 1) % n, ts);
    if (Number.isNaN(a)) return b;
    if (Number.isNaN(b)) return a;
    return a * (1 - w) + b * w;
  }

  add(ts: number, x: number): void {
    const k = Math.floor(this.slot(ts)) % this.values.length;
    if (k !== this.open) {
      this.commit();
      this.open = k;
    }
    this.openSum += x;
    this.openCount++;
    this.openTs = ts;
  }

  private commit(): void {
    if (this.open < 0 || this.openCount === 0) return;
    const mean = this.openSum / this.openCount;
    const k = this.open;
    const old = this.value(k, this.openTs);
    // A bucket with no history before this period has none to offer until the next one.
    this.before[k] = old;
    this.values[k] = Number.isNaN(old) ? mean : old + this.blend * (mean - old);
    this.committed[k] = Math.max(1, Math.floor(this.openTs / MINUTE));
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

  /** The last value pushed: the step head's centre. */
  last(): number {
    return this.back(1);
  }

  /** The running mean: the level head's centre. */
  centre(): number {
    return this.mean;
  }

  /**
   * Writes the features describing reading (ts, ·) into `out` at `at`, before the reading itself
   * is known to the stream. Call only when ready().
   */
  write(ts: number, out: Float32Array, at: number): void {
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
    out[o++] = Number.isFinite(dayNow) ? clip((dayNow - this.mean) / s, m) : 0;
    out[o] = Number.isFinite(weekNow) ? clip((weekNow - this.mean) / s, m) : 0;
  }

  /** A reading value as a head sees it: relative to the head's centre, in spreads. */
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

/** Clips to ±m; NaN (∞/∞ on absurd inputs) becomes 0 so the model never sees it. */
function clip(v: number, m: number): number {
  return v > m ? m : v < -m ? -m : v === v ? v : 0;
}

/** A named set of feature columns that an explanation credits as one (agent/scoring/explain.ts). */
export interface FeatureGroup {
  name: string;
  columns: number[];
}

/**
 * The feature groups of recipe ctx-v1, in column order, covering every column once: what an
 * alert's explanation can name besides the reading's own `value`. Few enough (5, 6 with `value`)
 * for exact Shapley values over all 2^6 coalitions in one inference call.
 */
export function featureGroups(r: FeatureRecipe): FeatureGroup[] {
  const lags = r.lags - 1;
  const recent = Math.min(3, lags);
  const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);
  // After the lags: 0 day step, 1 day offset, 2 week step, 3 week offset, 4 has day, 5 has week, 6-8 hints, 9 day level, 10 week level.
  const c = (i: number): number => lags + i;
  return [
    { name: 'recent', columns: range(0, recent) },
    { name: 'history', columns: range(recent, lags - recent) },
    { name: 'daily', columns: [c(0), c(1), c(4), c(9)] },
    { name: 'weekly', columns: [c(2), c(3), c(5), c(10)] },
    { name: 'noise', columns: [c(6), c(7), c(8)] },
  ].filter((g) => g.columns.length > 0);
}
