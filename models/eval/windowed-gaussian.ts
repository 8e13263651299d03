/**
 * NAB's "windowed Gaussian" baseline, as in NAB's windowedGaussian detector: a Gaussian fitted to
 * the last 6400 values (refitted every 100), score = 1 - tail probability of the new value.
 */
import { tailProbability } from '../../agent/scoring/stats.js';

export const WINDOW_SIZE = 6400;
export const STEP_SIZE = 100;

export function windowedGaussianScores(values: ArrayLike<number>): Float64Array {
  const scores = new Float64Array(values.length);
  const window: number[] = [];
  let pending: number[] = [];
  let mean = 0;
  let std = 1;
  const refit = (): void => {
    mean = window.reduce((s, v) => s + v, 0) / window.length;
    std = Math.sqrt(window.reduce((s, v) => s + (v - mean) ** 2, 0) / window.length) || 0.000001;
  };
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (window.length > 0) scores[i] = 1 - tailProbability(v, mean, std);
    if (window.length < WINDOW_SIZE) {
      window.push(v);
      refit();
    } else {
      pending.push(v);
      if (pending.length === STEP_SIZE) {
        window.splice(0, STEP_SIZE);
        window.push(...pending);
        pending = [];
        refit();
      }
    }
  }
  return scores;
}
