/**
 * Failure-model test material without the C-MAPSS data (CI has no ../shared): the committed model,
 * synthetic engines drawn with the trainer's own generator (models/rul/train.py, synthetic_rows),
 * and C-MAPSS-format files of them.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { CMAPSS_COLUMNS } from '../../common/models/cmapss.js';
import { modelPath, pickFailureModel, readManifest, type FailureModelEntry } from '../../common/models/manifest.js';

export const MANIFEST = resolve('models/manifest.json');

export function failureModel(): { entry: FailureModelEntry; path: string; bytes: Buffer } {
  const entry = pickFailureModel(readManifest(MANIFEST), '');
  const path = modelPath(MANIFEST, entry);
  return { entry, path, bytes: readFileSync(path) };
}

/** Raw feature rows of a made-up engine, exactly as train.py's synthetic_rows (Park–Miller, exact in doubles). */
export function syntheticRows(seed: number, rows: number, drift: number, center: number[], scale: number[]): number[][] {
  let state = seed;
  const out: number[][] = [];
  for (let t = 0; t < rows; t++) {
    const row: number[] = [];
    for (let f = 0; f < center.length; f++) {
      state = (state * 16807) % 2147483647;
      row.push(center[f]! + scale[f]! * (0.8 * ((2 * state) / 2147483647 - 1) + (drift * t) / rows));
    }
    out.push(row);
  }
  return out;
}

/**
 * A C-MAPSS file of synthetic engines (unit u has `cycles[u-1]` cycles, degrading at `drift`):
 * the model's features from syntheticRows, the other columns at the model's centre.
 */
export function writeCmapssFile(file: string, entry: FailureModelEntry, cycles: number[], drift = 2, extraLines: string[] = []): void {
  const { features, center, scale } = entry.featureRecipe;
  const lines: string[] = [];
  cycles.forEach((n, i) => {
    const rows = syntheticRows(100 + i, n, drift, center, scale);
    rows.forEach((r, t) => {
      const values = CMAPSS_COLUMNS.map((c) => {
        const f = features.indexOf(c);
        return f >= 0 ? r[f]!.toFixed(4) : '0.0';
      });
      lines.push(`${i + 1} ${t + 1} ${values.join(' ')} `);
    });
  });
  writeFileSync(file, [...lines, ...extraLines].join('\n') + '\n');
}
