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
 *   npm run bench:agent -- [--readings 500000] [--rounds 3] [--broker both|collector|mosquitto] [--json]
 *
 * The script runs node with --optimize-for-size, as the agent should be deployed (a smaller young
 * generation and slower heap growth: about 35 MB less peak RSS for a few % of throughput).
 * Peak RSS is reported per phase (VmHWM, reset between phases); the drain phase includes opening
 * the full outbox, whose quick_check once filled a 16 MiB SQLite page cache that never went back.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Agent } from '../agent/agent.js';
import { loadAgentConfig } from '../agent/config.js';
import { SimulatorSource, simulatorDefaults } from '../agent/sources/simulator.js';
import type { Source, SourceContext } from '../agent/types.js';
import { createLogger } from '../common/log.js';
import { createRegistry } from '../common/metrics.js';

const { values } = parseArgs({
  options: {
    readings: { type: 'string', default: '500000' },
    rounds: { type: 'string', default: '3' },
    broker: { type: 'string', default: 'both' },
    json: { type: 'boolean', default: false },
  },
});
const N = Number(values.readings);
const ROUNDS = Number(values.rounds);
const cli = new URL('../cli/edgetwin.js', import.meta.url).pathname;
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

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

async function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(true));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(false)));
  });
}

/** Peak RSS of this process since the last resetPeak(), MB. */
function peakRssMb(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : 0;
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
  peaks[name] = Math.max(peaks[name] ?? 0, peakRssMb());
  return out;
}

/** Pins a process and all its threads to one CPU (the figures are per core). */
function pin(pid: number, cpu: number): boolean {
  return spawnSync('taskset', ['-a', '-cp', String(cpu), String(pid)], { stdio: 'ignore' }).status === 0;
}

interface Broker {
  name: string;
  port: number;
  proc: ChildProcess;
  dir: string;
}

async function startBroker(name: string, port: number, dir: string): Promise<Broker> {
  let proc: ChildProcess;
  if (name === 'mosquitto') {
    const conf = join(dir, 'mosquitto.conf');
    writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 0\nmax_queued_messages 0\nlog_type error\n`);
    proc = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] });
  } else {
    const cfg = join(dir, 'collector.json');
    writeFileSync(
      cfg,
      JSON.stringify({
        stateDir: join(dir, 'collector'),
        mqtt: { port, rateLimit: { messagesPerS: 0 }, maxPayloadBytes: 1 << 20 },
        spool: { maxBytes: 8 * 1024 * 1024 * 1024 },
        admin: { enabled: false },
        sinks: { http: { enabled: false } },
        log: { level: 'warn' },
      }),
    );
    proc = spawn(process.execPath, [cli, 'collector', '--config', cfg], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  for (let i = 0; i < 400 && !(await portOpen(port)); i++) {
    if (proc.exitCode !== null) throw new Error(`${name} exited with ${proc.exitCode}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  if (proc.pid) pin(proc.pid, 1);
  return { name, port, proc, dir };
}

async function stopBroker(b: Broker): Promise<void> {
  const exited = new Promise((r) => b.proc.once('exit', r));
  b.proc.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
  if (b.proc.exitCode === null && b.proc.signalCode === null) b.proc.kill('SIGKILL');
}

function agentFor(stateDir: string, port: number, sources: Source[]): Agent {
  const cfg = loadAgentConfig(
    undefined,
    { deviceId: 'bench-1', stateDir, uplink: { url: `mqtt://127.0.0.1:${port}`, backoff: { initialMs: 50, maxMs: 200 }}, admin: { enabled: false }, twin: { enabled: false } },
    {},
  );
  // One agent per round in this process: without Node's default metrics, whose observers each
  // registry would add for good.
  return new Agent(cfg, { log, sources, registry: createRegistry('agent') });
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

/** Source → outbox → uplink → broker, until every reading is acknowledged; readings per wall and per CPU second. */
async function endToEnd(port: number, dir: string): Promise<{ wall: number; cpu: number }> {
  const source = new FloodSource(N);
  const agent = agentFor(dir, port, [source]);
  await agent.start();
  await until(() => agent.uplink.connected);
  const t0 = performance.now();
  const c0 = cpuS();
  await until(() => source.emitted === N && agent.identity.nextSeq - 1 === N && agent.outbox.depth().rows === 0);
  const wall = N / ((performance.now() - t0) / 1000);
  const cpu = N / (cpuS() - c0);
  await agent.stop();
  return { wall, cpu };
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
  const kinds = values.broker === 'both' ? ['collector', 'mosquitto'] : [values.broker!];
  const work = mkdtempSync(join(tmpdir(), 'edgetwin-bench-agent-'));
  const results: Record<string, number[]> = {};
  const perCpu: Record<string, number[]> = {};
  let commit: number[] = [];
  let drain: number[] = [];
  let pinned = false;
  try {
    for (const kind of kinds) {
      const dir = mkdtempSync(join(work, `${kind}-`));
      const broker = await startBroker(kind, await freePort(), dir);
      pinned = pin(process.pid, 0);
      results[kind] = [];
      perCpu[kind] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const x = await phase(`e2e ${kind}`, () => endToEnd(broker.port, join(dir, `e2e-${r}`)));
        results[kind]!.push(x.wall);
        perCpu[kind]!.push(x.cpu);
      }
      if (kind === 'collector') {
        for (let r = 0; r < ROUNDS; r++) {
          commit.push(await phase('commit', () => commitOnly(join(dir, `drain-${r}`))));
          drain.push(await phase('drain', () => drainOnly(broker.port, join(dir, `drain-${r}`))));
        }
      }
      await stopBroker(broker);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const rss = Math.max(...Object.values(peaks));
  const e2e = results['collector'] ?? results[kinds[0]!]!;
  const rows = [
    ...Object.entries(results).map(([k, xs]) => [`source → outbox → uplink → ${k} (acked)`, fmt(median(xs)), fmt(median(perCpu[k]!)), xs.map(fmt).join(' / ')]),
    ...(commit.length ? [['source → outbox (commit only)', fmt(median(commit)), '', commit.map(fmt).join(' / ')], ['backlog drain → collector', fmt(median(drain)), '', drain.map(fmt).join(' / ')]] : []),
  ];
  const flags = process.execArgv.join(' ') || 'none';
  process.stdout.write(`\nagent benchmark: ${fmt(N)} readings per round, ${ROUNDS} rounds, agent ${pinned ? 'pinned to one core' : 'NOT pinned (taskset missing)'}, node flags: ${flags}\n\n`);
  process.stdout.write('| path | readings/s (median) | readings per CPU-second | rounds (readings/s) |\n|---|---|---|---|\n');
  for (const r of rows) process.stdout.write(`| ${r.join(' | ')} |\n`);
  const over = Object.entries(peaks).filter(([, v]) => v > RSS_TARGET_MB).map(([k]) => k);
  process.stdout.write(`\npeak RSS of the agent process: ${rss} MB (target <= ${RSS_TARGET_MB} in every phase${over.length ? `; OVER in ${over.join(', ')}` : ', met'}); by phase: ${Object.entries(peaks).map(([k, v]) => `${k} ${v} MB`).join(', ')}\n`);
  process.stdout.write('target: >= 100,000 readings/s end to end on one core\n');
  if (values.json) {
    const figures: Record<string, number | boolean> = {
      readings_per_s: Math.round(median(e2e)),
      readings_per_cpu_s: Math.round(median(perCpu['collector'] ?? perCpu[kinds[0]!]!)),
      rss_mb: rss,
      pinned_one_core: pinned,
    };
    // Per phase: rss_mb_e2e_collector, rss_mb_e2e_mosquitto, rss_mb_commit, rss_mb_drain.
    for (const [k, v] of Object.entries(peaks)) figures[`rss_mb_${k.replace(/ /g, '_')}`] = v;
    if (results['mosquitto']) figures['readings_per_s_mosquitto'] = Math.round(median(results['mosquitto']));
    if (results['collector'] && results['mosquitto']) figures['ratio_vs_mosquitto'] = Math.round((median(results['collector']) / median(results['mosquitto'])) * 100) / 100;
    if (commit.length) {
      figures['commit_readings_per_s'] = Math.round(median(commit));
      figures['drain_readings_per_s'] = Math.round(median(drain));
    }
    process.stdout.write(`${JSON.stringify(figures)}\n`);
  }
}

await main();
