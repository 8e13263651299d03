/**
 * How well a frozen threshold carries to data it was not chosen on: NAB scores under
 * leave-one-category-out and leave-one-file-out cross-validation, the threshold chosen on the
 * training folds only, with the same rule that picks the shipped threshold on the whole corpus.
 *
 * The rule (`chooseThreshold`): NAB's sweep keeps the single best threshold, a peak that can sit
 * next to a cliff (one threshold step more, and several windows are lost). Ours maximises the
 * training score averaged over a neighbourhood of ±`smoothing` in score units (on a grid of 0.005),
 * so it prefers a threshold whose neighbours are good too; `smoothing: 0` is NAB's own choice.
 * Ties go to the middle of the tied run. A fold's test files are scored at its threshold; the raw scores of all
 * folds are added and normalised once over every window (a category without windows, like
 * artificialNoAnomaly, can only cost false positives).
 */
import {
  normalise,
  scoreAtThreshold,
  thresholdCurve,
  countWindows,
  type CostProfile,
  type ScoredSeries,
  type ThresholdResult,
} from './nab-score.js';

export interface ThresholdRule {
  /** Half-width, in score units, of the neighbourhood a threshold is judged on; 0: NAB's best threshold. */
  smoothing: number;
}

export const DEFAULT_RULE: ThresholdRule = { smoothing: 0.03 };

/** Grid step of the smoothed search, and of the neighbourhood average. */
const GRID = 0.005;

/** The corpus raw score at threshold t, read off a curve sorted by threshold, highest first. */
function rawAt(curve: readonly ThresholdResult[], t: number): number {
  let lo = 0;
  let hi = curve.length - 1;
  // The last point whose threshold is >= t (the curve starts at Infinity: never detect).
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (curve[mid]!.threshold >= t) lo = mid;
    else hi = mid - 1;
  }
  return curve[lo]!.raw;
}

export function chooseThreshold(corpus: readonly ScoredSeries[], profile: CostProfile, rule: ThresholdRule = DEFAULT_RULE): number {
  const curve = thresholdCurve(corpus, profile);
  if (rule.smoothing <= 0) {
    let best = -Infinity;
    for (const p of curve) best = Math.max(best, p.raw);
    const tied = curve.filter((p) => p.raw >= best - 1e-9 && Number.isFinite(p.threshold));
    if (tied.length === 0) return Infinity;
    return tied[Math.floor((tied.length - 1) / 2)]!.threshold;
  }
  const d = rule.smoothing;
  const steps = Math.round(d / GRID);
  const grid: number[] = [];
  for (let k = 1; k * GRID <= 1 + 1e-9; k++) {
    let sum = 0;
    for (let j = -steps; j <= steps; j++) sum += rawAt(curve, (k + j) * GRID);
    grid.push(sum / (2 * steps + 1));
  }
  const best = Math.max(...grid);
  if (!(best > rawAt(curve, Infinity) + 1e-12)) return Infinity;
  // Ties: the middle of the first run of equally good thresholds, away from both of its edges.
  const first = grid.findIndex((v) => v >= best - 1e-9);
  let last = first;
  while (last + 1 < grid.length && grid[last + 1]! >= best - 1e-9) last++;
  return +((Math.floor((first + last) / 2) + 1) * GRID).toFixed(6);
}

export interface CvResult {
  /** Normalised over all windows of the corpus. */
  score: number;
  tp: number;
  fp: number;
  fn: number;
  /** Per fold: its threshold and how its test files fared. */
  folds: Record<string, { threshold: number; tp: number; fp: number; raw: number }>;
}

export function crossValidate(
  corpus: readonly ScoredSeries[],
  profile: CostProfile,
  foldOf: (s: ScoredSeries) => string,
  rule: ThresholdRule = DEFAULT_RULE,
): CvResult {
  const names = [...new Set(corpus.map(foldOf))].sort();
  const folds: CvResult['folds'] = {};
  let raw = 0;
  let tp = 0;
  let fp = 0;
  for (const f of names) {
    const threshold = chooseThreshold(
      corpus.filter((s) => foldOf(s) !== f),
      profile,
      rule,
    );
    const r = scoreAtThreshold(
      corpus.filter((s) => foldOf(s) === f),
      profile,
      threshold,
    );
    folds[f] = { threshold, tp: r.tp, fp: r.fp, raw: r.raw };
    raw += r.raw;
    tp += r.tp;
    fp += r.fp;
  }
  const windows = countWindows(corpus);
  return { score: normalise(raw, windows, profile), tp, fp, fn: windows - tp, folds };
}

/** `<category>/<file>.csv` → its category, the fold of leave-one-category-out. */
export const categoryOf = (s: ScoredSeries): string => s.name.slice(0, s.name.indexOf('/'));
export const fileOf = (s: ScoredSeries): string => s.name;
