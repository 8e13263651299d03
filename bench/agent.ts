/**
 * `npm run bench:agent` — the agent's own throughput: simulated readings → agent runner (seq,
 * encode) → SQLite outbox (WAL, synchronous NORMAL, file cap) → MqttUplink (QoS 1 batches, window
 * of 16) → a real broker on loopback → PUBACK → rows deleted. Timed from the first reading until
 * the last one is acknowledged and gone from the outbox. The agent runs in this process, pinned to
 * one core (taskset); the broker is its own process on the other core: the edgetwin collector
 * (aedes, schema check, fsynced spool; sinks off) and, side by side, Debian's mosquitto.
 *
 * Also measured, against the collector: commit alone (no broker reachable: source → outbox) and
 * backlog drain (a restarted agent sends an outbox of N readings, no new readings).
 *
 * Last, the same end-to-end load with scoring on, as a deployed agent runs whenever
 * models/manifest.json is there: built by createAgent, so the real OnnxScorer (under its model
 * rollout) scores every reading before commit. It runs after every other phase because loading
 * onnxruntime is for good (its library stays mapped), so the scoring-off figures stay what they were.
 *
 *   npm run bench:agent -- [--readings 500000] [--rounds 3] [--broker both|collector|mosquitto]
 *                          [--scoring on|off|only] [--engine auto|small-graph|onnxruntime] [--manifest models/manifest.json] [--max-batch-rows N] [--json]
 *
 * The script runs node with --optimize-for-size and MALLOC_ARENA_MAX=1, as the systemd unit runs the
 * agent (a smaller young generation and slower heap growth: about 35 MB less peak RSS for a few % of
 * throughput; one glibc arena instead of one per thread: ≈ 10 MB less with scoring on, same speed).
 * test/deploy/agent-memory-settings.test.ts keeps the script and the unit alike.
 * Peak RSS is reported per phase (VmHWM, reset between phases); the drain phase includes opening
 * the full outbox, whose quick_check once filled a 16 MiB SQLite page cache that never went back.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Agent } from '../agent/agent.js';
import { loadAgentConfig } from '../agent/config.js';
import { createAgent } from '../agent/create-agent.js';
import { SimulatorSource, simulatorDefaults } from '../agent/sources/simulator.js';
import type { Source, SourceContext } from '../agent/types.js';
import { createLogger } from '../common/log.js';
import { createRegistry } from '../common/metrics.js';
import { fromRoot } from '../models/eval/repo.js';
import { freePort, peakRssMb, startBroker, type BenchBroker, type BrokerKind } from './support.js';

const { values } = parseArgs({
  options: {
    readings: { type: 'string', default: '500000' },
    rounds: { type: 'string', default: '3' },
    broker: { type: 'string', default: 'both' },
    // on: the scoring phase after the others; only: just that phase; off: none.
    scoring: { type: 'string', default: 'on' },
    manifest: { type: 'string', default: fromRoot('models/manifest.json') },
    'max-batch-rows': { type: 'string' },
    // scoring.engine of the scoring agent: auto (the small graph), small-graph or onnxruntime.
    engine: { type: 'string', default: 'auto' },
    json: { type: 'boolean', default: false },
  },
});
const N = Number(values.readings);
const ROUNDS = Number(values.rounds);
if (!['on', 'off', 'only'].includes(values.scoring!)) throw new Error(`--scoring must be on, off or only (got ${values.scoring})`);
const log = createLogger('bench', { level: 'silent' });

/** Simulator readings (3 metrics, 1002 per sample) as fast as the agent takes them. */
class FloodSource implements Source {
  readonly name = 'flood';
  emitted = 0;
  constructor(private readonly total: number) {}
  start(ctx: SourceContext): void {
    void this.run(ctx);
  }
  private async run(ctx: SourceContext): Promise<void> {
    const sim = new SimulatorSource({ ...simulatorDefaults, readingsPerTick: 334, seed: 1 }, 'bench');
    while (this.emitted < this.total && !ctx.signal.aborted) {
      const batch = sim.sample(Date.now()).slice(0, this.total - this.emitted);
      ctx.emit(batch);
      this.emitted += batch.length;
      await ctx.waitForRoom();
    }
  }
  stop(): void {}
}

/** Current resident memory split: anonymous (heaps, arenas) and file-backed (mapped code, libraries), MB. */
function rssSplitMb(): { anon: number; file: number; heap: number; external: number } {
  const status = readFileSync('/proc/self/status', 'utf8');
  const kb = (key: string): number => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0);
  // Of the anonymous part: V8's heap (all spaces, code included) and memory outside it (buffers, WebAssembly, native).
  const m = process.memoryUsage();
  return {
    anon: Math.round(kb('RssAnon') / 1024),
    file: Math.round(kb('RssFile') / 1024),
    heap: Math.round(m.heapTotal / 2 ** 20),
    external: Math.round(m.external / 2 ** 20),
  };
}

function resetPeak(): void {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    // Older kernels: the peak then covers the whole run.
  }
}

const RSS_TARGET_MB = 100;
const peaks: Record<string, number> = {};
async function phase<T>(name: string, fn: () => Promise<T>): Promise<T> {
  resetPeak();
  const out = await fn();
  peaks[name] = Math.max(peaks[name] ?? 0, peakRssMb('self')); // since the last resetPeak()
  return out;
}

/** Pins a process and all its threads to one CPU (the figures are per core). */
function pin(pid: number, cpu: number): boolean {
  return spawnSync('taskset', ['-a', '-cp', String(cpu), String(pid)], { stdio: 'ignore' }).status === 0;
}

/** A broker pinned to the other core, so the agent's core is its own. */
async function startPinnedBroker(kind: BrokerKind, dir: string): Promise<BenchBroker> {
  const broker = await startBroker(kind, await freePort(), dir);
  if (broker.proc.pid) pin(broker.proc.pid, 1);
  return broker;
}

function configFor(stateDir: string, port: number, scoring: Record<string, unknown> = { enabled: false }) {
  return loadAgentConfig(
    undefined,
    {
      deviceId: 'bench-1',
      stateDir,
      uplink: { url: `mqtt://127.0.0.1:${port}`, backoff: { initialMs: 50, maxMs: 200 } },
      admin: { enabled: false },
      twin: { enabled: false },
      scoring,
    },
    {},
  );
}

function agentFor(stateDir: string, port: number, sources: Source[]): Agent {
  // One agent per round in this process: without Node's default metrics, whose observers each
  // registry would add for good.
  return new Agent(configFor(stateDir, port), { log, sources, registry: createRegistry('agent') });
}

/** As deployed with a model: createAgent loads the manifest's model under its rollout. */
function scoringAgentFor(stateDir: string, port: number, sources: Source[]): Promise<Agent> {
  const rows = values['max-batch-rows'] ? { maxBatchRows: Number(values['max-batch-rows']) } : {};
  const cfg = configFor(stateDir, port, { enabled: true, manifestFile: values.manifest!, engine: values.engine!, ...rows });
  return createAgent(cfg, { log, sources, registry: createRegistry('agent') });
}

async function until(check: () => boolean, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('benchmark timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** CPU seconds this process has used (all threads): the per-core figure when the machine is shared. */
function cpuS(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

interface E2e {
  wall: number;
  cpu: number;
  /** The resident split as the last reading was acknowledged, agent still up. */
  split: ReturnType<typeof rssSplitMb>;
}

/** Source → outbox → uplink → broker, until every reading is acknowledged; readings per wall and per CPU second. */
async function endToEnd(port: number, dir: string, scoring = false): Promise<E2e> {
  const source = new FloodSource(N);
  const agent = scoring ? await scoringAgentFor(dir, port, [source]) : agentFor(dir, port, [source]);
  await agent.start();
  await until(() => agent.uplink.connected);
  const t0 = performance.now();
  const c0 = cpuS();
  await until(() => source.emitted === N && agent.identity.nextSeq - 1 === N && agent.outbox.depth().rows === 0);
  const wall = N / ((performance.now() - t0) / 1000);
  const cpu = N / (cpuS() - c0);
  const split = rssSplitMb();
  if (scoring) await checkScored(agent);
  await agent.stop();
  return { wall, cpu, split };
}

/** A scoring round only counts when the model really scored the readings. */
async function checkScored(agent: Agent): Promise<void> {
  const m = await agent.registry.getSingleMetric('edgetwin_scoring_readings_total')?.get();
  const scored = m?.values.find((v) => v.labels['result'] === 'scored')?.value ?? 0;
  if (scored < N) throw new Error(`scoring phase: only ${scored} of ${N} readings were scored`);
}

/** Commit alone: nothing is listening, so the readings stay in the outbox; readings/s. */
async function commitOnly(dir: string): Promise<number> {
  const source = new FloodSource(N);
  const offline = agentFor(dir, await freePort(), [source]);
  await offline.start();
  const t0 = performance.now();
  await until(() => source.emitted === N && offline.identity.nextSeq - 1 === N);
  const rate = N / ((performance.now() - t0) / 1000);
  await offline.stop(0);
  return rate;
}

/** A fresh agent with no sources sends the outbox commitOnly left behind; readings/s. */
async function drainOnly(port: number, dir: string): Promise<number> {
  const drainer = agentFor(dir, port, []);
  const t0 = performance.now();
  await drainer.start();
  await until(() => drainer.outbox.depth().rows === 0);
  const rate = N / ((performance.now() - t0) / 1000);
  await drainer.stop();
  return rate;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

async function main(): Promise<void> {
  if (!['both', 'collector', 'mosquitto'].includes(values.broker!))
    throw new Error(`--broker must be both, collector or mosquitto, got ${values.broker}`);
  const kinds: BrokerKind[] = values.broker === 'both' ? ['collector', 'mosquitto'] : [values.broker as BrokerKind];
  const work = mkdtempSync(join(tmpdir(), 'edgetwin-bench-agent-'));
  const results: Record<string, number[]> = {};
  const perCpu: Record<string, number[]> = {};
  const commit: number[] = [];
  const drain: number[] = [];
  const scored: E2e[] = [];
  const offSplits: E2e['split'][] = [];
  let pinned = false;
  try {
    for (const kind of values.scoring === 'only' ? [] : kinds) {
      const dir = mkdtempSync(join(work, `${kind}-`));
      const broker = await startPinnedBroker(kind, dir);
      pinned = pin(process.pid, 0);
      results[kind] = [];
      perCpu[kind] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const x = await phase(`e2e ${kind}`, () => endToEnd(broker.port, join(dir, `e2e-${r}`)));
        results[kind]!.push(x.wall);
        if (kind === kinds[0]) offSplits.push(x.split);
        perCpu[kind]!.push(x.cpu);
      }
      if (kind === 'collector') {
        for (let r = 0; r < ROUNDS; r++) {
          commit.push(await phase('commit', () => commitOnly(join(dir, `drain-${r}`))));
          drain.push(await phase('drain', () => drainOnly(broker.port, join(dir, `drain-${r}`))));
        }
      }
      await broker.stop();
    }
    if (values.scoring !== 'off') {
      // Against the same broker as the first e2e figure, a fresh one: the same load, scoring on.
      const kind = kinds[0]!;
      const dir = mkdtempSync(join(work, `scoring-${kind}-`));
      const broker = await startPinnedBroker(kind, dir);
      pinned = pin(process.pid, 0);
      for (let r = 0; r < ROUNDS; r++) scored.push(await phase('e2e scoring', () => endToEnd(broker.port, join(dir, `e2e-${r}`), true)));
      await broker.stop();
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  // rss_mb stays the scoring-off figure it always was; rss_mb_e2e_scoring is beside it.
  const off = Object.entries(peaks)
    .filter(([k]) => k !== 'e2e scoring')
    .map(([, v]) => v);
  const rss = Math.max(...(off.length ? off : Object.values(peaks)));
  const e2e = results['collector'] ?? results[kinds[0]!];
  const e2eCpu = perCpu['collector'] ?? perCpu[kinds[0]!];
  const rows = [
    ...Object.entries(results).map(([k, xs]) => [
      `source → outbox → uplink → ${k} (acked)`,
      fmt(median(xs)),
      fmt(median(perCpu[k]!)),
      xs.map(fmt).join(' / '),
    ]),
    ...(commit.length
      ? [
          ['source → outbox (commit only)', fmt(median(commit)), '', commit.map(fmt).join(' / ')],
          ['backlog drain → collector', fmt(median(drain)), '', drain.map(fmt).join(' / ')],
        ]
      : []),
    ...(scored.length
      ? [
          [
            `source → ONNX scoring → outbox → uplink → ${kinds[0]} (acked)`,
            fmt(median(scored.map((x) => x.wall))),
            fmt(median(scored.map((x) => x.cpu))),
            scored.map((x) => fmt(x.wall)).join(' / '),
          ],
        ]
      : []),
  ];
  const flags = process.execArgv.join(' ') || 'none';
  // The unit sets it (deploy/systemd/edgetwin-agent.service); without it RSS is not the deployed agent's.
  const arenas = process.env['MALLOC_ARENA_MAX'] ?? 'unset (glibc: 8 per core)';
  process.stdout.write(
    `\nagent benchmark: ${fmt(N)} readings per round, ${ROUNDS} rounds, agent ${pinned ? 'pinned to one core' : 'NOT pinned (taskset missing)'}, node flags: ${flags}, MALLOC_ARENA_MAX: ${arenas}\n\n`,
  );
  process.stdout.write('| path | readings/s (median) | readings per CPU-second | rounds (readings/s) |\n|---|---|---|---|\n');
  for (const r of rows) process.stdout.write(`| ${r.join(' | ')} |\n`);
  const over = Object.entries(peaks)
    .filter(([, v]) => v > RSS_TARGET_MB)
    .map(([k]) => k);
  process.stdout.write(
    `\npeak RSS of the agent process${off.length && scored.length ? ' with scoring off' : ''}: ${rss} MB (target <= ${RSS_TARGET_MB} in every phase${over.length ? `; OVER in ${over.join(', ')}` : ', met'}); by phase: ${Object.entries(
      peaks,
    )
      .map(([k, v]) => `${k} ${v} MB`)
      .join(', ')}\n`,
  );
  const most = (xs: E2e['split'][]) => ({
    anon: Math.max(...xs.map((x) => x.anon)),
    file: Math.max(...xs.map((x) => x.file)),
    heap: Math.max(...xs.map((x) => x.heap)),
    external: Math.max(...xs.map((x) => x.external)),
  });
  const offSplit = offSplits.length ? most(offSplits) : undefined;
  const split = scored.length ? most(scored.map((x) => x.split)) : undefined;
  if (split)
    process.stdout.write(
      `resident as a round ends, scoring on: ${split.anon} MB anonymous (V8 heap ${split.heap} MB, external ${split.external} MB) + ${split.file} MB file-backed (node, libonnxruntime.so when loaded)${offSplit ? `; scoring off: ${offSplit.anon} (heap ${offSplit.heap}) + ${offSplit.file} MB` : ''}\n`,
    );
  process.stdout.write('target: >= 100,000 readings/s end to end on one core\n');
  if (values.json) {
    // malloc_arena_max 0: not set (glibc's default).
    const figures: Record<string, number | boolean> = {
      rss_mb: rss,
      pinned_one_core: pinned,
      malloc_arena_max: Number(process.env['MALLOC_ARENA_MAX'] ?? 0),
    };
    if (e2e && e2eCpu) {
      figures['readings_per_s'] = Math.round(median(e2e));
      figures['readings_per_cpu_s'] = Math.round(median(e2eCpu));
    }
    // Per phase: rss_mb_e2e_collector, rss_mb_e2e_mosquitto, rss_mb_commit, rss_mb_drain, rss_mb_e2e_scoring.
    for (const [k, v] of Object.entries(peaks)) figures[`rss_mb_${k.replace(/ /g, '_')}`] = v;
    if (results['mosquitto']) figures['readings_per_s_mosquitto'] = Math.round(median(results['mosquitto']));
    if (results['collector'] && results['mosquitto'])
      figures['ratio_vs_mosquitto'] = Math.round((median(results['collector']) / median(results['mosquitto'])) * 100) / 100;
    if (commit.length) {
      figures['commit_readings_per_s'] = Math.round(median(commit));
      figures['drain_readings_per_s'] = Math.round(median(drain));
    }
    if (split) {
      figures['readings_per_s_scoring'] = Math.round(median(scored.map((x) => x.wall)));
      figures['readings_per_cpu_s_scoring'] = Math.round(median(scored.map((x) => x.cpu)));
      figures['rss_mb_anon_scoring'] = split.anon;
      figures['rss_mb_file_scoring'] = split.file;
      figures['heap_mb_scoring'] = split.heap;
      figures['external_mb_scoring'] = split.external;
    }
    process.stdout.write(`${JSON.stringify(figures)}\n`);
  }
}

await main();
