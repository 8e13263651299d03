/**
 * Scoring throughput and memory of the agent's OnnxScorer on one core.
 *
 *   npm run bench:scoring [-- --streams 100 --batch 1000 --readings 2000000 --manifest models/manifest.json --json]
 *   npm run bench:scoring -- --sessions [--quick] [--batch 5000 --readings 1000000 --rounds 3 --json]
 *   npm run bench:scoring -- --engine onnxruntime|small-graph|auto
 *
 * --sessions compares the engines (--quick: only them), onnxruntime session options and rows per call side by side: each variant
 * runs in a fresh process (RSS is per process) with --optimize-for-size as the agent runs,
 * variants alternate round by round, and the table shows medians. --session '{"enableCpuMemArena":false}', --threads and --max-batch-rows set one
 * variant by hand.
 *
 * Then the cost an alert adds: its explanation (agent/scoring/explain.ts: 2^6 coalition rows in one
 * inference call, exact Shapley values), timed one alert at a time: p50 and p99 in ms.
 *
 * The agent's path exactly: batches of readings of many metrics go through score(); onnxruntime
 * runs with one intra-op thread on the calling thread, so everything happens on one core. Reading
 * objects are made before the clock starts (the agent has them already) and reused batch after
 * batch with advancing timestamps. RSS is measured before the model is loaded and after the run.
 */
import { spawnSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Explainer, type ExplainRequest } from '../agent/scoring/explain.js';
import { OnnxScorer } from '../agent/scoring/onnx-scorer.js';
import { modelPath, pickModel, readManifest } from '../common/models/manifest.js';
import { INFERENCE_ENGINES, OnnxModel, type InferenceEngine } from '../common/models/onnx-model.js';
import { featureCount } from '../common/models/features.js';
import { DEFAULT_SCORING } from '../agent/scoring/config.js';
import { detectorSettings } from '../agent/scoring/onnx-scorer.js';
import { StreamDetector } from '../agent/scoring/stream-detector.js';
import type { SourceReading } from '../agent/types.js';
import { createRegistry, type Registry } from '../common/metrics.js';
import type { SessionTuning } from '../common/models/onnx-model.js';
import { fromRoot } from '../models/eval/repo.js';

const MB = 1024 * 1024;

async function alertCount(registry: Registry): Promise<number> {
  const m = await registry.getSingleMetric('edgetwin_scoring_alerts_total')?.get();
  return m?.values.reduce((s, v) => s + v.value, 0) ?? 0;
}
const rssMb = (): number => process.memoryUsage().rss / MB;
/** Peak RSS of this process so far (VmHWM), MB. */
function peakRssMb(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

function makeBatches(streams: number, batch: number, count: number): SourceReading[][] {
  const out: SourceReading[][] = [];
  let i = 0;
  for (let b = 0; b < count; b++) {
    const readings: SourceReading[] = [];
    for (let j = 0; j < batch; j++, i++) {
      const s = i % streams;
      const k = Math.floor(i / streams);
      // A daily wave with noise and a per-stream scale: values the model finds ordinary.
      const value = (s + 1) * (50 + 20 * Math.sin((2 * Math.PI * k) / 288) + 3 * Math.sin(k * 12.9898 + s));
      readings.push({ ts: 1_700_000_000_000 + k * 300_000, metric: `m${s}`, value, unit: '' });
    }
    out.push(readings);
  }
  return out;
}

const { values } = parseArgs({
  options: {
    streams: { type: 'string', default: '100' },
    batch: { type: 'string', default: '1000' },
    readings: { type: 'string', default: '2000000' },
    manifest: { type: 'string', default: fromRoot('models/manifest.json') },
    threads: { type: 'string', default: '1' },
    engine: { type: 'string', default: 'auto' },
    'max-batch-rows': { type: 'string' },
    session: { type: 'string', default: '{}' },
    sessions: { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
  },
});

type Figures = Record<string, number | string>;

function engineArg(): InferenceEngine {
  const e = values.engine as InferenceEngine;
  if (!INFERENCE_ENGINES.includes(e)) throw new Error(`--engine: one of ${INFERENCE_ENGINES.join(', ')}`);
  return e;
}

/**
 * Milliseconds one alert's explanation adds, p50 and p99 over `n` alerts explained one at a time
 * (the worst case: an alert alone in its batch), on varied feature rows.
 */
async function explainCost(n: number): Promise<{ p50: number; p99: number; cpuP50: number; cpuP99: number }> {
  const entry = pickModel(readManifest(values.manifest!), '');
  const model = await OnnxModel.load(entry, modelPath(values.manifest!, entry), { engine: engineArg() });
  const explainer = new Explainer(model);
  const width = model.featureCount;
  const times: number[] = [];
  // CPU time too: on a shared machine a wall-clock p99 is mostly the scheduler's.
  const cpuTimes: number[] = [];
  try {
    for (let i = 0; i < n + 50; i++) {
      const row = Float32Array.from({ length: width }, (_, c) => Math.sin(i * 0.7 + c) * 3);
      const base = Float32Array.from({ length: width }, (_, c) => Math.cos(c) * 0.1);
      const request: ExplainRequest = {
        row,
        base,
        head: i % 2,
        y: 8 + (i % 5),
        yBase: 0.1,
        divisor: 1.2,
        driver: i % 2 ? 'level' : 'step',
      };
      const c0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      await explainer.explain([request]);
      // The first 50 warm the JIT and onnxruntime's arena.
      if (i >= 50) {
        times.push(Number(process.hrtime.bigint() - t0) / 1e6);
        const c = process.cpuUsage(c0);
        cpuTimes.push((c.user + c.system) / 1000);
      }
    }
  } finally {
    await model.close();
  }
  times.sort((a, b) => a - b);
  cpuTimes.sort((a, b) => a - b);
  return {
    p50: times[Math.floor(n * 0.5)]!,
    p99: times[Math.floor(n * 0.99)]!,
    cpuP50: cpuTimes[Math.floor(n * 0.5)]!,
    cpuP99: cpuTimes[Math.floor(n * 0.99)]!,
  };
}

/**
 * Bytes of scoring state per stream, exactly: the JS heap and typed arrays that 2000 streams'
 * detectors hold once every part of them exists (after 3 days of 5-minute readings each).
 */
function stateBytesPerStream(): number {
  const entry = pickModel(readManifest(values.manifest!), '');
  const settings = detectorSettings(entry, DEFAULT_SCORING);
  const used = (): number => {
    global.gc?.();
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  const n = 2000;
  const before = used();
  const streams = Array.from({ length: n }, () => new StreamDetector(entry.featureRecipe, featureCount(entry.featureRecipe), settings));
  const out = Float32Array.from([0, 0, 0, 0]);
  const row = new Float32Array(featureCount(entry.featureRecipe));
  for (let i = 0; i < 864; i++) {
    for (const s of streams) {
      const ts = 1_700_000_000_000 + i * 300_000;
      const v = Math.sin(i / 20);
      if (s.features.ready()) s.finish(ts, v, out, 0, { last: s.features.last(), mean: s.features.centre(), spread: s.features.scale() });
      s.learnBaseline(row, 0);
      s.features.push(ts, v);
    }
  }
  const bytes = (used() - before) / n;
  streams.length = 0;
  return bytes;
}

async function run(): Promise<Figures> {
  const streams = Number(values.streams);
  const batch = Number(values.batch);
  const total = Number(values.readings);
  const session = JSON.parse(values.session!) as SessionTuning;
  // A pool of batches covering 2 days of every stream, reused with advancing time.
  const poolBatches = Math.max(1, Math.ceil((streams * 576) / batch));
  const pool = makeBatches(streams, batch, poolBatches);
  const span = (poolBatches * batch) / streams;
  global.gc?.();
  const rssBefore = rssMb();

  const registry = createRegistry('bench');
  const maxBatchRows = values['max-batch-rows'] ? { maxBatchRows: Number(values['max-batch-rows']) } : {};
  const scorer = await OnnxScorer.fromConfig(
    { manifestFile: values.manifest!, threads: Number(values.threads), engine: engineArg(), ...maxBatchRows },
    { registry, session },
  );
  const rssModel = rssMb();
  const next = (b: number): SourceReading[] => {
    const readings = pool[b % poolBatches]!;
    // Each reuse is one lap later in time, so every stream keeps moving forward.
    if (b >= poolBatches) for (const r of readings) r.ts += span * 300_000;
    return readings;
  };
  // Warm-up: a full lap, so every stream is past its learning period and the JIT is warm.
  for (let b = 0; b < poolBatches; b++) await scorer.score(next(b));
  const alertsBefore = await alertCount(registry);

  const batches = Math.ceil(total / batch);
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let b = 0; b < batches; b++) await scorer.score(next(poolBatches + b));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const rssAfter = rssMb();
  const alerts = (await alertCount(registry)) - alertsBefore;
  await scorer.close();
  const explain = await explainCost(1000);
  const perStream = stateBytesPerStream();

  return {
    model: scorer.modelVersion,
    engine: scorer.engine,
    streams,
    batch_readings: batch,
    readings: batches * batch,
    seconds: +seconds.toFixed(3),
    readings_per_s: Math.round((batches * batch) / seconds),
    us_per_reading: +((seconds * 1e6) / (batches * batch)).toFixed(3),
    cpu_cores_used: +((cpu.user + cpu.system) / 1e6 / seconds).toFixed(2),
    // Readings per second of CPU time: the one-core figure even when the machine is shared.
    readings_per_cpu_s: Math.round((batches * batch) / ((cpu.user + cpu.system) / 1e6)),
    rss_mb_before: +rssBefore.toFixed(1),
    rss_mb_model_loaded_added: +(rssModel - rssBefore).toFixed(1),
    rss_mb_added: +(rssAfter - rssBefore).toFixed(1),
    // The peak also covers the warm-up and everything before the model (node, modules).
    rss_mb_peak: +peakRssMb().toFixed(1),
    kib_per_stream_approx: +(((rssAfter - rssModel) * 1024) / streams).toFixed(1),
    // Measured apart (stateBytesPerStream): what one stream's scoring state holds, exactly.
    kib_per_stream_state: +(perStream / 1024).toFixed(2),
    alert_rate_percent: +((100 * alerts) / (batches * batch)).toFixed(4),
    explain_ms_p50: +explain.p50.toFixed(3),
    explain_ms_p99: +explain.p99.toFixed(3),
    explain_cpu_ms_p50: +explain.cpuP50.toFixed(3),
    explain_cpu_ms_p99: +explain.cpuP99.toFixed(3),
    // Wall-clock figures above depend on the machine's load: it is stated with them.
    load_avg_1m: +loadavg()[0]!.toFixed(2),
  };
}

/** One variant of --sessions: a label and the arguments that make it. */
interface Variant {
  label: string;
  args: string[];
}

const ORT = ['--engine', 'onnxruntime'];
const VARIANTS: Variant[] = [
  { label: 'engine auto (the small graph), maxBatchRows 1024', args: [] },
  { label: 'engine onnxruntime: defaults (arena on, mem pattern on, 1 thread, sequential)', args: ORT },
  { label: 'onnxruntime, enableCpuMemArena: false', args: [...ORT, '--session', '{"enableCpuMemArena":false}'] },
  { label: 'onnxruntime, enableMemPattern: false', args: [...ORT, '--session', '{"enableMemPattern":false}'] },
  { label: 'onnxruntime, arena and mem pattern off', args: [...ORT, '--session', '{"enableCpuMemArena":false,"enableMemPattern":false}'] },
  { label: 'onnxruntime, graphOptimizationLevel: disabled', args: [...ORT, '--session', '{"graphOptimizationLevel":"disabled"}'] },
  { label: 'onnxruntime, intraOpNumThreads: 2 (threads: 2)', args: [...ORT, '--threads', '2'] },
  {
    label: 'onnxruntime, interOpNumThreads: 2, parallel',
    args: [...ORT, '--session', '{"interOpNumThreads":2,"executionMode":"parallel"}'],
  },
  { label: 'maxBatchRows: 16384', args: ['--max-batch-rows', '16384'] },
  { label: 'maxBatchRows: 4096', args: ['--max-batch-rows', '4096'] },
  { label: 'maxBatchRows: 256', args: ['--max-batch-rows', '256'] },
];
/** --sessions --quick: the two engines only. */
const QUICK = VARIANTS.slice(0, 2);

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Every variant in a fresh process, alternating, `rounds` times; medians side by side. */
function compareSessions(): void {
  const variants = values.quick ? QUICK : VARIANTS;
  const self = fileURLToPath(import.meta.url);
  const shared = [
    '--streams',
    values.streams!,
    '--batch',
    values.batch!,
    '--readings',
    values.readings!,
    '--manifest',
    values.manifest!,
    '--json',
  ];
  const rounds = Number(values.rounds);
  // As the agent is deployed, so that the RSS figures are the agent's.
  const flags = process.execArgv.includes('--optimize-for-size') ? process.execArgv : [...process.execArgv, '--optimize-for-size'];
  const got = variants.map(() => [] as Figures[]);
  for (let r = 0; r < rounds; r++) {
    variants.forEach((v, i) => {
      const child = spawnSync(process.execPath, [...flags, self, ...shared, ...v.args], { encoding: 'utf8' });
      const last = child.stdout.trim().split('\n').pop() ?? '';
      if (child.status !== 0 || !last.startsWith('{')) throw new Error(`variant "${v.label}" failed: ${child.stderr}`);
      got[i]!.push(JSON.parse(last) as Figures);
    });
  }
  const med = (i: number, k: string): number => median(got[i]!.map((f) => Number(f[k])));
  console.log(
    `engines and onnxruntime session options side by side (node ${flags.join(' ')}): ${values.streams} metrics, batches of ${values.batch}, ${values.readings} readings, ${rounds} rounds (medians)\n`,
  );
  console.log(
    '| variant | readings per CPU-second | vs defaults | readings/s (wall) | model loaded, added RSS | added RSS after the run | peak RSS |\n|---|---|---|---|---|---|---|',
  );
  const base = med(0, 'readings_per_cpu_s');
  const summary: Record<string, Record<string, number>> = {};
  variants.forEach((v, i) => {
    const cpu = med(i, 'readings_per_cpu_s');
    console.log(
      `| ${v.label} | ${cpu.toLocaleString('en-US')} | ${(cpu / base).toFixed(2)} | ${med(i, 'readings_per_s').toLocaleString('en-US')} | ${med(i, 'rss_mb_model_loaded_added')} MB | ${med(i, 'rss_mb_added')} MB | ${med(i, 'rss_mb_peak')} MB |`,
    );
    summary[v.label] = {
      readings_per_cpu_s: cpu,
      readings_per_s: med(i, 'readings_per_s'),
      rss_mb_model_loaded_added: med(i, 'rss_mb_model_loaded_added'),
      rss_mb_added: med(i, 'rss_mb_added'),
      rss_mb_peak: med(i, 'rss_mb_peak'),
    };
  });
  if (values.json) console.log(JSON.stringify(summary));
}

async function main(): Promise<void> {
  if (values.sessions) return compareSessions();
  const figures = await run();
  const rows = Object.entries(figures).map(([k, v]) => `${k.padEnd(32)} ${v}`);
  const tuning = values.session === '{}' ? '' : `, session ${values.session}`;
  console.log(
    [`OnnxScorer throughput (one core; engine ${values.engine}, onnxruntime intra-op threads = ${values.threads}${tuning})`, ...rows].join(
      '\n',
    ),
  );
  if (values.json) console.log(JSON.stringify(figures));
}

await main();
