/** Seeded randomness for fault schedules: the same seed must reproduce the same run. */
import { mulberry32 } from '../../common/random.js';

export type Rng = () => number;

export const rng: (seed: number) => Rng = mulberry32;

export function pick<T>(r: Rng, items: readonly T[]): T {
  return items[Math.floor(r() * items.length)]!;
}

export function between(r: Rng, lo: number, hi: number): number {
  return lo + Math.floor(r() * (hi - lo + 1));
}
