/**
 * The failure (remaining-useful-life) model, reproducibly, in one command:
 *
 *   npm run train:rul [-- --version 1.2.0 --data ../shared/cmapss/train_FD001.txt --seeds 1,2 --folds 5
 *                        --epochs 60 --members 2 --window 30 --cap 125 --jobs 1 --work var/models/rul
 *                        --skip-cv | --cv-only | --reuse-cv --register https://cloud:8443]
 *
 * 1. engine-level cross-validation: for each seed, the engines are split into folds; each fold is
 *    held out, trained without (train.py), cut before failure like the official test set and
 *    scored by `npm run eval:rul`'s code through onnxruntime (RMSE on the last cycle, PHM08);
 * 2. the shipped model, trained on every engine;
 * 3. its models/manifest.json entry (kind `failure`): digest, shapes, recipe, threshold, the
 *    cross-validated figures, and drift references (inputs over every cycle, outputs and errors
 *    from the folds' out-of-fold predictions); and models/rul/MODEL_CARD.md from that entry;
 * 4. with --register, the new version is uploaded to the cloud registry as a candidate (not
 *    promoted anywhere): EDGETWIN_TOKEN (an admin token) from the environment.
 *
 * `--cv-only` stops after step 1 (nothing in models/ changes): compare recipes by their CV, each in
 * its own `--work` directory, then ship the best with `--reuse-cv` and the same `--work` (which
 * refuses if the training options differ from the ones that were cross-validated).
 *
 * `--jobs N` runs N trainings at once (each one thread; the result does not depend on N).
 *
 * Only training needs Python (Debian's python3-torch and python3-onnx, or $PYTHON); the agent
 * and CI use the committed .onnx and manifest. Held-out files go under var/ (never the repo).
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { readCmapss, type CmapssRow } from '../../common/models/cmapss.js';
import { sha256, type Manifest } from '../../common/models/manifest.js';
import { evalRul } from '../eval/eval-rul.js';
import { fromRoot } from '../eval/repo.js';
import { CUT_MAX_RUL, CUT_MIN_RUL, folds, summarise, writeHeldOut, type FoldResult } from './cv.js';
import { describe, train, type TrainOptions, type TrainReport } from './entry.js';
import { registerCandidate } from '../registry-upload.js';
import { DriftReference } from './reference.js';
import { writeModelCard } from './card.js';

/**
 * Cycles a held-out engine has seen at least: FD001's official test set's shortest history (31).
 * Fixed, not window + 1, so that recipes with different windows are scored on the same cut engines
 * (a longer window pads the short histories, as the agent does).
 */
const HELD_OUT_MIN_CYCLES = 31;

/** Said on the card: the recipe was picked on the very folds whose figures it reports. */
const SELECTION =
  'the recipe (network width, ensemble size, window, epochs) was chosen by comparing candidates on these same folds (build.ts --cv-only), so its figures are somewhat optimistic; no separate test set was used';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      version: { type: 'string', default: '1.2.0' },
      data: { type: 'string', default: fromRoot('../shared/cmapss/train_FD001.txt') },
      seeds: { type: 'string', default: '1,2' },
      folds: { type: 'string', default: '5' },
      epochs: { type: 'string', default: '60' },
      members: { type: 'string', default: '2' },
      window: { type: 'string', default: '30' },
      // The piecewise-linear target's cap; evaluation caps the true life at the same value (entry.rulCap).
      cap: { type: 'string', default: '125' },
      seed: { type: 'string', default: '7' },
      jobs: { type: 'string', default: '1' },
      work: { type: 'string', default: fromRoot('var/models/rul') },
      'skip-cv': { type: 'boolean', default: false },
      // Reuse the cross-validation of an earlier run (<work>/cv.json) and train only the shipped model.
      'reuse-cv': { type: 'boolean', default: false },
      'cv-only': { type: 'boolean', default: false },
      register: { type: 'string' },
    },
  });
  const name = 'rul';
  const version = `${name}-${values.version}`;
  const modelsDir = fromRoot('models');
  const onnxFile = join(modelsDir, name, `${version}.onnx`);
  const work = values.work!;
  const units = readCmapss(values.data!);
  const unitIds = [...units.keys()];
  const reference = new DriftReference();
  const jobs = Math.max(1, Number(values.jobs));
  const options: TrainOptions = { epochs: values.epochs!, members: values.members!, window: values.window!, cap: values.cap! };
  // Trained under <work> and copied into models/ at the end: the committed file and its manifest entry change together.
  const finalTraining = (): Promise<TrainReport> => {
    console.error(`[final] training on all ${unitIds.length} engines`);
    return train(values.data!, join(work, 'final.onnx'), join(work, 'final-train.json'), [], options, Number(values.seed));
  };
  let final: Promise<TrainReport> | undefined;

  let cv: Record<string, unknown> | undefined;
  const cvFile = join(work, 'cv.json');
  if (values['reuse-cv']) {
    const kept = JSON.parse(readFileSync(cvFile, 'utf8')) as {
      cv: Record<string, unknown>;
      seeds: string;
      folds: string;
      options?: TrainOptions;
      seed?: string;
    };
    // The shipped model must be the recipe that was cross-validated, or the card's figures are someone else's.
    const now = JSON.stringify({ ...options, seed: values.seed });
    const then = JSON.stringify({ ...kept.options, seed: kept.seed });
    if (now !== then) throw new Error(`--reuse-cv: ${cvFile} cross-validated ${then}, not ${now}`);
    cv = kept.cv;
    values.seeds = kept.seeds;
    values.folds = kept.folds;
    await reference.addPredictionsFromCv(work, name, version, units);
  } else if (!values['skip-cv']) {
    const results: FoldResult[] = [];
    const pooled = { se: 0, seRaw: 0, phm08: 0, n: 0 };
    const seeds = values.seeds!.split(',').map(Number);
    const runs = seeds.flatMap((seed) =>
      folds(unitIds, Number(values.folds), seed).map((held, f, all) => ({
        seed,
        f,
        k: all.length,
        held,
        dir: join(work, 'cv', `seed-${seed}`, `fold-${f}`),
      })),
    );
    // Every fold's training (and the final one) is independent: run them `--jobs` at a time, then score in order.
    if (!values['cv-only']) final = inPool(jobs, () => finalTraining());
    const reports = await Promise.all(
      runs.map((r) =>
        inPool(jobs, () => {
          console.error(`[cv] seed ${r.seed} fold ${r.f + 1}/${r.k}: ${r.held.length} engines held out`);
          return train(
            values.data!,
            join(r.dir, 'model.onnx'),
            join(r.dir, 'train.json'),
            r.held,
            options,
            Number(values.seed) + r.seed * 100 + r.f,
          );
        }),
      ),
    );
    for (const [i, { seed, f, held, dir }] of runs.entries()) {
      const entry = await describe(name, `${version}-cv`, join(dir, 'model.onnx'), dir, reports[i]!);
      const out = writeHeldOut(dir, units, held, seed * 1000 + f, HELD_OUT_MIN_CYCLES);
      const r = await evalRul({ testFile: out.test, rulFile: out.rul, model: { entry, path: join(dir, 'model.onnx') } });
      results.push({ seed, fold: f, engines: r.engines, rmse: r.rmse, phm08: r.phm08_score, rmseUncapped: r.rmse_uncapped });
      pooled.se += r.rmse ** 2 * r.engines;
      pooled.seRaw += r.rmse_uncapped ** 2 * r.engines;
      pooled.phm08 += r.phm08_score;
      pooled.n += r.engines;
      console.error(
        `[cv] seed ${seed} fold ${f + 1}: RMSE ${r.rmse.toFixed(2)}  PHM08 ${r.phm08_score.toFixed(1)}  (raw life: RMSE ${r.rmse_uncapped.toFixed(2)})`,
      );
      // Out-of-fold predictions of the first seed (each engine once) are the output/error reference.
      if (seed === seeds[0])
        await reference.addPredictions(
          entry,
          join(dir, 'model.onnx'),
          held.map((u) => units.get(u)!),
        );
    }
    cv = summarise(results, pooled);
    writeFileSync(cvFile, JSON.stringify({ cv, seeds: values.seeds, folds: values.folds, options, seed: values.seed }, null, 2) + '\n');
    if (values['cv-only']) {
      console.log(JSON.stringify({ options, ...cv, perFold: undefined }));
      return;
    }
  }

  const report = await (final ?? finalTraining());
  mkdirSync(join(modelsDir, name), { recursive: true });
  copyFileSync(join(work, 'final.onnx'), onnxFile);
  let entry = await describe(name, version, onnxFile, modelsDir, report);
  const rows: CmapssRow[][] = [...units.values()];
  if (reference.empty) await reference.addPredictions(entry, onnxFile, rows);
  entry = {
    ...entry,
    drift: reference.section(entry, rows, cv !== undefined),
    training: {
      data: `NASA C-MAPSS FD001 training set (../shared/cmapss/train_FD001.txt, sha256 ${sha256(readFileSync(values.data!))}): all ${report.engines} engines, every cycle`,
      protocol: `target min(remaining cycles, ${report.cap}); features ${report.features.join(' ')} scaled with the training engines' mean and standard deviation; windows of ${report.window} cycles (shorter histories repeat their first cycle)`,
      trainer: 'models/rul/train.py (PyTorch, MSE, AdamW, cosine schedule, one thread, fixed seeds) via models/rul/build.ts',
      framework: report.framework,
      exportedWith: 'torch.onnx.export, opset 13',
      parameters: report.parameters,
      trainWindows: report.train_windows,
      hyperparameters: report.hyperparameters,
    },
    metrics: {
      ...(cv ? { crossValidation: { protocol: cvProtocol(values.seeds!, values.folds!), selection: SELECTION, ...cv } } : {}),
      finalTrainRmse: report.final['train_rmse'],
      // PyTorch's predictions for a few windows; test/models/rul-model.test.ts checks the agent's code gives the same.
      torchReference: report.checks,
    },
  };

  const manifestFile = join(modelsDir, 'manifest.json');
  const manifest: Manifest = existsSync(manifestFile) ? (JSON.parse(readFileSync(manifestFile, 'utf8')) as Manifest) : { models: [] };
  manifest.models = [...manifest.models.filter((m) => m.name !== name), entry];
  writeFileSync(manifestFile, JSON.stringify(manifest, null, 2) + '\n');
  console.error(`[manifest] ${version} sha256 ${entry.sha256} (${entry.bytes} bytes)`);
  writeModelCard(join(modelsDir, name, 'MODEL_CARD.md'), entry);
  if (cv) console.log(JSON.stringify({ model: version, ...cv, perFold: undefined }));
  if (values.register) await registerCandidate(values.register, entry, readFileSync(onnxFile));
}

let running = 0;
const waiting: (() => void)[] = [];
/** Runs `task` once fewer than `n` pooled tasks run. */
async function inPool<T>(n: number, task: () => Promise<T>): Promise<T> {
  while (running >= n) await new Promise<void>((r) => waiting.push(r));
  running++;
  try {
    return await task();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

function cvProtocol(seeds: string, k: string): string {
  return `engine-level ${k}-fold cross-validation, seeds ${seeds}: each held-out engine cut ${CUT_MIN_RUL}–${CUT_MAX_RUL} cycles before failure (at least ${HELD_OUT_MIN_CYCLES} cycles seen, like FD001's official test set; a window longer than the history is padded); RMSE and PHM08 on its last cycle against the true life capped at the model's rulCap, through npm run eval:rul's code`;
}

await main();
