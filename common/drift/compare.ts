/**
 * Drift of one histogram against its reference: the two-sample Kolmogorov–Smirnov distance on the
 * binned distributions with its asymptotic p-value, and beside it the Population Stability Index
 * and the Jensen–Shannon divergence. A stream drifts when D > 0.05 with p < 0.01 (the "more than
 * 5 % drift" of the seeds): D says the change matters, p that it is not sampling noise — with
 * millions of readings any difference is significant, with a few dozen none is.
 *
 * Binning can only lower D (the maximum is taken over the bin edges instead of every point), so the
 * test is conservative; the cloud's merged D equals D computed over the pooled raw data binned the
 * same way, because merging adds integer counts.
 */
import { EdgetwinError, ErrorCodes } from '../errors.js';
import { sameSpec, specKey, type Histogram } from './histogram.js';

/** D above this … */
export const DRIFT_MIN_KS = 0.05;
/** … with a p-value below this is drift. */
export const DRIFT_MAX_P = 0.01;

export interface DriftFigures {
  /** Kolmogorov–Smirnov distance between the binned distributions, [0, 1]. */
  ks: number;
  /** Asymptotic two-sample p-value of `ks` (1 when either side is empty). */
  p: number;
  /** Population Stability Index (0.1: moderate, 0.25: large, by the usual rule of thumb). */
  psi: number;
  /** Jensen–Shannon divergence, base 2, [0, 1]. */
  js: number;
  n: number;
  referenceN: number;
  drift: boolean;
}

/** Kolmogorov's Q(λ) = 2 Σ (-1)^(j-1) exp(-2 j² λ²): the probability that the scaled distance exceeds λ under H0. */
export function kolmogorovQ(lambda: number): number {
  if (lambda < 0.2) return 1;
  let sum = 0;
  let sign = 1;
  const a = -2 * lambda * lambda;
  for (let j = 1; j <= 100; j++) {
    const term = sign * Math.exp(a * j * j);
    sum += term;
    if (Math.abs(term) < 1e-12 * Math.abs(sum)) break;
    sign = -sign;
  }
  return Math.min(1, Math.max(0, 2 * sum));
}

/** Two-sample KS p-value with Stephens' small-sample correction (Numerical Recipes' probks). */
export function ksPValue(d: number, n1: number, n2: number): number {
  if (n1 <= 0 || n2 <= 0) return 1;
  const en = Math.sqrt((n1 * n2) / (n1 + n2));
  return kolmogorovQ((en + 0.12 + 0.11 / en) * d);
}

/** max |F1 − F2| over the cell boundaries. */
export function ksDistance(a: ArrayLike<number>, na: number, b: ArrayLike<number>, nb: number): number {
  if (na <= 0 || nb <= 0) return 0;
  let ca = 0;
  let cb = 0;
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    ca += a[i]!;
    cb += b[i]!;
    const x = Math.abs(ca / na - cb / nb);
    if (x > d) d = x;
  }
  return d;
}

/**
 * Half a count is added to every cell of both sides for PSI, so that a cell empty on one side
 * gives a large but finite term (the usual smoothing; it changes nothing for well-filled cells).
 */
export function psi(a: ArrayLike<number>, na: number, b: ArrayLike<number>, nb: number): number {
  const k = a.length;
  const ta = na + 0.5 * k;
  const tb = nb + 0.5 * k;
  let s = 0;
  for (let i = 0; i < k; i++) {
    const p = (a[i]! + 0.5) / ta;
    const q = (b[i]! + 0.5) / tb;
    s += (p - q) * Math.log(p / q);
  }
  return s;
}

export function jsDivergence(a: ArrayLike<number>, na: number, b: ArrayLike<number>, nb: number): number {
  if (na <= 0 || nb <= 0) return 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const p = a[i]! / na;
    const q = b[i]! / nb;
    const m = (p + q) / 2;
    if (p > 0) s += 0.5 * p * Math.log2(p / m);
    if (q > 0) s += 0.5 * q * Math.log2(q / m);
  }
  return Math.min(1, Math.max(0, s));
}

/** Compares a histogram with its reference (same spec: the caller merged them from the same model entry). */
export function compareHistograms(current: Histogram, reference: Histogram): DriftFigures {
  if (!sameSpec(current.spec, reference.spec)) {
    throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, 'a histogram is compared only with a reference of the same bins', {
      details: { current: specKey(current.spec), reference: specKey(reference.spec) },
    });
  }
  const a = current.counts;
  const b = reference.counts;
  const n = current.total;
  const referenceN = reference.total;
  const ks = ksDistance(a, n, b, referenceN);
  const p = ksPValue(ks, n, referenceN);
  return {
    ks,
    p,
    psi: n > 0 && referenceN > 0 ? psi(a, n, b, referenceN) : 0,
    js: jsDivergence(a, n, b, referenceN),
    n,
    referenceN,
    drift: ks > DRIFT_MIN_KS && p < DRIFT_MAX_P,
  };
}
