/**
 * Seeded generator of synthetic metric streams, the forecaster's only training data.
 *
 * Training on synthetic streams instead of NAB keeps NAB an honest test: the model learns what
 * "normal" machine and business metrics look like (daily and weekly cycles, business hours, square
 * duty cycles, drifts, random walks, AR noise, counts, quantisation, clipping, irregular sampling,
 * spikes and level shifts it cannot predict), never the benchmark's own anomalies.
 */
import { mulberry32 } from '../../common/random.js';

export interface SynthSeries {
  times: Float64Array;
  values: Float64Array;
}

/** Same seed, same data everywhere. */
export const rng = mulberry32;

type Rand = () => number;

const gauss = (r: Rand): number => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
const uniform = (r: Rand, lo: number, hi: number): number => lo + (hi - lo) * r();
const logUniform = (r: Rand, lo: number, hi: number): number => Math.exp(uniform(r, Math.log(lo), Math.log(hi)));
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;

const MINUTE = 60_000;
const DAY = 1440 * MINUTE;

/** A periodic shape over one day, with values roughly in [-1, 1]. */
function dailyShape(r: Rand): (phase: number) => number {
  const kind = pick(r, ['harmonics', 'square', 'business', 'sawtooth'] as const);
  if (kind === 'harmonics') {
    const k = 1 + Math.floor(r() * 4);
    const coef = Array.from({ length: k }, (_, i) => ({ a: gauss(r) / (i + 1), p: r() * 2 * Math.PI }));
    return (ph) => coef.reduce((s, c, i) => s + c.a * Math.sin(2 * Math.PI * (i + 1) * ph + c.p), 0);
  }
  const on = r();
  const width = uniform(r, 0.15, 0.7);
  const ramp = uniform(r, 0.001, 0.06);
  if (kind === 'sawtooth') return (ph) => 2 * ((ph + on) % 1) - 1;
  const edge = (d: number): number => Math.min(1, Math.max(0, d / ramp));
  const square = (ph: number): number => {
    const d = (ph - on + 1) % 1;
    return d < width ? 2 * Math.min(edge(d), edge(width - d)) - 1 : -1;
  };
  if (kind === 'square') return square;
  // Business hours: a plateau with a lunch dip.
  return (ph) => square(ph) - (Math.abs(((ph - on + 1) % 1) - width / 2) < 0.02 ? 0.4 : 0);
}

/** One random stream, `seed` fully determines it. */
export function synthSeries(seed: number): SynthSeries {
  const r = rng(seed);
  const stepMin = pick(r, [1, 5, 5, 5, 10, 15, 30, 60]);
  const days = uniform(r, 10, 36);
  const n = Math.min(9000, Math.floor((days * DAY) / (stepMin * MINUTE)));
  const level = r() < 0.3 ? 0 : gauss(r) * logUniform(r, 1, 1e4);
  const scale = logUniform(r, 1e-3, 1e4);
  const has = (p: number): boolean => r() < p;

  const daily = has(0.65) ? { shape: dailyShape(r), amp: logUniform(r, 0.2, 5), jitter: has(0.3) ? uniform(r, 0, 0.01) : 0 } : null;
  const weekend = daily && has(0.4) ? uniform(r, 0, 1.2) : 1;
  const weekly = has(0.15) ? { amp: logUniform(r, 0.1, 2), p: r() * 2 * Math.PI } : null;
  const trend = has(0.3) ? (gauss(r) * 0.5) / n : 0;
  const walk = has(0.35) ? logUniform(r, 0.002, 0.2) : 0;
  const arPhi = has(0.5) ? uniform(r, 0.3, 0.98) : 0;
  const arSigma = arPhi ? logUniform(r, 0.02, 1) : 0;
  const noise = has(0.85) ? logUniform(r, 0.005, 1.5) : 0;
  const heavy = has(0.3);
  const spikeRate = has(0.35) ? logUniform(r, 0.0005, 0.05) : 0;
  const spikeHeight = logUniform(r, 1, 15);
  const spikeEvery = has(0.08) ? Math.floor(uniform(r, 20, 300)) : 0;
  const shiftRate = has(0.2) ? logUniform(r, 0.0001, 0.002) : 0;
  const quantum = has(0.2) ? scale * logUniform(r, 0.01, 0.5) : 0;
  const clipLow = has(0.25) ? level - scale * uniform(r, 0.5, 2) : -Infinity;
  const counts = has(0.1) ? logUniform(r, 5, 2000) : 0;
  const missing = has(0.2) ? uniform(r, 0, 0.1) : 0;

  const start = Date.UTC(2015, 0, 1) + Math.floor(r() * 365) * DAY + Math.floor(r() * 96) * 15 * MINUTE;
  const times = new Float64Array(n);
  const values = new Float64Array(n);
  let t = start;
  let walkAt = 0;
  let ar = 0;
  let shift = 0;
  for (let i = 0; i < n; i++) {
    do t += stepMin * MINUTE;
    while (missing && r() < missing);
    const jitteredT = daily?.jitter ? t + gauss(r) * daily.jitter * DAY : t;
    const phase = (((jitteredT % DAY) + DAY) % DAY) / DAY;
    const dow = new Date(t).getUTCDay();
    let y = 0;
    if (daily) y += daily.amp * daily.shape(phase) * (dow === 0 || dow === 6 ? weekend : 1);
    if (weekly) y += weekly.amp * Math.sin((2 * Math.PI * (t - start)) / (7 * DAY) + weekly.p);
    walkAt += walk * gauss(r);
    ar = arPhi * ar + arSigma * gauss(r);
    if (shiftRate && r() < shiftRate) shift += gauss(r) * 2;
    y += trend * i + walkAt + ar + shift;
    const e = heavy ? gauss(r) / Math.max(0.15, Math.sqrt(r())) : gauss(r);
    y += noise * e;
    if ((spikeRate && r() < spikeRate) || (spikeEvery && i % spikeEvery === 0))
      y += spikeHeight * (r() < 0.8 ? 1 : -1) * uniform(r, 0.5, 1);
    let v = level + scale * y;
    if (counts) {
      // Event counts: Poisson-like noise around a rate that follows the pattern.
      const rate = counts * Math.exp(0.3 * Math.min(y, 10));
      v = Math.max(0, Math.round(rate + gauss(r) * Math.sqrt(rate)));
    }
    if (quantum) v = Math.round(v / quantum) * quantum;
    times[i] = t;
    values[i] = Math.max(v, clipLow);
  }
  return { times, values };
}
