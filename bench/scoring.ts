/**
 * Scoring throughput and memory of the agent's OnnxScorer on one core.
 *
 *   npm run bench:scoring [-- --streams 100 --batch 1000 --readings 2000000 --manifest models/manifest.json --json]
 *
 * The agent's path exactly: batches of readings of many metrics go through score(); onnxruntime
 * runs with one intra-op thread on the calling thread, so everything happens on one core. Reading
 * objects are made before the clock starts (the agent has them already) and reused batch after
 * batch with advancing timestamps. RSS is measured before the model is loaded and after the run.
 */
import { parseArgs } from 'node:util';
import { OnnxScorer } from '../agent/scoring/onnx-scorer.js';
import type { SourceReading } from '../agent/types.js';
import { createRegistry, type Registry } from '../common/metrics.js';
import { fromRoot } from '../models/eval/repo.js';

const MB = 1024 * 1024;

async function alertCount(registry: Registry): Promise<number> {
  const m = await registry.getSingleMetric('edgetwin_scoring_alerts_total')?.get();
  return m?.values.reduce((s, v) => s + v.value, 0) ?? 0;
}
const rssMb = (): number => process.memoryUsage().rss / MB;

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

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      streams: { type: 'string', default: '100' },
      batch: { type: 'string', default: '1000' },
      readings: { type: 'string', default: '2000000' },
      manifest: { type: 'string', default: fromRoot('models/manifest.json') },
      json: { type: 'boolean', default: false },
    },
  });
  const streams = Number(values.streams);
  const batch = Number(values.batch);
  const total = Number(values.readings);
  // A pool of batches covering 2 days of every stream, reused with advancing time.
  const poolBatches = Math.max(1, Math.ceil((streams * 576) / batch));
  const pool = makeBatches(streams, batch, poolBatches);
  const span = (poolBatches * batch) / streams;
  global.gc?.();
  const rssBefore = rssMb();

  const registry = createRegistry('bench');
  const scorer = await OnnxScorer.fromConfig({ manifestFile: values.manifest!, threads: 1 }, { registry });
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

  const figures = {
    model: scorer.modelVersion,
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
    kib_per_stream_approx: +(((rssAfter - rssModel) * 1024) / streams).toFixed(1),
    alert_rate_percent: +((100 * alerts) / (batches * batch)).toFixed(4),
  };
  const rows = Object.entries(figures).map(([k, v]) => `${k.padEnd(32)} ${v}`);
  console.log(['OnnxScorer throughput (one core: onnxruntime intra-op threads = 1)', ...rows].join('\n'));
  if (values.json) console.log(JSON.stringify(figures));
}

await main();
