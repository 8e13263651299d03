/**
 * NAB evaluation of the agent's real scoring path.
 *
 *   npm run eval:nab -- --data <dir> --out <dir> [--windows <file>] [--profiles <file>]
 *                       [--manifest <file>] [--model <name>] [--plots] [--json]
 *
 * Every `<data>/<category>/<file>.csv` is fed, in agent-sized batches, through the same OnnxScorer
 * the agent runs (one session, one stream per file), and through NAB's windowed-Gaussian baseline.
 * Both write NAB result files `<out>/<detector>/<category>/<detector>_<file>.csv`; files with windows
 * are scored with NAB's scoring for each cost profile (threshold optimised over the corpus, as NAB
 * does) and, for our detector, also at the model's shipped alert threshold.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { ScoringConfig } from '../../agent/scoring/config.js';
import { modelPath, pickModel, readManifest, type ModelEntry } from '../../common/models/manifest.js';
import { OnnxScorer } from '../../agent/scoring/onnx-scorer.js';
import type { SourceReading } from '../../agent/types.js';
import { EdgetwinError, ErrorCodes, errorMessage } from '../../common/errors.js';
import { Progress, progressModeFromEnv } from '../../common/progress.js';
import { listNabFiles, readNabProfiles, readNabSeries, readNabWindows, windowTimes, writeNabResult, type NabSeries } from './nab-data.js';
import {
  optimiseThreshold,
  scoreAtThreshold,
  windowsToRows,
  type CostProfile,
  type ScoredSeries,
  type ThresholdResult,
} from './nab-score.js';
import { categoryOf, chooseThreshold, crossValidate, DEFAULT_RULE, fileOf, type CvResult } from './cross-validation.js';
import { writePlot } from './plot.js';
import { fromRoot } from './repo.js';
import { windowedGaussianScores } from './windowed-gaussian.js';

/** NAB v1.1's cost profiles, used when no profiles file is found. */
export const NAB_PROFILES: Record<string, CostProfile> = {
  standard: { tpWeight: 1, fnWeight: 1, fpWeight: 0.11 },
  reward_low_FP_rate: { tpWeight: 1, fnWeight: 1, fpWeight: 0.22 },
  reward_low_FN_rate: { tpWeight: 1, fnWeight: 2, fpWeight: 0.11 },
};

export const DETECTOR = 'edgetwin';
export const BASELINE = 'windowedGaussian';

export interface EvalOptions {
  data: string;
  out: string;
  windows?: string;
  profiles?: string;
  /** The model to run: an explicit entry and file, or a manifest (default models/manifest.json). */
  model?: { entry: ModelEntry; path: string };
  manifest?: string;
  modelName?: string;
  scoring?: Partial<ScoringConfig>;
  /** Readings per score() call, as the agent batches them. */
  batch?: number;
  plots?: boolean;
  /** One line per file, with how many files are done out of how many. */
  progress?: (line: string, done: number, total: number) => void;
}

export interface EvalResult {
  model: string;
  files: Array<{ key: string; rows: number; windows: number | null; results: string[] }>;
  /** Per detector, per profile: the best threshold over the corpus and its score. */
  scores: Record<string, Record<string, ThresholdResult>>;
  /** Our detector at the model's shipped alert threshold, per profile. */
  shipped: { threshold: number; scores: Record<string, ThresholdResult> };
  /**
   * How the threshold carries to unseen files (cross-validation.ts), per profile: leave one
   * category out and leave one file out, the threshold chosen on the training folds by the rule
   * that picks the shipped one; `nabRule`: the same with NAB's own best-threshold choice.
   */
  cv: Record<string, { category: CvResult; file: CvResult; nabRule: { category: number; file: number } }>;
  /** What the threshold rule picks on the whole corpus, per profile (what `train:model` ships for standard). */
  ruleThresholds: Record<string, number>;
  /** artificialNoAnomaly files (no windows: every detection is a false positive) at the shipped threshold. */
  noAnomaly: { files: number; falsePositives: number };
  /** Where the points go: each scored file at the shipped threshold, first profile (lossBreakdown). */
  perFile: FileLoss[];
  windowsFile: string;
}

/** One file at the shipped threshold: its detections and the normalised points it costs the corpus. */
export interface FileLoss {
  key: string;
  windows: number;
  tp: number;
  fp: number;
  fn: number;
  /** Corpus points (normalised, as in the table) lost on this file against a perfect detector: late catches, misses, false positives. */
  lost: number;
}

/**
 * How many corpus points each file costs at `threshold`: a perfect detector scores tpWeight per
 * window and nothing else, so a file's loss is (tpWeight × its windows − its raw score) in
 * normalised units. The losses add up to 100 − the corpus score; sorted, they say where to look.
 */
export function lossBreakdown(corpus: readonly ScoredSeries[], profile: CostProfile, threshold: number): FileLoss[] {
  const windows = corpus.reduce((n, s) => n + s.windows.length, 0);
  const unit = windows > 0 ? 100 / ((profile.tpWeight + profile.fnWeight) * windows) : 0;
  return corpus
    .map((s) => {
      const r = scoreAtThreshold([s], profile, threshold);
      const lost = (profile.tpWeight * s.windows.length - r.raw) * unit;
      return { key: s.name, windows: s.windows.length, tp: r.tp, fp: r.fp, fn: r.fn, lost };
    })
    .sort((a, b) => b.lost - a.lost || a.key.localeCompare(b.key));
}

/** Scores one series through the scorer exactly as the agent would, batch by batch. */
export async function scoreSeries(scorer: OnnxScorer, series: NabSeries, batch: number): Promise<Float64Array> {
  const scores = new Float64Array(series.values.length);
  for (let at = 0; at < series.values.length; at += batch) {
    const readings: SourceReading[] = [];
    for (let i = at; i < Math.min(at + batch, series.values.length); i++) {
      readings.push({ ts: series.times[i]!, metric: series.key, value: series.values[i]!, unit: '' });
    }
    await scorer.score(readings);
    readings.forEach((r, j) => (scores[at + j] = r.score ?? 0));
  }
  return scores;
}

async function openScorer(opts: EvalOptions): Promise<OnnxScorer> {
  if (opts.model) return OnnxScorer.load(opts.model.entry, opts.model.path, opts.scoring);
  const manifestFile = opts.manifest ?? fromRoot('models/manifest.json');
  const entry = pickModel(readManifest(manifestFile), opts.modelName ?? '');
  return OnnxScorer.load(entry, modelPath(manifestFile, entry), opts.scoring);
}

function profilesFor(opts: EvalOptions, windowsFile: string): Record<string, CostProfile> {
  if (opts.profiles) return readNabProfiles(opts.profiles);
  const beside = join(dirname(windowsFile), 'profiles.json');
  return existsSync(beside) ? readNabProfiles(beside) : NAB_PROFILES;
}

export async function evalNab(opts: EvalOptions): Promise<EvalResult> {
  const windowsFile = resolve(opts.windows ?? fromRoot('../shared/nab/combined_windows.json'));
  const windows = readNabWindows(windowsFile);
  const profiles = profilesFor(opts, windowsFile);
  const keys = listNabFiles(opts.data);
  if (keys.length === 0) throw new EdgetwinError(ErrorCodes.USAGE, `no <category>/<file>.csv under ${opts.data}`);
  const scorer = await openScorer(opts);
  const corpus: Record<string, ScoredSeries[]> = { [DETECTOR]: [], [BASELINE]: [] };
  const files: EvalResult['files'] = [];
  try {
    for (const [n, key] of keys.entries()) {
      const started = Date.now();
      const series = readNabSeries(opts.data, key);
      const ours = await scoreSeries(scorer, series, opts.batch ?? 1000);
      const base = windowedGaussianScores(series.values);
      const results = [writeNabResult(opts.out, DETECTOR, series, ours), writeNabResult(opts.out, BASELINE, series, base)];
      const known = windows[key];
      if (known) {
        const rows = windowsToRows(series.times, windowTimes(known));
        corpus[DETECTOR]!.push({ name: key, scores: ours, windows: rows });
        corpus[BASELINE]!.push({ name: key, scores: base, windows: rows });
        if (opts.plots) results.push(writePlot(join(opts.out, 'plots'), series, ours, rows, scorer.alertThreshold));
      }
      files.push({ key, rows: series.values.length, windows: known ? known.length : null, results });
      opts.progress?.(
        `[${n + 1}/${keys.length}] ${key}: ${series.values.length} rows, ${known ? `${known.length} windows` : 'no windows (not scored)'}, ${Date.now() - started} ms`,
        n + 1,
        keys.length,
      );
    }
  } finally {
    await scorer.close();
  }
  const scores: EvalResult['scores'] = {};
  for (const [det, c] of Object.entries(corpus)) {
    scores[det] = Object.fromEntries(Object.entries(profiles).map(([p, w]) => [p, optimiseThreshold(c, w)]));
  }
  const threshold = scorer.alertThreshold;
  const shipped = {
    threshold,
    scores: Object.fromEntries(Object.entries(profiles).map(([p, w]) => [p, scoreAtThreshold(corpus[DETECTOR]!, w, threshold)])),
  };
  const ours = corpus[DETECTOR]!;
  const nab = { smoothing: 0 };
  const cv: EvalResult['cv'] = {};
  const ruleThresholds: Record<string, number> = {};
  for (const [p, w] of Object.entries(profiles)) {
    cv[p] = {
      category: crossValidate(ours, w, categoryOf, DEFAULT_RULE),
      file: crossValidate(ours, w, fileOf, DEFAULT_RULE),
      nabRule: { category: crossValidate(ours, w, categoryOf, nab).score, file: crossValidate(ours, w, fileOf, nab).score },
    };
    ruleThresholds[p] = chooseThreshold(ours, w, DEFAULT_RULE);
  }
  const quiet = ours.filter((s) => categoryOf(s) === 'artificialNoAnomaly');
  const firstProfile = Object.values(profiles)[0]!;
  const noAnomaly = { files: quiet.length, falsePositives: scoreAtThreshold(quiet, firstProfile, threshold).fp };
  const perFile = lossBreakdown(ours, firstProfile, threshold);
  return { model: scorer.modelVersion, files, scores, shipped, cv, ruleThresholds, noAnomaly, perFile, windowsFile };
}

export function formatTable(r: EvalResult): string {
  const profiles = Object.keys(r.scores[DETECTOR] ?? {});
  const pad = (s: string, n: number): string => s.padEnd(n);
  const lines = [`NAB normalised scores (${r.files.filter((f) => f.windows !== null).length} scored files, windows: ${r.windowsFile})`];
  lines.push(pad('detector', 46) + profiles.map((p) => pad(p, 20)).join(''));
  const row = (name: string, res: Record<string, ThresholdResult>): string =>
    pad(name, 46) + profiles.map((p) => pad(`${res[p]!.normalised.toFixed(1)} (tp ${res[p]!.tp} fp ${res[p]!.fp})`, 20)).join('');
  const best = r.scores[DETECTOR]!;
  const text = (f: (p: string) => string): string => profiles.map((p) => pad(f(p), 20)).join('');
  lines.push(row(`${DETECTOR} ${r.model}, best threshold`, best));
  lines.push(row(`${DETECTOR} at shipped ${r.shipped.threshold.toFixed(4)}`, r.shipped.scores));
  lines.push(pad('  gap: best − shipped', 46) + text((p) => (best[p]!.normalised - r.shipped.scores[p]!.normalised).toFixed(1)));
  const cvRow = (name: string, pick: (p: string) => CvResult): string =>
    pad(name, 46) + text((p) => `${pick(p).score.toFixed(1)} (tp ${pick(p).tp} fp ${pick(p).fp})`);
  lines.push(cvRow('  CV, leave one category out', (p) => r.cv[p]!.category));
  lines.push(cvRow('  CV, leave one file out', (p) => r.cv[p]!.file));
  lines.push(
    pad("  CV with NAB's own threshold choice (cat/file)", 46) +
      text((p) => `${r.cv[p]!.nabRule.category.toFixed(1)} / ${r.cv[p]!.nabRule.file.toFixed(1)}`),
  );
  lines.push(row(`${BASELINE}, best threshold`, r.scores[BASELINE]!));
  lines.push(
    `artificialNoAnomaly: ${r.noAnomaly.falsePositives} false positives in ${r.noAnomaly.files} files at the shipped threshold; ` +
      `the threshold rule picks ${profiles.map((p) => `${p} ${r.ruleThresholds[p]!.toFixed(4)}`).join(', ')} on this corpus`,
  );
  lines.push(`points lost per file at the shipped threshold (${profiles[0]}; they add up to 100 − its score):`);
  for (const f of r.perFile) {
    lines.push(`  ${pad(f.key, 62)}${f.lost.toFixed(1).padStart(5)}  (windows ${f.windows}: tp ${f.tp} fn ${f.fn}, fp ${f.fp})`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      data: { type: 'string' },
      out: { type: 'string' },
      windows: { type: 'string' },
      profiles: { type: 'string' },
      manifest: { type: 'string' },
      model: { type: 'string' },
      plots: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  if (!values.data || !values.out) {
    console.error(
      'usage: npm run eval:nab -- --data <dir> --out <dir> [--windows <file>] [--profiles <file>] [--manifest <file>] [--model <name>] [--plots] [--json]',
    );
    process.exit(2);
  }
  const bar =
    process.stderr.isTTY && progressModeFromEnv() !== 'lines' ? new Progress('eval:nab', 0, { mode: progressModeFromEnv() }) : undefined;
  const result = await evalNab({
    data: values.data,
    out: values.out,
    windows: values.windows,
    profiles: values.profiles,
    manifest: values.manifest,
    modelName: values.model,
    plots: values.plots,
    // A bar on a terminal; elsewhere the per-file lines, which say more than a percentage.
    progress: (line, done, total) => (bar ? bar.update(done, `${done}/${total} files`, false, total) : console.error(line)),
  });
  bar?.done();
  console.log(formatTable(result));
  if (values.json) {
    const { model, scores, shipped, cv, ruleThresholds, noAnomaly, perFile } = result;
    console.log(JSON.stringify({ model, scores, shipped, cv, ruleThresholds, noAnomaly, perFile }));
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err) => {
    console.error(`eval:nab failed: ${errorMessage(err)}`);
    process.exit(1);
  });
}
