/**
 * `npm run bench:collector` — QoS 1 ingest of the collector (aedes → validation → fsynced group
 * commit to the SQLite spool → PUBACK), side by side with Debian's mosquitto broker on the same
 * load in the same run. Two loads: one reading per message (msgs/s) and 500 readings per message
 * (readings/s, the agent's batching). Each broker runs as its own process; the load comes from
 * several raw-socket generator processes (bench/mqtt-load.ts) with a window of PUBLISHes in flight.
 *
 *   npm run bench:collector -- [--rounds 3] [--seconds 8] [--sink none|file] [--json]
 *
 * The collector runs compiled (dist/cli/edgetwin.js) with auth.mode open on loopback, the rate
 * limit off (it would throttle the generator's few client ids) and spool.synchronous full: every
 * PUBACK follows an fsync. mosquitto keeps messages in memory (no persistence), as it does by
 * default. `--sink file` adds the file sink, so spool rows are also read back and released.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cpuSeconds, freePort, peakRssMb, startBroker, type BrokerKind } from './support.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '8' },
    sink: { type: 'string', default: 'none' },
    workers: { type: 'string', default: '2' },
    json: { type: 'boolean', default: false },
  },
});
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
const workers = Number(values.workers);
const loadgen = new URL('./mqtt-load.js', import.meta.url).pathname;

interface Load {
  name: string;
  readingsPerMessage: number;
  connsPerWorker: number;
  window: number;
}

const LOADS: Load[] = [
  { name: 'small', readingsPerMessage: 1, connsPerWorker: 8, window: 100 },
  { name: 'batched', readingsPerMessage: 500, connsPerWorker: 4, window: 8 },
];

interface Broker {
  proc: ChildProcess;
  port: number;
  stop(): Promise<void>;
  peakRssMb(): number;
}

async function start(kind: BrokerKind): Promise<Broker> {
  const dir = mkdtempSync(join(tmpdir(), `edgetwin-bench-${kind}-`));
  const b = await startBroker(kind, await freePort(), dir, {
    sinks: { http: { enabled: false }, file: { enabled: values.sink === 'file', dir: join(dir, 'out'), fsync: true } },
  });
  return {
    proc: b.proc,
    port: b.port,
    stop: async () => {
      await b.stop();
      rmSync(dir, { recursive: true, force: true });
    },
    peakRssMb: () => peakRssMb(b.proc.pid),
  };
}

interface Driven {
  msgsPerS: number;
  /** Messages acknowledged per second of the broker's own CPU time (independent of the neighbours). */
  msgsPerCpuS: number;
}

/** Runs `workers` generator processes against one broker; returns acknowledged messages per second. */
async function drive(port: number, pid: number | undefined, load: Load, tag: string): Promise<Driven> {
  const warmupMs = 1500;
  const kids = Array.from({ length: workers }, (_, w) =>
    fork(
      loadgen,
      ['127.0.0.1', String(port), String(load.connsPerWorker), String(load.window), String(load.readingsPerMessage), `${tag}-${w}`],
      { stdio: 'inherit' },
    ),
  );
  await Promise.all(
    kids.map(
      (k) =>
        new Promise<void>((resolve, reject) => {
          k.once('message', () => resolve());
          k.once('exit', (code) => reject(new Error(`load generator exited ${code}`)));
        }),
    ),
  );
  const results = kids.map(
    (k) =>
      new Promise<{ acked: number; ms: number }>((resolve) =>
        k.on('message', (m: { type: string; acked: number; ms: number }) => m.type === 'done' && resolve(m)),
      ),
  );
  for (const k of kids) k.send({ type: 'start', warmupMs, ms: seconds * 1000 });
  await new Promise((r) => setTimeout(r, warmupMs));
  const cpu0 = cpuSeconds(pid);
  const done = await Promise.all(results);
  const cpu = cpuSeconds(pid) - cpu0;
  await Promise.all(kids.map((k) => new Promise((r) => (k.exitCode !== null ? r(null) : k.once('exit', r)))));
  const acked = done.reduce((s, d) => s + d.acked, 0);
  return { msgsPerS: done.reduce((s, d) => s + d.acked / (d.ms / 1000), 0), msgsPerCpuS: acked / cpu };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const results: Record<string, Record<'collector' | 'mosquitto', number[]>> = {};
const perCpu: Record<string, Record<'collector' | 'mosquitto', number[]>> = {};
let collectorRss = 0;
let mosquittoRss = 0;
for (const load of LOADS) {
  results[load.name] = { collector: [], mosquitto: [] };
  perCpu[load.name] = { collector: [], mosquitto: [] };
  for (let r = 0; r < rounds; r++) {
    // Alternate who goes first so neither always meets a warmer machine.
    const order: ('collector' | 'mosquitto')[] = r % 2 === 0 ? ['collector', 'mosquitto'] : ['mosquitto', 'collector'];
    for (const which of order) {
      const broker = await start(which);
      try {
        const d = await drive(broker.port, broker.proc.pid, load, `${which}-${load.name}-${r}`);
        results[load.name]![which].push(d.msgsPerS);
        perCpu[load.name]![which].push(d.msgsPerCpuS);
        if (which === 'collector') collectorRss = Math.max(collectorRss, broker.peakRssMb());
        else mosquittoRss = Math.max(mosquittoRss, broker.peakRssMb());
      } finally {
        await broker.stop();
      }
    }
  }
}

const small = results['small']!;
const batched = results['batched']!;
const figures = {
  rounds,
  seconds_per_round: seconds,
  sink: values.sink,
  collector_qos1_msgs_per_s: Math.round(median(small.collector)),
  mosquitto_qos1_msgs_per_s: Math.round(median(small.mosquitto)),
  ratio_vs_mosquitto: Number((median(small.collector) / median(small.mosquitto)).toFixed(2)),
  collector_batched_msgs_per_s: Math.round(median(batched.collector)),
  mosquitto_batched_msgs_per_s: Math.round(median(batched.mosquitto)),
  batched_ratio_vs_mosquitto: Number((median(batched.collector) / median(batched.mosquitto)).toFixed(2)),
  readings_per_s: Math.round(median(batched.collector) * 500),
  collector_msgs_per_cpu_s: Math.round(median(perCpu['small']!.collector)),
  mosquitto_msgs_per_cpu_s: Math.round(median(perCpu['small']!.mosquitto)),
  cpu_ratio_vs_mosquitto: Number((median(perCpu['small']!.collector) / median(perCpu['small']!.mosquitto)).toFixed(2)),
  readings_per_cpu_s: Math.round(median(perCpu['batched']!.collector) * 500),
  collector_rss_mb: collectorRss,
  mosquitto_rss_mb: mosquittoRss,
};

console.log(`collector vs mosquitto, QoS 1, ${workers} load processes, median of ${rounds} × ${seconds} s (sink: ${values.sink})`);
console.log('load                         collector      mosquitto   ratio');
console.log(
  `1 reading/msg   (msgs/s)  ${String(figures.collector_qos1_msgs_per_s).padStart(12)} ${String(figures.mosquitto_qos1_msgs_per_s).padStart(14)}   ${figures.ratio_vs_mosquitto}`,
);
console.log(
  `500 readings/msg (msgs/s) ${String(figures.collector_batched_msgs_per_s).padStart(12)} ${String(figures.mosquitto_batched_msgs_per_s).padStart(14)}   ${figures.batched_ratio_vs_mosquitto}`,
);
console.log(`readings/s (batched)      ${String(figures.readings_per_s).padStart(12)}`);
console.log(
  `msgs per broker CPU-s     ${String(figures.collector_msgs_per_cpu_s).padStart(12)} ${String(figures.mosquitto_msgs_per_cpu_s).padStart(14)}   ${figures.cpu_ratio_vs_mosquitto}`,
);
console.log(`readings per CPU-s (batched) ${String(figures.readings_per_cpu_s).padStart(9)}`);
console.log(`peak RSS (MB)             ${String(collectorRss).padStart(12)} ${String(mosquittoRss).padStart(14)}`);
console.log(`all rounds (msgs/s): ${JSON.stringify(results)}`);
if (values.json) console.log(JSON.stringify(figures));
