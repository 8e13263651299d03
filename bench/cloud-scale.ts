/**
 * bench:cloud's scale-out part (`--store postgres --replicas N`): N cloud processes on one real
 * PostgreSQL (fsync on, synchronous_commit on: a 2xx means on disk, as with SQLite) sharing one
 * lake folder. The same envelopes go round-robin over the replicas; then twin reads on every replica
 * at once; then SSE delivery from a desired write on the first replica to a subscriber on the last.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import pg from 'pg';
import { Pool, request } from 'undici';
import { TokenStore } from '../cloud/auth/tokens.js';
import { PostgresStore } from '../cloud/store/postgres-store.js';
import { startPostgres } from './postgres.js';
import { readWindow } from './twin-reads.js';
import { cpuSeconds, freePort, peakRssMb, postIngest } from './support.js';

const cli = new URL('../cli/edgetwin.js', import.meta.url).pathname;

export interface ScaleOptions {
  replicas: number;
  envelopes: Buffer[];
  readings: number;
  devicesWithData: number;
  concurrency: number;
  connections: number;
  durationS: number;
  /** The first-reads window right after ingest (bench/twin-reads.ts). */
  firstReadsS: number;
  sseWrites: number;
}

export interface ScaleFigures {
  pg_replicas: number;
  pg_ingest_readings_per_s: number;
  pg_ingest_acknowledged_readings_per_s: number;
  pg_twin_reads_per_s: number;
  pg_twin_read_p50_ms: number;
  pg_twin_read_p99_ms: number;
  /** The window right after ingest: caches empty, read path not yet compiled (bench/twin-reads.ts). */
  pg_twin_first_reads_per_s: number;
  pg_twin_first_read_p99_ms: number;
  /** CPU of all replicas per read, and of the PostgreSQL server per read: what the shared two cores hide. */
  pg_twin_read_replica_cpu_us: number;
  pg_twin_read_server_cpu_us: number;
  sse_cross_replica_p50_ms: number;
  sse_cross_replica_p99_ms: number;
  pg_replica_peak_rss_mb: number;
}

/** CPU seconds of the PostgreSQL server: the postmaster (first line of postmaster.pid) and its backends. */
function serverCpuSeconds(dataDir: string): number {
  const root = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  let total = cpuSeconds(root);
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (Number(readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]) === root) total += cpuSeconds(Number(d)) || 0;
    } catch {
      // the process ended meanwhile
    }
  }
  return total;
}

const quantile = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? 0;
};

export async function runScale(o: ScaleOptions): Promise<ScaleFigures> {
  const dir = mkdtempSync(join(tmpdir(), 'edgetwin-bench-scale-'));
  const server = await startPostgres({ fsync: true });
  const children: ChildProcess[] = [];
  try {
    const url = await server.createDatabase('bench');
    const setup = await PostgresStore.open({ url, poolMax: 2, connectTimeoutMs: 5000, statementTimeoutMs: 30_000, notifyBatchMs: 5 });
    const tokens = new TokenStore(setup);
    const admin = (await tokens.create({ role: 'admin', createdBy: 'bench' })).token;
    const viewer = (await tokens.create({ role: 'viewer', createdBy: 'bench' })).token;
    await setup.close();

    const urls: string[] = [];
    for (let i = 0; i < o.replicas; i++) {
      const port = await freePort();
      const cfg = join(dir, `cloud-${i}.json`);
      writeFileSync(
        cfg,
        JSON.stringify({
          stateDir: join(dir, `replica-${i}`),
          http: { port, bodyLimitBytes: 256 * 1024 * 1024 },
          log: { level: 'warn' },
          store: { kind: 'postgres', url },
          lakehouse: { root: join(dir, 'lake'), compaction: { intervalMs: 0 } },
          models: { reconcileIntervalMs: 0 },
          rateLimit: { perPrincipal: { ratePerS: 0 }, ingestPerSite: { readingsPerS: 0 } },
        }),
        { mode: 0o600 }, // store.url counts as a secret: the config loader refuses a readable file
      );
      const child = fork(cli, ['cloud', '--config', cfg], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      children.push(child);
      await new Promise<void>((resolve, reject) => {
        child.once('message', () => resolve());
        child.once('exit', (code) => reject(new Error(`replica ${i} exited with ${code}`)));
      });
      urls.push(`http://127.0.0.1:${port}`);
    }
    const pools = urls.map((u) => new Pool(u, { connections: o.concurrency + 2, bodyTimeout: 120_000, headersTimeout: 120_000 }));
    const post = (i: number, body: Buffer): Promise<void> => postIngest(pools[i % pools.length]!, admin, body);

    // 1. Ingest into silver, round-robin over the replicas.
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: o.concurrency }, async () => {
        while (next < o.envelopes.length) {
          const i = next++;
          await post(i, o.envelopes[i]!);
        }
      }),
    );
    const tAck = performance.now();
    while (Number((await db.query('SELECT count(*) AS n FROM staging')).rows[0].n) > 0) await new Promise((r) => setTimeout(r, 20));
    const tSilver = performance.now();
    await db.end();
    const duck = await DuckDBInstance.create(':memory:');
    const con = await duck.connect();
    const silver = Number(
      (await con.runAndReadAll(`SELECT count(*) FROM read_parquet('${join(dir, 'lake/silver/readings')}/**/*.parquet')`)).getRows()[0]![0],
    );
    con.closeSync();
    duck.closeSync();
    if (silver !== o.readings) throw new Error(`silver has ${silver} readings, expected ${o.readings}`);

    // 2. Twin reads on every replica at once: the first window after ingest, then the steady one.
    const reading = { token: viewer, devices: o.devicesWithData, connections: o.connections };
    const first = await readWindow(urls, { ...reading, durationS: o.firstReadsS });
    const cpu0 = children.reduce((n, c) => n + cpuSeconds(c.pid), 0);
    const server0 = serverCpuSeconds(server.dataDir);
    const reads = await readWindow(urls, { ...reading, durationS: o.durationS });
    const replicaCpu = children.reduce((n, c) => n + cpuSeconds(c.pid), 0) - cpu0;
    const serverCpu = serverCpuSeconds(server.dataDir) - server0;

    // 3. SSE: a desired write on the first replica, delivered by the last one.
    const latencies = await sseDelivery(urls[0]!, urls[urls.length - 1]!, admin, o.sseWrites);
    const rss = Math.max(...children.map((c) => peakRssMb(c.pid)));
    for (const p of pools) await p.close();
    return {
      pg_replicas: o.replicas,
      pg_ingest_readings_per_s: Math.round(o.readings / ((tSilver - t0) / 1000)),
      pg_ingest_acknowledged_readings_per_s: Math.round(o.readings / ((tAck - t0) / 1000)),
      pg_twin_reads_per_s: reads.readsPerS,
      pg_twin_read_p50_ms: reads.p50Ms,
      pg_twin_read_p99_ms: reads.p99Ms,
      pg_twin_first_reads_per_s: first.readsPerS,
      pg_twin_first_read_p99_ms: first.p99Ms,
      pg_twin_read_replica_cpu_us: Math.round((replicaCpu * 1e6) / reads.total),
      pg_twin_read_server_cpu_us: Math.round((serverCpu * 1e6) / reads.total),
      sse_cross_replica_p50_ms: Number(quantile(latencies, 0.5).toFixed(2)),
      sse_cross_replica_p99_ms: Number(quantile(latencies, 0.99).toFixed(2)),
      pg_replica_peak_rss_mb: Math.round(rss),
    };
  } finally {
    await Promise.all(
      children.map((c, i) => {
        // A replica that already ended would never emit 'exit' again: say so instead of waiting forever.
        if (c.exitCode !== null || c.signalCode !== null) {
          process.stderr.write(`bench: replica ${i} had already exited (${c.exitCode ?? c.signalCode})\n`);
          return undefined;
        }
        const exited = new Promise((r) => c.once('exit', r));
        c.kill('SIGTERM');
        return exited;
      }),
    );
    server.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Milliseconds from sending each PATCH to replica `from` until replica `to`'s stream delivers its event. */
async function sseDelivery(from: string, to: string, token: string, writes: number): Promise<number[]> {
  const ac = new AbortController();
  const res = await request(`${to}/v1/stream?types=desired&device=dev-0`, {
    headers: { authorization: `Bearer ${token}` },
    signal: ac.signal,
  });
  const waiting = new Map<number, (at: number) => void>();
  let buf = '';
  res.body.on('data', (chunk: Buffer) => {
    const at = performance.now();
    buf += chunk.toString('utf8');
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const data = /^data: (.*)$/m.exec(buf.slice(0, i))?.[1];
      buf = buf.slice(i + 2);
      const n = data ? (JSON.parse(data) as { data: { patch: { n?: number } } }).data.patch.n : undefined;
      if (n !== undefined) waiting.get(n)?.(at);
    }
  });
  res.body.on('error', () => undefined);
  await new Promise((r) => setTimeout(r, 500)); // subscribed
  const out: number[] = [];
  for (let n = 0; n < writes; n++) {
    const got = new Promise<number>((resolve, reject) => {
      waiting.set(n, resolve);
      setTimeout(() => reject(new Error(`SSE event ${n} not delivered within 10 s`)), 10_000).unref();
    });
    const sent = performance.now();
    const r = await request(`${from}/v1/twins/dev-0/desired`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'if-match': '*' },
      body: JSON.stringify({ n }),
    });
    await r.body.text();
    if (r.statusCode !== 200) throw new Error(`PATCH ${r.statusCode}`);
    out.push((await got) - sent);
    waiting.delete(n);
    await new Promise((r2) => setTimeout(r2, 10));
  }
  ac.abort();
  return out;
}
