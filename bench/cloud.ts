/**
 * Cloud benchmark: ingest into silver, twin point reads under concurrent load, and one device-day
 * of history downsampled to 1 minute.
 *
 *   npm run bench:cloud [-- --readings 3000000 --devices 1000 --concurrency 4 --connections 32 --first-reads-s 5 --duration-s 10 --json]
 *   npm run bench:cloud -- --store postgres --replicas 3 [--json]   # and the same figures on N replicas + PostgreSQL
 *
 * The cloud runs as its own process (the compiled `edgetwin cloud`, as deployed), with tokens
 * enforced; this process is the load: undici POSTs of pre-built, gzip-compressed envelopes (what
 * a collector sends: 20 device messages of 500 readings each), then autocannon on
 * `GET /v1/twins/{id}` with random ids — the first window after ingest apart from the steady one
 * (bench/twin-reads.ts) — then repeated telemetry queries over HTTP.
 *
 * Ingest is timed from the first POST until the lakehouse writer reports nothing pending (every
 * reading in silver Parquet, fsynced), and checked afterwards with DuckDB SQL over the files.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { DuckDBInstance } from '@duckdb/node-api';
import { Pool } from 'undici';
import { TokenStore } from '../cloud/auth/tokens.js';
import { SqliteStore } from '../cloud/store/sqlite-store.js';
import { runScale } from './cloud-scale.js';
import { cpuSeconds, freePort, postIngest } from './support.js';
import { readWindow } from './twin-reads.js';

const cli = fileURLToPath(new URL('../cli/edgetwin.js', import.meta.url));
const DAY = Date.UTC(2026, 5, 1);

const { values } = parseArgs({
  options: {
    readings: { type: 'string', default: '3000000' },
    devices: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '4' },
    connections: { type: 'string', default: '32' },
    'duration-s': { type: 'string', default: '10' },
    'first-reads-s': { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
    store: { type: 'string', default: 'sqlite' },
    replicas: { type: 'string', default: '3' },
    'sse-writes': { type: 'string', default: '200' },
  },
});
if (values.store !== 'sqlite' && values.store !== 'postgres') throw new Error('--store must be sqlite or postgres');
for (const k of ['duration-s', 'first-reads-s'] as const)
  if (!(Number(values[k]) > 0)) throw new Error(`--${k} must be a number of seconds above 0 (got ${values[k]})`);
const READINGS = Number(values.readings);
const DEVICES = Number(values.devices);
const PER_MESSAGE = 500;
/** Messages go round-robin over the devices: a small --readings reaches only the first ones. */
const DEVICES_WITH_DATA = Math.min(DEVICES, Math.ceil(READINGS / PER_MESSAGE));
const MESSAGES = 20;
const PER_ENVELOPE = PER_MESSAGE * MESSAGES;

/** Envelopes whose messages round-robin over the devices, each device's seqs consecutive. */
function buildEnvelopes(total: number): Buffer[] {
  const out: Buffer[] = [];
  const nextSeq = new Array<number>(DEVICES).fill(1);
  const metrics = ['temperature', 'vibration_rms', 'pressure'];
  let msg = 0;
  for (let e = 0; e * PER_ENVELOPE < total; e++) {
    const messages: string[] = [];
    for (let m = 0; m < MESSAGES; m++, msg++) {
      const d = msg % DEVICES;
      const seq0 = nextSeq[d]!;
      nextSeq[d] = seq0 + PER_MESSAGE;
      const rs: string[] = [];
      for (let i = 0; i < PER_MESSAGE; i++) {
        const seq = seq0 + i;
        const ts = Date.now() - 3_600_000 + (seq % 3_000_000);
        const alert = seq % 10_000 === 0;
        rs.push(
          `{"seq":${seq},"ts":${ts},"metric":"${metrics[seq % 3]}","value":${(20 + ((seq * 7919) % 1000) / 100).toFixed(2)},"unit":"u"${alert ? ',"score":0.97,"model":"bench-1","alert":true' : ''}}`,
        );
      }
      messages.push(`{"v":1,"device":"dev-${d}","epoch":1,"readings":[${rs.join(',')}]}`);
    }
    out.push(gzipSync(`{"v":1,"batchId":"bench-${e}","site":"bench","messages":[${messages.join(',')}]}`, { level: 1 }));
  }
  return out;
}

/** One device-day of 1-s data (one metric), in envelopes of PER_ENVELOPE readings. */
function buildDay(): Buffer[] {
  const out: Buffer[] = [];
  for (let start = 0; start < 86_400; start += PER_ENVELOPE) {
    const rs: string[] = [];
    for (let i = start; i < Math.min(86_400, start + PER_ENVELOPE); i++)
      rs.push(
        `{"seq":${i + 1},"ts":${DAY + i * 1000},"metric":"temperature","value":${(20 + 5 * Math.sin(i / 3600)).toFixed(3)},"unit":"degC"}`,
      );
    out.push(
      gzipSync(
        `{"v":1,"batchId":"day-${start}","site":"bench","messages":[{"v":1,"device":"day-1","epoch":1,"readings":[${rs.join(',')}]}]}`,
        { level: 1 },
      ),
    );
  }
  return out;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'edgetwin-bench-cloud-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const stateDir = join(dir, 'state');
  const db = await SqliteStore.open({ stateDir });
  const tokens = new TokenStore(db);
  const admin = (await tokens.create({ role: 'admin', createdBy: 'bench' })).token;
  const viewer = (await tokens.create({ role: 'viewer', createdBy: 'bench' })).token;
  await db.close();
  const cfg = join(dir, 'cloud.json');
  writeFileSync(
    cfg,
    JSON.stringify({
      stateDir,
      http: { port, bodyLimitBytes: 256 * 1024 * 1024 },
      log: { level: 'warn' },
      lakehouse: { compaction: { intervalMs: 0 } },
      // A load generator is one principal and one site: the rate limits would measure themselves
      // (their cost is measured by bench:ratelimit).
      rateLimit: { perPrincipal: { ratePerS: 0 }, ingestPerSite: { readingsPerS: 0 } },
    }),
  );
  const child: ChildProcess = fork(cli, ['cloud', '--config', cfg], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => reject(new Error(`cloud exited with ${code}`)));
  });
  const pool = new Pool(url, { connections: Number(values.concurrency) + 2, bodyTimeout: 120_000, headersTimeout: 120_000 });
  const auth = { authorization: `Bearer ${admin}` };
  const post = (body: Buffer): Promise<void> => postIngest(pool, admin, body);
  const health = async (): Promise<{ lakehouse: { pendingBatches: number } }> => {
    const r = await pool.request({ method: 'GET', path: '/healthz' });
    return (await r.body.json()) as { lakehouse: { pendingBatches: number } };
  };
  const drained = async (): Promise<void> => {
    while ((await health()).lakehouse.pendingBatches > 0) await new Promise((r) => setTimeout(r, 20));
  };
  const sendAll = async (bodies: Buffer[]): Promise<void> => {
    let next = 0;
    await Promise.all(
      Array.from({ length: Number(values.concurrency) }, async () => {
        while (next < bodies.length) await post(bodies[next++]!);
      }),
    );
  };

  // 1. Ingest into silver.
  const envelopes = buildEnvelopes(READINGS);
  const total = envelopes.length * PER_ENVELOPE;
  const cpu0 = cpuSeconds(child.pid);
  const t0 = performance.now();
  await sendAll(envelopes);
  const tAck = performance.now();
  await drained();
  const tSilver = performance.now();
  const cpuIngest = cpuSeconds(child.pid) - cpu0;
  const duck = await DuckDBInstance.create(':memory:');
  const con = await duck.connect();
  const silverRows = Number(
    (
      await con.runAndReadAll(
        `SELECT count(*) AS n FROM read_parquet('${join(stateDir, 'lakehouse/silver/readings')}/**/*.parquet') WHERE device LIKE 'dev-%'`,
      )
    ).getRows()[0]![0],
  );
  if (silverRows !== total) throw new Error(`silver has ${silverRows} readings, expected ${total}`);

  // 2. Twin point reads under concurrent load: the first window after ingest, then the steady one.
  const reading = { token: viewer, devices: DEVICES_WITH_DATA, connections: Number(values.connections) };
  const first = await readWindow([url], { ...reading, durationS: Number(values['first-reads-s']) });
  const cpu1 = cpuSeconds(child.pid);
  const reads = await readWindow([url], { ...reading, durationS: Number(values['duration-s']) });
  const cpuReads = cpuSeconds(child.pid) - cpu1;

  // 3. One device-day of 1-s data, downsampled to 1 minute (from gold), after compaction.
  await sendAll(buildDay());
  await drained();
  const compact = fork(cli, ['cloud', 'compact', '--config', cfg, '--json'], { stdio: 'ignore' });
  await new Promise((r) => compact.once('exit', r));
  const path = `/v1/twins/day-1/telemetry?metric=temperature&from=${DAY}&to=${DAY + 86_400_000}&bucket=1m`;
  const times: number[] = [];
  for (let i = 0; i < 60; i++) {
    const s = performance.now();
    const r = await pool.request({ method: 'GET', path, headers: auth });
    const body = (await r.body.json()) as { points: unknown[] };
    if (i >= 10) times.push(performance.now() - s); // the first queries warm DuckDB's caches
    if (body.points.length !== 1440) throw new Error(`history: ${body.points.length} points, expected 1440`);
  }
  times.sort((a, b) => a - b);
  const q = (p: number): number => times[Math.min(times.length - 1, Math.floor(p * times.length))]!;
  const rssMb = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;

  const figures = {
    readings: total,
    ingest_readings_per_s: Math.round(total / ((tSilver - t0) / 1000)),
    ingest_acknowledged_readings_per_s: Math.round(total / ((tAck - t0) / 1000)),
    twin_reads_per_s: reads.readsPerS,
    twin_read_p50_ms: reads.p50Ms,
    twin_read_p99_ms: reads.p99Ms,
    twin_first_reads_per_s: first.readsPerS,
    twin_first_read_p99_ms: first.p99Ms,
    history_day_1m_p50_ms: Number(q(0.5).toFixed(2)),
    history_day_1m_p99_ms: Number(q(0.99).toFixed(2)),
    cloud_peak_rss_mb: Math.round(rssMb),
    // CPU of the cloud process (all its threads) per reading and per read: what the neighbours' load does not move.
    cloud_ingest_cpu_us_per_reading: Number(((cpuIngest * 1e6) / total).toFixed(2)),
    cloud_twin_read_cpu_us: Math.round((cpuReads * 1e6) / reads.total),
  };
  const rows: [string, string, string][] = [
    ['ingest into silver (gzip, fsynced, Parquet)', `${figures.ingest_readings_per_s.toLocaleString('en')} readings/s`, '>= 300,000'],
    ['  acknowledged (landed in SQLite, fsynced)', `${figures.ingest_acknowledged_readings_per_s.toLocaleString('en')} readings/s`, ''],
    [`twin reads (${values.connections} connections)`, `${figures.twin_reads_per_s.toLocaleString('en')} reads/s`, '>= 10,000'],
    ['  latency p50 / p99', `${figures.twin_read_p50_ms} / ${figures.twin_read_p99_ms} ms`, 'p99 <= 5 ms'],
    [
      `  first ${values['first-reads-s']} s after ingest (caches empty)`,
      `${figures.twin_first_reads_per_s.toLocaleString('en')} reads/s, p99 ${figures.twin_first_read_p99_ms} ms`,
      '',
    ],
    [
      'device-day of 1 s data → 1 min (gold)',
      `p50 ${figures.history_day_1m_p50_ms} ms, p99 ${figures.history_day_1m_p99_ms} ms`,
      '< 50 ms',
    ],
    ['cloud peak RSS', `${figures.cloud_peak_rss_mb} MB`, ''],
  ];
  process.stdout.write(`\nedgetwin cloud benchmark: ${total.toLocaleString('en')} readings, ${DEVICES} devices\n\n`);
  for (const [a, b, c] of rows) process.stdout.write(`${a.padEnd(46)} ${b.padEnd(26)} ${c}\n`);
  let all: Record<string, number> = figures;
  if (values.store === 'postgres') {
    // The same envelopes (same identities) into a fresh PostgreSQL database, after the single node.
    const scale = await runScale({
      replicas: Number(values.replicas),
      envelopes,
      readings: total,
      devicesWithData: DEVICES_WITH_DATA,
      concurrency: Number(values.concurrency),
      connections: Number(values.connections),
      durationS: Number(values['duration-s']),
      firstReadsS: Number(values['first-reads-s']),
      sseWrites: Number(values['sse-writes']),
    });
    const ratio = Number((scale.pg_ingest_readings_per_s / figures.ingest_readings_per_s).toFixed(3));
    all = { ...figures, ...scale, pg_to_sqlite_ingest_ratio: ratio };
    const n = scale.pg_replicas;
    const extra: [string, string, string][] = [
      [`PostgreSQL, ${n} replicas: ingest into silver`, `${scale.pg_ingest_readings_per_s.toLocaleString('en')} readings/s`, '>= 100,000'],
      ['  ratio to SQLite single node', `${ratio}`, ''],
      ['  acknowledged (committed in PostgreSQL)', `${scale.pg_ingest_acknowledged_readings_per_s.toLocaleString('en')} readings/s`, ''],
      [
        `  twin reads (${values.connections} connections over ${n})`,
        `${scale.pg_twin_reads_per_s.toLocaleString('en')} reads/s`,
        '>= 10,000',
      ],
      ['  latency p50 / p99 (worst replica)', `${scale.pg_twin_read_p50_ms} / ${scale.pg_twin_read_p99_ms} ms`, 'p99 <= 10 ms'],
      [
        `  first ${values['first-reads-s']} s after ingest (caches empty)`,
        `${scale.pg_twin_first_reads_per_s.toLocaleString('en')} reads/s, p99 ${scale.pg_twin_first_read_p99_ms} ms`,
        '',
      ],
      [
        '  CPU per read: replicas / PostgreSQL',
        `${scale.pg_twin_read_replica_cpu_us} / ${scale.pg_twin_read_server_cpu_us} µs`,
        `single node: ${figures.cloud_twin_read_cpu_us} µs`,
      ],
      [
        '  SSE write on A → event on C, p50 / p99',
        `${scale.sse_cross_replica_p50_ms} / ${scale.sse_cross_replica_p99_ms} ms`,
        'p99 <= 200 ms',
      ],
      ['  replica peak RSS (largest)', `${scale.pg_replica_peak_rss_mb} MB`, ''],
    ];
    for (const [a, b, c] of extra) process.stdout.write(`${a.padEnd(46)} ${b.padEnd(26)} ${c}\n`);
  }
  if (values.json) process.stdout.write(`${JSON.stringify(all)}\n`);

  con.closeSync();
  duck.closeSync();
  await pool.close();
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
  rmSync(dir, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:cloud failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
