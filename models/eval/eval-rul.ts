/**
 * Scores a failure (remaining-useful-life) model on any C-MAPSS-format test set, through the same
 * code the agent runs: the manifest entry, FailureModel.load (sha256, shapes, smoke run) and the
 * AssetWindow recipe.
 *
 *   npm run eval:rul -- --test FILE --rul FILE [--train FILE] [--manifest models/manifest.json]
 *                       [--model NAME] [--json]
 *
 * Each test engine's last cycle is predicted from its window and compared with its true remaining
 * life from the RUL file (one line per engine, in unit order). `rmse` and `phm08_score` compare
 * with the true life capped at the model's rulCap (the piecewise-linear target of the standard
 * protocol); `rmse_uncapped` and `phm08_score_uncapped` compare with the raw true life. `--train`
 * checks that the model's scaling was fitted on that training file (per-feature mean and standard
 * deviation) and says so in the output.
 */
import { parseArgs } from 'node:util';
import { AssetWindow } from '../../common/models/asset-window.js';
import { CMAPSS_FEATURES, cmapssValue, readCmapss, readRulFile, type CmapssRow } from '../../common/models/cmapss.js';
import { EdgetwinError, ErrorCodes, errorMessage } from '../../common/errors.js';
import { FailureModel } from '../../common/models/failure-model.js';
import { modelPath, pickFailureModel, readManifest, type FailureModelEntry } from '../../common/models/manifest.js';
import { fromRoot } from './repo.js';

export interface RulEvaluation {
  model: string;
  engines: number;
  rmse: number;
  phm08_score: number;
  rmse_uncapped: number;
  phm08_score_uncapped: number;
  mae: number;
  /** Per engine: unit, cycles seen, true life, prediction. */
  predictions: { unit: number; cycles: number; rul: number; predicted: number }[];
  /** Set with --train: largest difference between the recipe's scaling and the file's, in the file's standard deviations. */
  scalerCheck?: { matches: boolean; maxCenterShift: number; maxScaleRatio: number };
}

/** PHM08 challenge score: late predictions (d > 0) cost more than early ones. */
export function phm08(d: number): number {
  return d < 0 ? Math.exp(-d / 13) - 1 : Math.exp(d / 10) - 1;
}

/** Index in CMAPSS_FEATURES of each recipe feature; throws EDGETWIN_ERR_MODEL when a feature is not in C-MAPSS rows. */
export function cmapssIndexes(entry: FailureModelEntry): number[] {
  return entry.featureRecipe.features.map((f) => {
    const i = CMAPSS_FEATURES.indexOf(f);
    if (i < 0) throw new EdgetwinError(ErrorCodes.MODEL, `model ${entry.version}: feature ${f} is not a C-MAPSS column`);
    return i;
  });
}

/** The window after each engine's last row, `[engines, window, features]`. */
export function lastWindows(
  entry: FailureModelEntry,
  units: Map<number, CmapssRow[]>,
): { order: number[]; windows: Float32Array; size: number } {
  const idx = cmapssIndexes(entry);
  const order = [...units.keys()].sort((a, b) => a - b);
  const size = entry.featureRecipe.window * idx.length;
  const windows = new Float32Array(order.length * size);
  const step = new Float64Array(idx.length);
  order.forEach((u, k) => {
    const w = new AssetWindow(entry.featureRecipe);
    for (const row of units.get(u)!) {
      for (let f = 0; f < idx.length; f++) step[f] = cmapssValue(row, idx[f]!);
      w.push(step);
    }
    w.write(windows, k * size);
  });
  return { order, windows, size };
}

function scalerCheck(entry: FailureModelEntry, trainFile: string): NonNullable<RulEvaluation['scalerCheck']> {
  const idx = cmapssIndexes(entry);
  const { center, scale } = entry.featureRecipe;
  const sum = new Float64Array(idx.length);
  const sq = new Float64Array(idx.length);
  let n = 0;
  for (const rows of readCmapss(trainFile).values()) {
    for (const r of rows) {
      n++;
      idx.forEach((c, f) => {
        sum[f]! += cmapssValue(r, c);
        sq[f]! += cmapssValue(r, c) ** 2;
      });
    }
  }
  let maxCenterShift = 0;
  let maxScaleRatio = 1;
  idx.forEach((_, f) => {
    const mean = sum[f]! / n;
    const sd = Math.sqrt(Math.max(0, sq[f]! / n - mean * mean));
    maxCenterShift = Math.max(maxCenterShift, Math.abs(mean - center[f]!) / (sd || 1));
    const ratio = sd > 0 ? scale[f]! / sd : Infinity;
    maxScaleRatio = Math.max(maxScaleRatio, ratio, 1 / ratio);
  });
  return { matches: maxCenterShift < 0.01 && maxScaleRatio < 1.01, maxCenterShift, maxScaleRatio };
}

export async function evalRul(opts: {
  testFile: string;
  rulFile: string;
  trainFile?: string;
  manifestFile?: string;
  modelName?: string;
  /** An explicit entry and file instead of a manifest (the trainer's cross-validation folds). */
  model?: { entry: FailureModelEntry; path: string };
}): Promise<RulEvaluation> {
  const manifestFile = opts.manifestFile ?? fromRoot('models/manifest.json');
  const entry = opts.model?.entry ?? pickFailureModel(readManifest(manifestFile), opts.modelName ?? '');
  const model = await FailureModel.load(entry, opts.model?.path ?? modelPath(manifestFile, entry));
  try {
    const units = readCmapss(opts.testFile);
    const truth = readRulFile(opts.rulFile);
    const { order, windows } = lastWindows(entry, units);
    if (truth.length !== order.length)
      throw new EdgetwinError(ErrorCodes.BAD_REQUEST, `${opts.rulFile} has ${truth.length} lines for ${order.length} test engines`);
    const out = await model.predict(windows, order.length);
    let se = 0;
    let seRaw = 0;
    let ae = 0;
    let score = 0;
    let scoreRaw = 0;
    const predictions = order.map((unit, k) => {
      const predicted = out[k]!;
      const rul = truth[k]!;
      const d = predicted - Math.min(rul, entry.rulCap);
      se += d * d;
      ae += Math.abs(d);
      score += phm08(d);
      seRaw += (predicted - rul) ** 2;
      scoreRaw += phm08(predicted - rul);
      return { unit, cycles: units.get(unit)!.length, rul, predicted };
    });
    const n = order.length;
    return {
      model: entry.version,
      engines: n,
      rmse: Math.sqrt(se / n),
      phm08_score: score,
      rmse_uncapped: Math.sqrt(seRaw / n),
      phm08_score_uncapped: scoreRaw,
      mae: ae / n,
      predictions,
      ...(opts.trainFile ? { scalerCheck: scalerCheck(entry, opts.trainFile) } : {}),
    };
  } finally {
    await model.close();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      train: { type: 'string' },
      test: { type: 'string' },
      rul: { type: 'string' },
      manifest: { type: 'string' },
      model: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  if (!values.test || !values.rul) {
    console.error('usage: npm run eval:rul -- --test FILE --rul FILE [--train FILE] [--manifest FILE] [--model NAME] [--json]');
    process.exit(2);
  }
  const r = await evalRul({
    testFile: values.test,
    rulFile: values.rul,
    ...(values.train ? { trainFile: values.train } : {}),
    ...(values.manifest ? { manifestFile: values.manifest } : {}),
    ...(values.model ? { modelName: values.model } : {}),
  });
  console.log(`model ${r.model}: ${r.engines} engines`);
  console.log(
    `  RMSE (true life capped at the model's rulCap) ${r.rmse.toFixed(2)}   PHM08 score ${r.phm08_score.toFixed(1)}   MAE ${r.mae.toFixed(2)}`,
  );
  console.log(
    `  RMSE (raw true life)                        ${r.rmse_uncapped.toFixed(2)}   PHM08 score ${r.phm08_score_uncapped.toFixed(1)}`,
  );
  if (r.scalerCheck)
    console.log(
      `  scaling ${r.scalerCheck.matches ? 'matches' : 'DOES NOT match'} the training file (center shift ${r.scalerCheck.maxCenterShift.toFixed(4)} sd, scale ratio ${r.scalerCheck.maxScaleRatio.toFixed(4)})`,
    );
  if (values.json) {
    const { predictions: _p, ...figures } = r;
    console.log(JSON.stringify(figures));
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err) => {
    console.error(`eval:rul failed: ${errorMessage(err)}`);
    process.exit(1);
  });
}
