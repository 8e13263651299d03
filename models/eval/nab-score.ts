/**
 * The Numenta Anomaly Benchmark's scoring (NAB v1.1), written from the description in
 * ../shared/nab/README.md. Pure functions, no I/O: nab-data.ts reads files, eval-nab.ts drives.
 *
 * Two NAB details the description leaves implicit, taken from NAB's sweeper:
 * - the threshold sweep also tries "no detection at all" (NAB starts its sweep at 1.1), so a
 *   detector can never score below the null detector;
 * - "only the earliest detection in a window counts" is computed as the best weight among the
 *   window's detections, which is the same thing because the weight falls monotonically.
 */

export interface CostProfile {
  tpWeight: number;
  fnWeight: number;
  fpWeight: number;
}

/** One scored series: row times, the detector's scores, and its anomaly windows in row indices. */
export interface ScoredSeries {
  name: string;
  scores: ArrayLike<number>;
  /** Inclusive [start row, right row] pairs, sorted, not overlapping. */
  windows: ReadonlyArray<readonly [number, number]>;
}

export interface ThresholdResult {
  threshold: number;
  /** Raw (unnormalised) total over the corpus. */
  raw: number;
  normalised: number;
  tp: number;
  fp: number;
  fn: number;
}

/** Value of sigmoid(-1) as NAB scales it: a detection at a window's first row is worth tpWeight. */
export const MAX_TP = scaledSigmoid(-1);

export function scaledSigmoid(x: number): number {
  return x > 3 ? -1 : 2 / (1 + Math.exp(5 * x)) - 1;
}

/** Rows before this index are NAB's probation period: not scored. */
export function probationLength(rows: number): number {
  return Math.min(Math.floor(0.15 * rows), 750);
}

/**
 * Maps windows given as times to inclusive row ranges: first row at or after the start, last row
 * at or before the end. A window that covers no row is kept as an empty range (-1, -1), so it
 * still counts as a missed window, as NAB's normalisation counts every labelled window.
 */
export function windowsToRows(times: ArrayLike<number>, windows: ReadonlyArray<readonly [number, number]>): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const [start, end] of [...windows].sort((a, b) => a[0] - b[0])) {
    const s = lowerBound(times, start);
    const r = lowerBound(times, end + 1) - 1;
    out.push(s <= r ? [s, r] : [-1, -1]);
  }
  return out;
}

function lowerBound(a: ArrayLike<number>, x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** A scorable row as the sweep sees it: its score, its window (-1 outside) and its weight if detected. */
interface SweepPoint {
  score: number;
  window: number;
  weight: number;
}

/** Weights every scorable (post-probation) row of one series as NAB's sweeper does. */
function sweepPoints(series: ScoredSeries, profile: CostProfile, windowBase: number): SweepPoint[] {
  const n = series.scores.length;
  const probation = probationLength(n);
  const points: SweepPoint[] = [];
  let w = 0; // next window not yet ended
  let prevRight = -1;
  let prevWidth = 0;
  const wins = series.windows;
  for (let i = 0; i < n; i++) {
    while (w < wins.length && wins[w]![1] < i) {
      if (wins[w]![0] >= 0) {
        prevRight = wins[w]![1];
        prevWidth = wins[w]![1] - wins[w]![0] + 1;
      }
      w++;
    }
    const inWindow = w < wins.length && wins[w]![0] >= 0 && wins[w]![0] <= i;
    let weight: number;
    if (inWindow) {
      const [start, right] = wins[w]!;
      weight = (profile.tpWeight * scaledSigmoid(-(right - i + 1) / (right - start + 1))) / MAX_TP;
    } else if (prevRight < 0) {
      weight = -profile.fpWeight;
    } else {
      // A width-1 window gives 0/0 or x/0: both count as "far", i.e. the full FP cost.
      const x = prevWidth > 1 ? Math.abs(i - prevRight) / (prevWidth - 1) : Infinity;
      weight = profile.fpWeight * scaledSigmoid(x);
    }
    if (i >= probation) points.push({ score: series.scores[i]!, window: inWindow ? windowBase + w : -1, weight });
  }
  return points;
}

export function countWindows(corpus: readonly ScoredSeries[]): number {
  return corpus.reduce((s, f) => s + f.windows.length, 0);
}

export function normalise(raw: number, windows: number, profile: CostProfile): number {
  const perfect = profile.tpWeight * windows;
  const nul = -profile.fnWeight * windows;
  return perfect === nul ? 0 : (100 * (raw - nul)) / (perfect - nul);
}

/**
 * Scores the corpus at every distinct score value (detection: score >= threshold) plus "never
 * detect", and returns the best. Ties keep the highest threshold (fewest detections).
 */
export function optimiseThreshold(corpus: readonly ScoredSeries[], profile: CostProfile): ThresholdResult {
  let best: ThresholdResult | undefined;
  sweep(corpus, profile, (r) => {
    if (best === undefined || r.raw > best.raw) best = r;
    return true;
  });
  return best!;
}

/** The corpus score at one given threshold (used to report a model's shipped threshold). */
export function scoreAtThreshold(corpus: readonly ScoredSeries[], profile: CostProfile, threshold: number): ThresholdResult {
  let at: ThresholdResult | undefined;
  sweep(corpus, profile, (r, next) => {
    at = { ...r, threshold };
    return next >= threshold;
  });
  return at!;
}

/**
 * The corpus result at every candidate threshold, from "never detect" (Infinity) down through
 * every distinct score: what a threshold rule (cross-validation, plateau choice) chooses from.
 */
export function thresholdCurve(corpus: readonly ScoredSeries[], profile: CostProfile): ThresholdResult[] {
  const out: ThresholdResult[] = [];
  sweep(corpus, profile, (r) => {
    out.push(r);
    return true;
  });
  return out;
}

/**
 * Lowers the threshold through every distinct score, from "never detect" down, and hands the
 * corpus result at each step to `visit` (with the next lower score, or -Infinity at the end);
 * stops when `visit` returns false.
 */
function sweep(corpus: readonly ScoredSeries[], profile: CostProfile, visit: (r: ThresholdResult, next: number) => boolean): void {
  const nWindows = countWindows(corpus);
  const points: SweepPoint[] = [];
  let base = 0;
  for (const s of corpus) {
    points.push(...sweepPoints(s, profile, base));
    base += s.windows.length;
  }
  points.sort((a, b) => b.score - a.score);
  const windowBest = new Float64Array(nWindows);
  const hit = new Uint8Array(nWindows);
  let tpSum = 0; // sum of windowBest over hit windows
  let fpSum = 0;
  let tp = 0;
  let fp = 0;
  const result = (threshold: number): ThresholdResult => {
    const raw = tpSum - profile.fnWeight * (nWindows - tp) + fpSum;
    return { threshold, raw, normalised: normalise(raw, nWindows, profile), tp, fp, fn: nWindows - tp };
  };
  if (!visit(result(Infinity), points.length > 0 ? points[0]!.score : -Infinity)) return;
  let i = 0;
  while (i < points.length) {
    const thr = points[i]!.score;
    // Every row with this exact score becomes a detection at once.
    for (; i < points.length && points[i]!.score === thr; i++) {
      const p = points[i]!;
      if (p.window < 0) {
        fpSum += p.weight;
        fp++;
      } else if (!hit[p.window]) {
        hit[p.window] = 1;
        tp++;
        windowBest[p.window] = p.weight;
        tpSum += p.weight;
      } else if (p.weight > windowBest[p.window]!) {
        tpSum += p.weight - windowBest[p.window]!;
        windowBest[p.window] = p.weight;
      }
    }
    if (!visit(result(thr), i < points.length ? points[i]!.score : -Infinity)) return;
  }
}
