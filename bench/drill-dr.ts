/**
 * `npm run drill:dr` — disaster recovery drill for the scale-out cloud (issue 14,
 * docs/runbooks/disaster-recovery.md). A cloud on PostgreSQL (fsync on, WAL archived with
 * `archive_command` every `--archive-timeout-s`, one `pg_basebackup` taken at the start) mirrors its
 * lake into Blob Storage (a protocol-level server on loopback: the ADLS copy). Under steady ingest
 * and desired writes, the primary state is lost at once: the cloud is killed -9, PostgreSQL crashes
 * (`pg_ctl stop -m immediate`) and its data directory is deleted, and so are the working lake copy
 * and the cloud's state directory. Then it restores what the design relies on — base backup + WAL
 * archive (replayed to its end), the lake from the Blob copy (a cloud with an empty lake restores it
 * at start) — and measures:
 *   RPO  the window of acknowledged data lost: loss time − acknowledgement time of the oldest lost write
 *   RTO  loss time → the restored cloud answering /healthz (the automated part; people add theirs).
 *
 *   npm run drill:dr -- [--quick] [--load-s N] [--archive-timeout-s N] [--json] [--keep]
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import pg from 'pg';
import { request } from 'undici';
import { spawnDaemon, type Child } from '../cli/demo.js';
import { TokenStore } from '../cloud/auth/tokens.js';
import { PostgresStore } from '../cloud/store/postgres-store.js';
import { BlobTestServer } from './blob-server.js';
import { LakeChecker } from './chaos/verify.js';
import { startPostgres } from './postgres.js';
import { freePort } from './support.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    'load-s': { type: 'string' },
    'archive-timeout-s': { type: 'string' },
    json: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
});
const num = (v: string | undefined, d: number): number => (v === undefined ? d : Math.max(1, Number(v)));
const loadS = num(values['load-s'], values.quick ? 30 : 90);
const archiveTimeoutS = num(values['archive-timeout-s'], values.quick ? 10 : 60);
const DEVICES = 10;
const PER_BATCH = 100;
const READY_MS = 600_000;
const say = (l: string): void => {
  if (!values.json) process.stdout.write(`${l}\n`);
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const asRoot = userInfo().uid === 0;
const chownPg = (path: string): void => {
  if (asRoot) execFileSync('chown', ['-R', 'postgres:postgres', path]);
};

interface Ack {
  device: string;
  lo: number;
  hi: number;
  at: number;
}

async function main(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'edgetwin-drill-dr-'));
  const archive = join(dir, 'wal-archive');
  const backup = join(dir, 'base-backup');
  mkdirSync(archive);
  mkdirSync(backup);
  chownPg(dir);
  const server = await startPostgres({
    fsync: true,
    conf: [
      'wal_level = replica',
      'archive_mode = on',
      `archive_command = 'test ! -f ${archive}/%f && cp %p ${archive}/%f'`,
      `archive_timeout = ${archiveTimeoutS}`,
    ],
  });
  const blob = await new BlobTestServer().start();
  const children: Child[] = [];
  try {
    const url = await server.createDatabase('edgetwin');
    const setup = await PostgresStore.open({ url, poolMax: 2, connectTimeoutMs: 5000, statementTimeoutMs: 30_000, notifyBatchMs: 5 });
    const admin = (await new TokenStore(setup).create({ role: 'admin', createdBy: 'drill' })).token;
    await setup.close();

    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const configFor = (name: string): string => {
      const f = join(dir, `${name}.json`);
      const cfg = {
        stateDir: join(dir, name, 'state'),
        http: { host: '127.0.0.1', port },
        log: { level: 'warn' },
        store: { kind: 'postgres', url },
        lakehouse: {
          root: join(dir, name, 'lake'),
          url: `${blob.endpoint}/lakehouse/lake`,
          blobConnectionString: blob.connectionString,
          flushIntervalMs: 500,
          compaction: { intervalMs: 0 },
          retention: { intervalMs: 0 },
        },
        models: { reconcileIntervalMs: 0 },
        rateLimit: { perPrincipal: { ratePerS: 0 }, ingestPerSite: { readingsPerS: 0 } },
      };
      writeFileSync(f, JSON.stringify(cfg), { mode: 0o600 }); // the Blob connection string is a secret
      return f;
    };
    mkdirSync(join(dir, 'logs'));
    // Ready within 10 min: on a loaded machine a cold start alone can take a minute; RTO is measured anyway.
    const primary = await spawnDaemon('cloud-primary', 'cloud', configFor('primary'), join(dir, 'logs'), undefined, READY_MS);
    children.push(primary.child);

    // The nightly base backup (Azure takes these itself; WAL is archived continuously).
    let t = performance.now();
    server.bin('pg_basebackup', [
      '-h',
      '127.0.0.1',
      '-p',
      String(server.port),
      '-U',
      'postgres',
      '-D',
      backup,
      '-Fp',
      '-Xstream',
      '-c',
      'fast',
    ]);
    const baseBackupS = (performance.now() - t) / 1000;
    say(`base backup in ${baseBackupS.toFixed(1)} s; ingest for ${loadS} s (WAL archived every ${archiveTimeoutS} s)`);

    // Steady ingest and operator writes, each remembered with the time it was acknowledged.
    const acks: Ack[] = [];
    const desired: { n: number; at: number }[] = [];
    const next = new Array<number>(DEVICES).fill(0);
    const auth = { authorization: `Bearer ${admin}` };
    const stopAt = Date.now() + loadS * 1000;
    for (let k = 0; Date.now() < stopAt; k++) {
      const d = k % DEVICES;
      const device = `dr-${d}`;
      const lo = next[d]! + 1;
      const hi = lo + PER_BATCH - 1;
      const now = Date.now();
      const rs = Array.from({ length: PER_BATCH }, (_, i) => ({
        seq: lo + i,
        ts: now - PER_BATCH + i,
        metric: 'm',
        value: lo + i,
        unit: 'u',
      }));
      const body = gzipSync(
        JSON.stringify({ v: 1, batchId: `dr-${k}`, site: 'site-dr', messages: [{ v: 1, device, epoch: 1, readings: rs }] }),
      );
      const r = await request(`${base}/v1/ingest`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json', 'content-encoding': 'gzip' },
        body,
      });
      await r.body.text();
      if (r.statusCode === 200) {
        acks.push({ device, lo, hi, at: Date.now() });
        next[d] = hi;
      }
      if (k % 10 === 0) {
        const p = await request(`${base}/v1/twins/dr-0/desired`, {
          method: 'PATCH',
          headers: { ...auth, 'content-type': 'application/json', 'if-match': '*' },
          body: JSON.stringify({ drill: { n: k } }),
        });
        await p.body.text();
        if (p.statusCode === 200) desired.push({ n: k, at: Date.now() });
      }
      await sleep(100);
    }

    // The disaster: the primary state is gone at once.
    const lossAt = Date.now();
    primary.child.proc.kill('SIGKILL');
    await new Promise((r) => primary.child.proc.once('exit', r));
    server.stop('immediate');
    rmSync(server.dataDir, { recursive: true, force: true });
    rmSync(join(dir, 'primary'), { recursive: true, force: true });
    say(`primary lost at ${new Date(lossAt).toISOString()}: database, working lake copy and state directory deleted`);

    // Restore: base backup + every archived WAL segment, replayed to the end of the archive.
    t = performance.now();
    cpSync(backup, server.dataDir, { recursive: true });
    writeFileSync(join(server.dataDir, 'recovery.signal'), '');
    writeFileSync(
      join(server.dataDir, 'postgresql.auto.conf'),
      `${execFileSync('cat', [join(server.dataDir, 'postgresql.auto.conf')], { encoding: 'utf8' })}restore_command = 'cp ${archive}/%f %p'\nrecovery_target_timeline = 'latest'\n`,
    );
    chownPg(server.dataDir);
    execFileSync('chmod', ['700', server.dataDir]);
    server.start();
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    while ((await db.query('SELECT pg_is_in_recovery() AS r')).rows[0].r === true) await sleep(100);
    const restoreDbS = (performance.now() - t) / 1000;
    const walReplayed = readdirSync(archive).filter((f) => /^[0-9A-F]{24}$/.test(f)).length;

    // A new cloud on an empty disk: it restores the lake from the Blob copy before it is ready.
    t = performance.now();
    const restored = await spawnDaemon('cloud-restored', 'cloud', configFor('restored'), join(dir, 'logs'), undefined, READY_MS);
    children.push(restored.child);
    for (;;) {
      const h = await request(`${base}/healthz`).catch(() => undefined);
      const ok = h?.statusCode === 200;
      await h?.body.text();
      if (ok) break;
      await sleep(100);
    }
    const cloudStartS = (performance.now() - t) / 1000;
    const rtoS = (Date.now() - lossAt) / 1000;

    // What survived: silver once the restored cloud has written what its staging holds.
    while (Number((await db.query('SELECT count(*) AS n FROM staging')).rows[0].n) > 0) await sleep(200);
    await db.end();
    await sleep(1500); // the last flush's rename
    const checker = await LakeChecker.open(join(dir, 'restored', 'lake'));
    await checker.load();
    const have = new Map(
      (await checker.rows('SELECT device, max(seq) AS hi, count(*) AS n, count(DISTINCT seq) AS d FROM silver GROUP BY device')).map(
        (r) => [String(r['device']), { hi: Number(r['hi']), n: Number(r['n']), d: Number(r['d']) }],
      ),
    );
    checker.close();
    const lost = acks.filter((a) => (have.get(a.device)?.hi ?? 0) < a.hi);
    const twin = await request(`${base}/v1/twins/dr-0`, { headers: auth });
    const desiredN = ((await twin.body.json()) as { desired?: { drill?: { n?: number } } }).desired?.drill?.n ?? -1;
    const desiredLost = desired.filter((d) => d.n > desiredN);
    const oldestLost = Math.min(...lost.map((a) => a.at), ...desiredLost.map((d) => d.at), lossAt);
    const duplicates = [...have.values()].reduce((n, h) => n + h.n - h.d, 0);
    const figures = {
      load_s: loadS,
      archive_timeout_s: archiveTimeoutS,
      readings_acknowledged: acks.length * PER_BATCH,
      readings_lost: lost.length * PER_BATCH,
      readings_duplicated: duplicates,
      desired_writes_acknowledged: desired.length,
      desired_writes_lost: desiredLost.length,
      rpo_s: Number(((lossAt - oldestLost) / 1000).toFixed(1)),
      base_backup_s: Number(baseBackupS.toFixed(2)),
      wal_segments_archived: walReplayed,
      restore_database_s: Number(restoreDbS.toFixed(2)),
      restore_cloud_and_lake_s: Number(cloudStartS.toFixed(2)),
      rto_s: Number(rtoS.toFixed(1)),
      rpo_target_s: 1800,
      rto_target_s: 8 * 3600,
    };
    const ok = figures.rpo_s <= 300 && figures.rto_s <= figures.rto_target_s && duplicates === 0;
    if (!values.json) for (const [k, v] of Object.entries(figures)) say(`  ${k.padEnd(30)} ${v}`);
    say(ok ? 'OK: RPO under 5 min, RTO under 8 h, nothing twice' : 'FAILED: see the figures');
    if (values.json) process.stdout.write(`${JSON.stringify({ ...figures, ok })}\n`);
    if (values.keep) say(`drill state kept in ${dir}`);
    return ok ? 0 : 1;
  } finally {
    for (const c of children) c.proc.kill('SIGKILL');
    await blob.close();
    server.destroy();
    if (!values.keep) rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`drill:dr failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)} (--keep keeps its logs)\n`);
    process.exit(2);
  },
);
