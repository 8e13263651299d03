/**
 * `npm run chaos:cloud` — the cloud scale-out under faults (issue 14): N cloud replicas (default 3)
 * on one real PostgreSQL behind a round-robin TCP balancer, collectors and agents under load (the
 * chaos cluster, load generator and lake checks of `npm run chaos`), while a replica is killed with
 * SIGKILL every `--kill-every-s` (20) and started again, and PostgreSQL is restarted once
 * (`pg_ctl restart -m fast`). API clients go through the balancer and retry once on another replica:
 * an SSE subscriber following the change feed with Last-Event-ID, twin reads, and rounds of 50
 * concurrent PATCHes with one If-Match. Then it checks silver (every acknowledged reading once), the
 * SSE ids against the `changes` table (none missed, none twice) and the ETag rounds (one winner).
 * Exit code 1 on any loss, duplicate, lost update or request that failed after its retry.
 *
 *   npm run chaos:cloud -- [--quick] [--replicas N] [--agents N] [--collectors N] [--readings N]
 *                          [--duration-s N] [--kill-every-s N] [--json] [--keep] [--dir D]
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import pg from 'pg';
import { postgresBinDir, startPostgres, type PgServer } from '../postgres.js';
import { ApiClient, EtagRounds, SseWatcher } from './cloud-api.js';
import { ChaosCluster } from './cluster.js';
import { LoadSender } from './load.js';
import { LakeChecker } from './verify.js';
import { CHAOS_OPTIONS, wholeNumberOption } from './args.js';

const { values } = parseArgs({
  options: {
    ...CHAOS_OPTIONS,
    replicas: { type: 'string' },
    'kill-every-s': { type: 'string' },
    'log-level': { type: 'string', default: 'warn' },
  },
});
const int = (name: string, dflt: number): number => wholeNumberOption(values, name, dflt);
const quick = values.quick;
const o = {
  replicas: Math.max(2, int('replicas', 3)),
  agents: Math.max(1, int('agents', quick ? 3 : 6)),
  collectors: Math.max(1, int('collectors', quick ? 1 : 2)),
  readings: int('readings', quick ? 12_000 : 120_000),
  runMs: int('duration-s', quick ? 45 : 120) * 1000,
  killEveryMs: Math.max(1, int('kill-every-s', 20)) * 1000,
  drainTimeoutMs: int('drain-timeout-s', 300) * 1000,
};
const dir = values.dir ?? mkdtempSync(join(tmpdir(), 'edgetwin-chaos-cloud-'));
mkdirSync(dir, { recursive: true });
const say = (line: string): void => void process.stdout.write(`${line}\n`);
const note = (line: string): void => {
  if (!values.json) say(line);
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

/** `pg_ctl restart -m fast` without blocking this process (the balancer and proxies live in it). */
async function restartPostgres(server: PgServer): Promise<number> {
  const pgctl = join(postgresBinDir(), 'pg_ctl');
  const args = ['-D', server.dataDir, 'restart', '-m', 'fast', '-w', '-t', '60', '-l', join(dirname(server.dataDir), 'server.log')];
  const t0 = performance.now();
  if (userInfo().uid === 0) await promisify(execFile)('runuser', ['-u', 'postgres', '--', pgctl, ...args], { cwd: '/' });
  else await promisify(execFile)(pgctl, args, { cwd: '/' });
  return Math.round(performance.now() - t0);
}

let crashes = 0;
let cluster: ChaosCluster | undefined;
let server: PgServer | undefined;

async function main(): Promise<number> {
  server = await startPostgres({ fsync: true });
  const url = await server.createDatabase('chaos');
  note(`edgetwin chaos:cloud: ${o.replicas} replicas on PostgreSQL :${server.port}, ${o.agents} agents, ${o.collectors} collector(s),`);
  note(`  ${o.readings} readings over ${o.runMs / 1000} s, a replica killed every ${o.killEveryMs / 1000} s; state in ${dir}`);
  const c = new ChaosCluster({
    dir,
    agents: o.agents,
    collectors: o.collectors,
    spoolMaxBytes: 8 * 1024 * 1024,
    outboxMaxBytes: 4 * 1024 * 1024,
    logLevel: values['log-level'] ?? 'warn',
    cloudReplicas: o.replicas,
    overrides: { cloud: { store: { kind: 'postgres', url } } },
    onCrash: (name, code, log) => {
      crashes++;
      note(`CRASH: ${name} exited on its own (${String(code)}); see ${log}. Starting it again.`);
      const d = [...c.clouds, ...c.collectors, ...c.agents].find((x) => x.name === name);
      setTimeout(() => void d?.start().catch((err: unknown) => note(`${name} failed to start again: ${String(err)}`)), 1000);
    },
  });
  cluster = c;
  const started = Date.now();
  await c.start();
  note(`cluster up in ${((Date.now() - started) / 1000).toFixed(1)} s: balancer ${c.cloudUrl} over ${c.replicaUrls.join(', ')}`);

  const db = new pg.Client({ connectionString: url });
  await db.connect();
  db.on('error', () => undefined); // the restart below ends this session; it is not used again until after it
  const changesFrom = Number((await db.query('SELECT coalesce(max(id), 0) AS id FROM changes')).rows[0].id);
  await db.end();

  const api = new ApiClient(c.cloudUrl, c.tokens.operator);
  const sse = new SseWatcher(c.cloudUrl, c.tokens.operator, api);
  sse.lastId = changesFrom; // the first connect already resumes: every change from here on is owed
  await sse.start();
  const etag = new EtagRounds(api, c.deviceIds[0]!);

  const quotas = c.deviceIds.map((_, i) => Math.floor(o.readings / o.agents) + (i < o.readings % o.agents ? 1 : 0));
  const load = new LoadSender({ devices: c.deviceIds, quotas, batch: 100, paceMs: o.runMs, url: (i) => c.agentIngestUrl(i) });

  let running = true;
  let restartFailures = 0;
  const kills: { replica: string; restartMs: number }[] = [];
  const killer = (async () => {
    for (let k = 0; running; k++) {
      await sleep(o.killEveryMs);
      if (!running) break;
      const d = c.clouds[k % c.clouds.length]!;
      if (!d.up) continue;
      await d.kill9();
      const t0 = performance.now();
      note(`  t+${((Date.now() - started) / 1000).toFixed(0)}s kill -9 ${d.name}`);
      // Up to five tries: a start during the PostgreSQL restart exits (the platform would restart it too).
      for (let a = 0; a < 5 && !d.up; a++) {
        await d.start().catch((err: unknown) => {
          restartFailures++;
          note(`${d.name} failed to start again: ${String(err).split('\n')[0]}`);
        });
        if (!d.up) await sleep(2000);
      }
      kills.push({ replica: d.name, restartMs: Math.round(performance.now() - t0) });
    }
  })();
  let pgRestartMs = -1;
  const pgRestart = (async () => {
    await sleep(Math.round(o.runMs / 2) + Math.round(o.killEveryMs / 2)); // between two kills
    note(`  t+${((Date.now() - started) / 1000).toFixed(0)}s pg_ctl restart -m fast`);
    pgRestartMs = await restartPostgres(server!);
  })();
  const probes = (async () => {
    for (let n = 0; running; n++) {
      await sleep(250);
      await api.call('GET', `/v1/twins/${encodeURIComponent(c.deviceIds[n % c.deviceIds.length]!)}`);
      if (n % 40 === 39) await etag.round(); // every ~10 s
    }
  })();

  await load.run();
  const sendS = Math.round((Date.now() - started) / 1000);
  running = false;
  await Promise.all([killer, pgRestart, probes]);
  writeFileSync(join(dir, 'ledger.csv'), load.csv());

  // Drain: every committed reading must reach silver.
  const checker = await LakeChecker.open(c.lakeRoot);
  const drainStart = Date.now();
  let converged = false;
  while (Date.now() - drainStart < o.drainTimeoutMs) {
    const want = Object.values(c.committedSeqs()).reduce((a, b) => a + b, 0);
    if (want > 0 && (await checker.silverCount()) >= want) {
      converged = true;
      break;
    }
    await sleep(2000);
  }
  const drainS = Math.round((Date.now() - drainStart) / 1000);

  // SSE: every change row after the start, once.
  const db2 = new pg.Client({ connectionString: url });
  await db2.connect();
  const ids = (await db2.query('SELECT id FROM changes WHERE id > $1 ORDER BY id', [changesFrom])).rows.map((r: { id: string }) =>
    Number(r.id),
  );
  await db2.end();
  const newest = ids.at(-1) ?? 0;
  for (const until = Date.now() + 15_000; sse.lastId < newest && Date.now() < until;) await sleep(200);
  await sse.stop();
  const inTable = new Set(ids);
  const sseMissed = ids.filter((id) => !sse.seen.has(id)).length;
  const sseDuplicated = [...sse.seen.values()].reduce((n, k) => n + k - 1, 0);
  const sseUnknown = [...sse.seen.keys()].filter((id) => !inTable.has(id)).length;

  const replicasUpAtEnd = c.clouds.every((d) => d.up);
  await c.stop();
  const v = await checker.verify({ lakeRoot: c.lakeRoot, ledgerCsv: join(dir, 'ledger.csv'), lastSeq: c.committedSeqs(), workDir: dir });
  checker.close();

  const figures = {
    command: `npm run chaos:cloud -- ${process.argv.slice(2).join(' ')}`.trim(),
    replicas: o.replicas,
    agents: o.agents,
    collectors: o.collectors,
    readings_target: o.readings,
    readings_acknowledged: v.readings_acknowledged,
    readings_stored: v.readings_stored,
    readings_lost: v.readings_lost,
    readings_duplicated: v.readings_duplicated + v.identity_duplicates,
    readings_invented: v.readings_invented,
    seq_gaps: v.seq_gaps,
    requests_failed_after_retry: api.figures.failedAfterRetry,
    api_requests: api.figures.requests,
    api_requests_retried: api.figures.retried,
    sse_events_expected: ids.length,
    sse_events_received: sse.seen.size,
    sse_events_missed: sseMissed,
    sse_events_duplicated: sseDuplicated,
    sse_events_unknown: sseUnknown,
    sse_reconnects: sse.reconnects,
    etag_rounds: etag.figures.rounds,
    etag_rounds_unjudged: etag.figures.roundsUnjudged,
    etag_winners: etag.figures.winners,
    etag_conflicts_412: etag.figures.conflicts412,
    etag_in_doubt: etag.figures.inDoubt,
    etag_conflicts_lost_updates: etag.figures.lostUpdates,
    replica_kills: kills.length,
    replica_restart_median_ms: median(kills.map((k) => k.restartMs)),
    replica_restart_failures: restartFailures,
    pg_restarts: pgRestartMs >= 0 ? 1 : 0,
    pg_restart_ms: pgRestartMs,
    daemon_crashes: crashes,
    latency_p99_ms: v.latency_p99_ms,
    send_s: sendS,
    drain_s: drainS,
    converged,
  };
  const why = [
    ...(['readings_lost', 'readings_duplicated', 'readings_invented', 'requests_failed_after_retry'] as const).filter(
      (k) => figures[k] > 0,
    ),
    ...(['sse_events_missed', 'sse_events_duplicated', 'sse_events_unknown', 'etag_conflicts_lost_updates'] as const).filter(
      (k) => figures[k] > 0,
    ),
    ...(figures.converged ? [] : ['silver did not reach every committed reading']),
    ...(figures.pg_restarts === 1 ? [] : ['PostgreSQL was not restarted']),
    ...(figures.replica_kills > 0 ? [] : ['no replica was killed (run longer than --kill-every-s)']),
    ...(figures.daemon_crashes > 0 ? ['a daemon exited on its own'] : []),
    ...(replicasUpAtEnd ? [] : ['a killed replica did not come back']),
  ];
  const out = { ...figures, ok: why.length === 0 };
  writeFileSync(join(dir, 'figures.json'), `${JSON.stringify(out, null, 2)}\n`);
  if (!values.json) {
    for (const [k, val] of Object.entries(out)) say(`  ${k.padEnd(32)} ${String(val)}`);
    if (api.figures.failedSamples.length) say(`failed after retry: ${api.figures.failedSamples.join(' | ')}`);
    say(why.length ? `FAILED: ${why.join('; ')}` : 'OK: nothing lost, nothing twice, no lost update');
  }
  if (why.length > 0 || values.keep) say(`state and logs kept in ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
  if (values.json) say(JSON.stringify(out));
  server.destroy();
  return why.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  async (err: unknown) => {
    process.stderr.write(`chaos:cloud failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\nstate in ${dir}\n`);
    await cluster?.stop().catch(() => undefined);
    server?.destroy();
    process.exit(2);
  },
);
