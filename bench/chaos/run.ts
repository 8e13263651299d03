/**
 * `npm run chaos` — the end-to-end chaos run: a cloud, collectors and many agents as separate
 * processes on loopback, a known set of readings posted to the agents, and a seeded fault schedule
 * (kill -9 of agents and collectors, a cloud outage, partitions, black holes, delays and cut
 * connections between agents and collectors, a slow sink, small disk caps). Then it checks, from
 * the silver Parquet tables, that every acknowledged reading is there exactly once and in order,
 * that the twins show the last readings and that desired changes made meanwhile were applied.
 * Exit code 1 on any loss, duplicate or other failure.
 *
 *   npm run chaos -- [--quick] [--seed N] [--agents N] [--collectors N] [--readings N]
 *                    [--duration-s N] [--outage-s N] [--faults-per-min N] [--batch N]
 *                    [--spool-bytes N] [--outbox-bytes N] [--inflight N] [--json] [--keep]
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { mqttUplinkDefaults } from '../../agent/uplink/mqtt-uplink.js';
import { ChaosCluster } from './cluster.js';
import { DesiredChanger } from './desired.js';
import { FaultInjector } from './faults.js';
import { LoadSender } from './load.js';
import { PeakSampler } from './peaks.js';
import { failures, loadFiguresOf, render, type ChaosFigures } from './report.js';
import { describeSchedule, makeSchedule, type FaultKind } from './schedule.js';
import { LakeChecker } from './verify.js';
import { CHAOS_OPTIONS, wholeNumberOption } from './args.js';

const KINDS: FaultKind[] = [
  'kill_agent',
  'kill_collector',
  'cloud_outage',
  'partition',
  'blackhole',
  'delay',
  'cut_connections',
  'slow_sink',
];

const { values } = parseArgs({
  options: {
    ...CHAOS_OPTIONS,
    seed: { type: 'string' },
    'outage-s': { type: 'string' },
    'faults-per-min': { type: 'string' },
    batch: { type: 'string' },
    'spool-bytes': { type: 'string' },
    'outbox-bytes': { type: 'string' },
    inflight: { type: 'string' },
    'log-level': { type: 'string', default: 'info' },
  },
});

const int = (name: string, dflt: number): number => wholeNumberOption(values, name, dflt);

const quick = values.quick;
const seed = int('seed', Math.floor(Math.random() * 1_000_000));
const o = {
  agents: Math.max(1, int('agents', quick ? 4 : 20)),
  collectors: Math.max(1, int('collectors', quick ? 1 : 2)),
  readings: int('readings', quick ? 20_000 : 1_000_000),
  runMs: int('duration-s', quick ? 20 : 300) * 1000,
  outageMs: int('outage-s', quick ? 4 : 60) * 1000,
  perMinute: int('faults-per-min', quick ? 30 : 8),
  batch: Math.max(1, int('batch', 100)),
  drainTimeoutMs: int('drain-timeout-s', quick ? 90 : 600) * 1000,
  spoolMaxBytes: int('spool-bytes', quick ? 256 * 1024 : 4 * 1024 * 1024),
  outboxMaxBytes: int('outbox-bytes', quick ? 256 * 1024 : 1024 * 1024),
};
// Agents keep their default MQTT window (16 batches of up to 128 KiB) unless --inflight says otherwise:
// many windows together can exceed the small spool, which is part of what the disk-cap test covers.
const uplink = values.inflight !== undefined ? { inflightMax: Math.max(1, int('inflight', 16)) } : undefined;

const dir = values.dir ?? mkdtempSync(join(tmpdir(), 'edgetwin-chaos-'));
mkdirSync(dir, { recursive: true });
const faultLog = join(dir, 'faults.log');
const say = (line: string): void => {
  process.stdout.write(`${line}\n`);
};
const logLine = (line: string): void => {
  appendFileSync(faultLog, `${line}\n`);
  if (!values.json) say(line);
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const schedule = makeSchedule({
  seed,
  runMs: o.runMs,
  agents: o.agents,
  collectors: o.collectors,
  perMinute: o.perMinute,
  kinds: KINDS,
  cloudOutageMs: o.outageMs,
  once: ['cloud_outage'],
});
say(
  `edgetwin chaos: seed ${seed}, ${o.agents} agents, ${o.collectors} collector(s), ${o.readings} readings over ${o.runMs / 1000} s; state and logs in ${dir}`,
);
say(`fault schedule (${schedule.length} faults; replay with --seed ${seed}):\n${describeSchedule(schedule)}`);
writeFileSync(join(dir, 'schedule.json'), `${JSON.stringify({ seed, options: o, schedule }, null, 2)}\n`);

let crashes = 0;
const cluster: ChaosCluster = new ChaosCluster({
  dir,
  agents: o.agents,
  collectors: o.collectors,
  spoolMaxBytes: o.spoolMaxBytes,
  outboxMaxBytes: o.outboxMaxBytes,
  ...(uplink ? { uplink } : {}),
  logLevel: values['log-level'] ?? 'info',
  onCrash: (name, code, log) => {
    crashes++;
    logLine(`CRASH: ${name} exited on its own (${String(code)}); see ${log}. Starting it again.`);
    const d = [...cluster.clouds, ...cluster.collectors, ...cluster.agents].find((x) => x?.name === name);
    setTimeout(() => void d?.start().catch((err: unknown) => logLine(`${name} failed to start again: ${String(err)}`)), 1000);
  },
});

interface TwinItem {
  deviceId: string;
  reported: Record<string, { value: number; seq: number; epoch: number }>;
}

async function twins(): Promise<TwinItem[]> {
  const items: TwinItem[] = [];
  let cursor: string | null = null;
  do {
    const url = `${cluster.cloudUrl}/v1/twins?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const r = await request(url, { headers: { authorization: `Bearer ${cluster.tokens.viewer}` } });
    const body = (await r.body.json()) as { items: TwinItem[]; next: string | null };
    items.push(...body.items);
    cursor = body.next;
  } while (cursor);
  return items;
}

async function main(): Promise<number> {
  const started = Date.now();
  await cluster.start();
  say(`cluster up in ${((Date.now() - started) / 1000).toFixed(1)} s: cloud ${cluster.cloudUrl}`);
  const peaks = new PeakSampler(cluster);
  peaks.start();
  const quotas = cluster.deviceIds.map((_, i) => Math.floor(o.readings / o.agents) + (i < o.readings % o.agents ? 1 : 0));
  const load = new LoadSender({
    devices: cluster.deviceIds,
    quotas,
    batch: o.batch,
    paceMs: o.runMs,
    url: (i) => cluster.agentIngestUrl(i),
  });
  const injector = new FaultInjector(cluster, logLine);
  const desired = new DesiredChanger(cluster.cloudUrl, cluster.tokens.operator, cluster.deviceIds, seed, () => injector.active > 0);
  desired.start(quick ? 1000 : 3000);

  const t0 = Date.now();
  const progress = setInterval(() => {
    if (!values.json)
      say(
        `  t+${((Date.now() - t0) / 1000).toFixed(0)}s sent ${load.figures.sent} (acked ${load.figures.acked}, in doubt ${load.figures.inDoubt}); faults active ${injector.active}`,
      );
  }, 10_000);
  await Promise.all([load.run(), injector.play(schedule)]);
  const sendS = Math.round((Date.now() - t0) / 1000);
  desired.stop();
  writeFileSync(join(dir, 'ledger.csv'), load.csv());

  // Drain: every committed reading must reach silver.
  const lakeRoot = cluster.lakeRoot;
  const checker = await LakeChecker.open(lakeRoot);
  const drainStart = Date.now();
  let converged = false;
  let told = 0;
  while (Date.now() - drainStart < o.drainTimeoutMs) {
    const want = Object.values(cluster.committedSeqs()).reduce((a, b) => a + b, 0);
    const have = await checker.silverCount();
    if (have >= want && want > 0) {
      converged = true;
      break;
    }
    if (!values.json && Date.now() - told >= 10_000) {
      told = Date.now();
      say(`  draining: ${have} of ${want} committed readings in silver`);
    }
    await sleep(2000);
  }
  let notInSync = await desired.notInSync();
  for (const until = Date.now() + 60_000; notInSync.length > 0 && Date.now() < until;) {
    await sleep(1000);
    notInSync = await desired.notInSync();
  }
  const drainS = Math.round((Date.now() - drainStart) / 1000);
  clearInterval(progress);

  // The twins against silver's newest reading per metric, while the cloud still runs.
  await checker.load();
  const last = await checker.lastPerMetric();
  const byDevice = new Map((await twins()).map((t) => [t.deviceId, t]));
  let twinMismatches = 0;
  for (const l of last) {
    const r = byDevice.get(l.device)?.reported[l.metric];
    if (!r || r.value !== l.value || r.seq !== l.seq || r.epoch !== l.epoch) {
      twinMismatches++;
      if (twinMismatches <= 5) logLine(`twin mismatch ${l.device}.${l.metric}: twin ${JSON.stringify(r)} silver ${JSON.stringify(l)}`);
    }
  }

  await peaks.stop();
  await cluster.stop();
  const lastSeq = cluster.committedSeqs();
  const v = await checker.verify({ lakeRoot, ledgerCsv: join(dir, 'ledger.csv'), lastSeq, workDir: dir });
  checker.close();

  const args = process.argv
    .slice(2)
    .filter(
      (a, i, all) =>
        a !== '--json' && a !== '--keep' && a !== '--seed' && all[i - 1] !== '--seed' && a !== '--dir' && all[i - 1] !== '--dir',
    );
  const base = {
    command: ['npm run chaos --', ...args, '--seed', String(seed)].join(' '),
    seed,
    quick,
    agents: o.agents,
    collectors: o.collectors,
    readings_target: o.readings,
    ...loadFiguresOf(load.figures),
    ...v,
    ...peaks.peaks,
    twin_mismatches: twinMismatches,
    desired_changes: desired.figures.changes,
    desired_changes_during_faults: desired.figures.duringFaults,
    desired_not_applied: notInSync.length,
    daemon_crashes: crashes,
    restart_failures: injector.startFailures,
    faults_total: injector.total,
    faults: injector.injected,
    faults_skipped: injector.skipped,
    cloud_outage_s: o.outageMs / 1000,
    duration_s: o.runMs / 1000,
    spool_cap_bytes: o.spoolMaxBytes,
    uplink_inflight_max: uplink?.inflightMax ?? mqttUplinkDefaults.inflightMax,
    uplink_batch_max_bytes: mqttUplinkDefaults.batchMaxBytes,
    outbox_cap_bytes: o.outboxMaxBytes,
    send_s: sendS,
    drain_s: drainS,
    converged,
  };
  const why = failures(base);
  if (load.figures.unexpectedSamples.length) logLine(`unexpected answers: ${load.figures.unexpectedSamples.join(' | ')}`);
  const figures: ChaosFigures = { ...base, ok: why.length === 0 };
  writeFileSync(join(dir, 'figures.json'), `${JSON.stringify(figures, null, 2)}\n`);
  say('');
  say(render(figures, why));
  if (why.length > 0 || values.keep) say(`state, logs, ledger and fault log kept in ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
  if (values.json) say(JSON.stringify(figures));
  return why.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  async (err: unknown) => {
    process.stderr.write(
      `chaos run failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\nstate and logs in ${dir}\n`,
    );
    await cluster.stop().catch(() => undefined);
    process.exit(2);
  },
);
