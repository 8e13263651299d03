/**
 * Drift references of the failure model, shipped in its manifest entry.
 *
 * Inputs: every cycle of every training engine, each feature scaled as the model sees it.
 * Output and error: the predictions of the cross-validation models for the engines they did not
 * see (every cycle of each held-out engine, as the agent predicts each completed step) — what the
 * model does on data it was not fitted to. The agent builds the same histograms with the same bins
 * (common/drift/specs.ts), so the cloud compares like with like.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Histogram } from '../../common/drift/histogram.js';
import { driftSpecsOf, RUL_STREAM } from '../../common/drift/specs.js';
import { AssetWindow } from '../../common/models/asset-window.js';
import { cmapssValue, type CmapssRow } from '../../common/models/cmapss.js';
import { FailureModel } from '../../common/models/failure-model.js';
import type { DriftSection, FailureModelEntry } from '../../common/models/manifest.js';
import { cmapssIndexes } from '../eval/eval-rul.js';
import { describe, type TrainReport } from './entry.js';

const BATCH = 1024;

export class DriftReference {
  private output: Histogram | undefined;
  private error: Histogram | undefined;

  get empty(): boolean {
    return this.output === undefined;
  }

  /** Predicts every cycle of these engines and adds the outputs and step-to-step errors. */
  async addPredictions(entry: FailureModelEntry, path: string, engines: CmapssRow[][]): Promise<void> {
    const specs = driftSpecsOf(entry);
    this.output ??= new Histogram(specs.output);
    this.error ??= new Histogram(specs.error);
    const model = await FailureModel.load(entry, path);
    const idx = cmapssIndexes(entry);
    const step = new Float64Array(idx.length);
    try {
      for (const rows of engines) {
        const w = new AssetWindow(entry.featureRecipe);
        const windows = new Float32Array(rows.length * model.windowSize);
        rows.forEach((row, t) => {
          for (let f = 0; f < idx.length; f++) step[f] = cmapssValue(row, idx[f]!);
          w.push(step);
          w.write(windows, t * model.windowSize);
        });
        let prev: number | undefined;
        for (let i = 0; i < rows.length; i += BATCH) {
          const n = Math.min(BATCH, rows.length - i);
          const out = await model.predict(windows.subarray(i * model.windowSize), n);
          for (const rul of out) {
            this.output.add(rul);
            if (prev !== undefined) this.error.add(rul - prev + 1);
            prev = rul;
          }
        }
      }
    } finally {
      await model.close();
    }
  }

  /** The same, from the fold models an earlier run left under `<work>/cv/seed-<first>/` (with --reuse-cv). */
  async addPredictionsFromCv(work: string, name: string, version: string, units: Map<number, CmapssRow[]>): Promise<void> {
    const seedDir = readdirSync(join(work, 'cv')).sort()[0]!;
    for (const fold of readdirSync(join(work, 'cv', seedDir)).sort()) {
      const dir = join(work, 'cv', seedDir, fold);
      const report = JSON.parse(readFileSync(join(dir, 'train.json'), 'utf8')) as TrainReport & { excluded: number[] };
      const entry = await describe(name, `${version}-cv`, join(dir, 'model.onnx'), dir, report);
      await this.addPredictions(
        entry,
        join(dir, 'model.onnx'),
        report.excluded.map((u) => units.get(u)!),
      );
    }
  }

  section(entry: FailureModelEntry, engines: CmapssRow[][], outOfFold: boolean): DriftSection {
    const specs = driftSpecsOf(entry);
    const idx = cmapssIndexes(entry);
    const { features } = entry.featureRecipe;
    const inputs = features.map(() => new Histogram(specs.input));
    const step = new Float64Array(idx.length);
    // What the model reads: each step scaled (and smoothed) as the agent's AssetWindow does.
    for (const rows of engines) {
      const w = new AssetWindow(entry.featureRecipe);
      for (const row of rows) {
        for (let f = 0; f < idx.length; f++) step[f] = cmapssValue(row, idx[f]!);
        w.push(step);
        for (let f = 0; f < idx.length; f++) inputs[f]!.add(w.newest(f));
      }
    }
    return {
      bins: specs,
      reference: {
        source: `inputs: every cycle of the ${engines.length} training engines; output and error: ${
          outOfFold
            ? 'out-of-fold predictions of the cross-validation models (each engine predicted by a model that never saw it)'
            : "this model's predictions on its training engines"
        }, every cycle`,
        streams: {
          ...Object.fromEntries(features.map((f, i) => [f, { input: inputs[i]!.pack() }])),
          [RUL_STREAM]: { output: this.output!.pack(), error: this.error!.pack() },
        },
      },
    };
  }
}
