/**
 * The failure model on the device: time per asset window on one core, and the agent's whole
 * failure path (readings → asset steps → windows → one inference per batch → predictions).
 *
 *   npm run bench:rul [-- --data ../shared/cmapss/train_FD001.txt --calls 2000 --rounds 5 --json]
 *
 * - `window_ms_batch1`: one window per call (an asset completing a step on its own), median and
 *   p99 over `--calls` calls; the target is <= 1 ms.
 * - `window_us_batch256`: windows in calls of 256 (a replayed fleet, a backlog), per window.
 * - `predictor_readings_per_s`: a fleet replay (every engine of the file, all 24 columns, by cycle)
 *   through the FailurePredictor exactly as the agent runs it, batches of 5000 readings.
 * onnxruntime runs with one intra-op thread on the calling thread. Each figure is the median of
 * `--rounds` rounds; `--json` ends with one JSON object of the figures.
 */
import { existsSync, statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { assetsDefaults } from '../agent/assets/config.js';
import { failureDefaults } from '../agent/failure/config.js';
import { FailurePredictor } from '../agent/failure/failure-predictor.js';
import type { SourceReading } from '../agent/types.js';
import { CMAPSS_FEATURES, cmapssValue, readCmapss } from '../common/models/cmapss.js';
import { FailureModel } from '../common/models/failure-model.js';
import { modelPath, pickFailureModel, readManifest } from '../common/models/manifest.js';
import { mulberry32 } from '../common/random.js';
import { fromRoot } from '../models/eval/repo.js';
import { lastWindows } from '../models/eval/eval-rul.js';

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: fromRoot('../shared/cmapss/train_FD001.txt') },
    manifest: { type: 'string', default: fromRoot('models/manifest.json') },
    model: { type: 'string', default: '' },
    calls: { type: 'string', default: '2000' },
    rounds: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
  },
});

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const quantile = (xs: number[], q: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;

const entry = pickFailureModel(readManifest(values.manifest!), values.model!);
const path = modelPath(values.manifest!, entry);
const model = await FailureModel.load(entry, path);
const size = model.windowSize;

// Windows: the last window of every engine of the data file, or random scaled windows without it.
let windows: Float32Array;
let count: number;
if (existsSync(values.data!)) {
  const w = lastWindows(entry, readCmapss(values.data!));
  windows = w.windows;
  count = w.order.length;
} else {
  const r = mulberry32(1);
  count = 100;
  windows = Float32Array.from({ length: count * size }, () => (r() - 0.5) * 4);
}
const big = new Float32Array(256 * size);
for (let i = 0; i < 256; i++) big.set(windows.subarray((i % count) * size, ((i % count) + 1) * size), i * size);

const calls = Number(values.calls);
const rounds = Number(values.rounds);
const batch1Median: number[] = [];
const batch1P99: number[] = [];
const batch256: number[] = [];
for (let i = 0; i < 200; i++) await model.predict(windows.subarray((i % count) * size), 1); // warm-up
for (let round = 0; round < rounds; round++) {
  const times: number[] = [];
  for (let i = 0; i < calls; i++) {
    const t0 = process.hrtime.bigint();
    await model.predict(windows.subarray((i % count) * size), 1);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  batch1Median.push(median(times));
  batch1P99.push(quantile(times, 0.99));
  const t0 = process.hrtime.bigint();
  const n = Math.max(1, Math.floor(calls / 64));
  for (let i = 0; i < n; i++) await model.predict(big, 256);
  batch256.push(Number(process.hrtime.bigint() - t0) / 1e3 / (n * 256));
}
await model.close();

// The agent's path: a fleet replay through the predictor.
let predictorRate = NaN;
let predictions = 0;
if (existsSync(values.data!)) {
  const engines = [...readCmapss(values.data!).values()];
  const readings: SourceReading[] = [];
  const longest = Math.max(...engines.map((e) => e.length));
  for (let c = 0; c < longest; c++)
    for (const e of engines) {
      const row = e[c];
      if (!row) continue;
      CMAPSS_FEATURES.forEach((col, i) =>
        readings.push({ ts: row.cycle * 60_000, metric: `engine-${row.unit}.${col}`, value: cmapssValue(row, i), unit: '1' }),
      );
    }
  const rates: number[] = [];
  for (let round = 0; round < Math.min(rounds, 3); round++) {
    const p = await FailurePredictor.load(entry, path, failureDefaults, {
      ...assetsDefaults,
      discover: { pattern: '^(engine-[0-9]+)\\.(.+)$' },
    });
    const t0 = process.hrtime.bigint();
    predictions = 0;
    for (let i = 0; i < readings.length; i += 5000) {
      const b = readings.slice(i, i + 5000).map((r) => ({ ...r }));
      await p.score(b);
      predictions += b.length - Math.min(5000, readings.length - i);
    }
    rates.push(readings.length / (Number(process.hrtime.bigint() - t0) / 1e9));
    await p.close();
  }
  predictorRate = median(rates);
}

const figures = {
  model: entry.version,
  model_bytes: statSync(path).size,
  window_ms_batch1_median: +median(batch1Median).toFixed(4),
  window_ms_batch1_p99: +median(batch1P99).toFixed(4),
  window_us_batch256_median: +median(batch256).toFixed(2),
  predictor_readings_per_s: Math.round(predictorRate),
  predictor_predictions: predictions,
  rounds,
};
console.log(`failure model ${entry.version} (${figures.model_bytes} bytes), one core, median of ${rounds} rounds:`);
console.log(`  one window per call:  ${figures.window_ms_batch1_median} ms (p99 ${figures.window_ms_batch1_p99} ms)   target <= 1 ms`);
console.log(`  256 windows per call: ${figures.window_us_batch256_median} µs per window`);
console.log(`  agent path (fleet replay, ${predictions} predictions): ${figures.predictor_readings_per_s} readings/s`);
if (values.json) console.log(JSON.stringify(figures));
