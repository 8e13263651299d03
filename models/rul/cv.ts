/**
 * Engine-level cross-validation for the failure model: engines are split into folds by a seeded
 * shuffle; each fold's engines are held out of training, cut off before failure as the official
 * C-MAPSS test sets are, and written as a C-MAPSS test file with its RUL file — so every fold is
 * scored by `npm run eval:rul`'s own code. The held-out files go under var/ (never the repo).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CmapssRow } from '../../common/models/cmapss.js';
import { mulberry32 } from '../../common/random.js';

/** Like FD001's official test set: true remaining life 7–145 cycles, at least `minCycles` seen. */
export const CUT_MIN_RUL = 7;
export const CUT_MAX_RUL = 145;

export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const r = mulberry32(seed);
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/** The held-out engines of each fold (every engine in exactly one fold per seed). */
export function folds(units: readonly number[], k: number, seed: number): number[][] {
  const order = shuffled(
    [...units].sort((a, b) => a - b),
    seed,
  );
  return Array.from({ length: k }, (_, f) => order.filter((_, i) => i % k === f).sort((a, b) => a - b));
}

function line(r: CmapssRow): string {
  return `${r.unit} ${r.cycle} ${r.values.join(' ')}`;
}

/**
 * Writes `<dir>/test.txt` (each held-out engine cut `rul` cycles before its failure, rul uniform
 * in [7, min(145, life − minCycles)]) and `<dir>/rul.txt`; returns the paths and the cut lives.
 */
export function writeHeldOut(
  dir: string,
  units: Map<number, CmapssRow[]>,
  heldOut: readonly number[],
  seed: number,
  minCycles: number,
): { test: string; rul: string; lives: number[] } {
  const r = mulberry32(seed);
  const test: string[] = [];
  const lives: number[] = [];
  for (const u of heldOut) {
    const rows = units.get(u)!;
    const hi = Math.min(CUT_MAX_RUL, rows.length - minCycles);
    const rul = CUT_MIN_RUL + Math.floor(r() * (hi - CUT_MIN_RUL + 1));
    for (const row of rows.slice(0, rows.length - rul)) test.push(line(row));
    lives.push(rul);
  }
  mkdirSync(dir, { recursive: true });
  const paths = { test: join(dir, 'test.txt'), rul: join(dir, 'rul.txt') };
  writeFileSync(paths.test, test.join('\n') + '\n');
  writeFileSync(paths.rul, lives.join('\n') + '\n');
  return { ...paths, lives };
}

export interface FoldResult {
  seed: number;
  fold: number;
  engines: number;
  rmse: number;
  phm08: number;
  rmseUncapped: number;
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const sd = (xs: number[]): number => Math.sqrt(mean(xs.map((x) => (x - mean(xs)) ** 2)));

/** Per-fold mean ± sd, worst fold, and the figures pooled over every evaluation engine. */
export function summarise(results: FoldResult[], pooled: { se: number; seRaw: number; phm08: number; n: number }): Record<string, unknown> {
  const r = (k: 'rmse' | 'phm08' | 'rmseUncapped') => results.map((x) => x[k]);
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    folds: results.length,
    evaluationEngines: pooled.n,
    rmseMean: round(mean(r('rmse'))),
    rmseSd: round(sd(r('rmse'))),
    rmseWorstFold: round(Math.max(...r('rmse'))),
    rmsePooled: round(Math.sqrt(pooled.se / pooled.n)),
    rmseUncappedPooled: round(Math.sqrt(pooled.seRaw / pooled.n)),
    phm08MeanPerFold: round(mean(r('phm08'))),
    phm08PerEngine: round(pooled.phm08 / pooled.n),
    perFold: results.map((x) => ({ ...x, rmse: round(x.rmse), phm08: round(x.phm08), rmseUncapped: round(x.rmseUncapped) })),
  };
}
