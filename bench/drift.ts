/**
 * Drift monitoring cost: the cloud evaluating 10,000 streams (merge each stream's device
 * histograms, compare with its reference: KS + p, PSI, JS), and the agent counting one value.
 *
 *   npm run bench:drift [-- --streams 10000 --devices 5 --rounds 5 --json]
 *
 * Each stream gets `--devices` packed histograms of 64 bins (as they arrive from agents) and a
 * reference; the clock covers merge + compare of all streams (cloud/drift/evaluate.ts, the code the
 * cloud runs). The target is < 1 s for 10,000 streams. Figures are medians of `--rounds` rounds;
 * `--json` ends with one JSON object.
 */
import { parseArgs } from 'node:util';
import { driftDefaults } from '../agent/drift/config.js';
import { DriftRecorder } from '../agent/drift/drift-recorder.js';
import { Histogram, type PackedHistogram } from '../common/drift/histogram.js';
import { mulberry32 } from '../common/random.js';
import { evaluateStreams, MergedStreams } from '../cloud/drift/evaluate.js';

const { values } = parseArgs({
  options: {
    streams: { type: 'string', default: '10000' },
    devices: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
  },
});
const streams = Number(values.streams);
const devices = Number(values.devices);
const rounds = Number(values.rounds);
const SPEC = { lo: -4, hi: 4, bins: 64 };
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

// Inputs made before the clock starts: what the store hands the evaluator.
const r = mulberry32(7);
const gauss = (): number => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
const shape = (shift: number, n: number): PackedHistogram => {
  const h = new Histogram(SPEC);
  for (let i = 0; i < n; i++) h.add(gauss() + shift);
  return h.pack();
};
// A few hundred distinct shapes reused across streams keep set-up short; the evaluator sees each row anew.
const shapes = Array.from({ length: 200 }, () => shape(0, 500));
// One stream in ten has drifted (every device's values 0.3 σ higher): the evaluator must flag those.
const shifted = Array.from({ length: 50 }, () => shape(0.3, 500));
const rows = Array.from({ length: streams * devices }, (_, i) => ({
  stream: `m${Math.floor(i / devices)}`,
  quantity: 'input' as const,
  hist: Math.floor(i / devices) % 10 === 0 ? shifted[i % shifted.length]! : shapes[i % shapes.length]!,
}));
const reference = Histogram.unpack(shape(0, 20_000));

const evalMs: number[] = [];
const evalCpuMs: number[] = [];
let drifting = 0;
for (let round = 0; round < rounds; round++) {
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  const merged = new MergedStreams();
  for (const row of rows) merged.add(row);
  const out = evaluateStreams(merged, () => reference);
  const c = process.cpuUsage(c0);
  evalMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
  // CPU time too: on a shared machine the wall clock also counts time other processes had the core.
  evalCpuMs.push((c.user + c.system) / 1000);
  drifting = out.filter((s) => s.drift).length;
}

// The agent side: one observe() per value, three per scored reading.
const rec = new DriftRecorder({ ...driftDefaults, maxHistograms: 1_000_000 }, { now: () => 0 });
const observeNs: number[] = [];
for (let round = 0; round < rounds; round++) {
  const n = 3_000_000;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) rec.observe('fc-1', `m${((i / 3) % 100) | 0}`, 'input', (i % 97) / 10 - 4);
  observeNs.push(Number(process.hrtime.bigint() - t0) / n);
}

const figures = {
  streams,
  histograms_per_stream: devices,
  evaluate_ms_median: +median(evalMs).toFixed(1),
  evaluate_cpu_ms_median: +median(evalCpuMs).toFixed(1),
  evaluate_streams_per_s: Math.round(streams / (median(evalMs) / 1000)),
  drifting_streams: drifting,
  agent_observe_ns_median: +median(observeNs).toFixed(1),
  rounds,
};
console.log(
  `cloud: ${streams} streams × ${devices} histograms merged and compared in ${figures.evaluate_ms_median} ms wall, ${figures.evaluate_cpu_ms_median} ms CPU (median of ${rounds}; target < 1000 ms)`,
);
console.log(`agent: ${figures.agent_observe_ns_median} ns per observed value`);
if (values.json) console.log(JSON.stringify(figures));
