/**
 * The lakehouse's durability and upkeep: an acknowledged batch survives kill -9 of the cloud before
 * it reached Parquet; leftovers of an interrupted flush or compaction never show up twice;
 * compaction merges small files without changing what SQL sees; retention drops old partitions;
 * both also as `edgetwin cloud compact|retention` (compiled CLI).
 */
import { copyFileSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { listFiles, TABLE_NAMES } from '../../cloud/lakehouse/layout.js';
import { call, duckSql, envelope, readings, startTestCloud, telemetry } from '../helpers/cloud.js';
import { freePort, runCli, spawnCli } from '../helpers/cli.js';
import { tempDir, waitFor } from '../helpers/util.js';

const countFiles = (root: string): number => TABLE_NAMES.reduce((n, tb) => n + listFiles(root, tb).length, 0);

/** Makes the files of one sample date look written at `at`: retention goes by arrival too (a fresh backfill is kept). */
function arrivedAt(root: string, date: string, at: number): void {
  for (const tb of TABLE_NAMES) for (const f of listFiles(root, tb)) if (f.date === date) utimesSync(f.path, at / 1000, at / 1000);
}

t.test('an acknowledged batch survives kill -9 before it reached Parquet', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const port = await freePort();
  const cfg = join(dir, 'cloud.json');
  const write = (flushIntervalMs: number): void =>
    writeFileSync(
      cfg,
      JSON.stringify({ stateDir: join(dir, 'state'), http: { port }, lakehouse: { flushIntervalMs }, log: { level: 'warn' } }),
    );
  write(3_600_000); // never flushes on its own while we post
  let proc = spawnCli(['cloud', '--config', cfg]);
  const url = `http://127.0.0.1:${port}`;
  // Readiness, not speed: loading the cloud's modules alone takes >10 s on a loaded 2-core machine.
  await waitFor(async () => (await call('GET', `${url}/healthz`).catch(() => ({ status: 0 }))).status === 200, 90_000, 'cloud up');
  for (let b = 0; b < 5; b++) {
    const r = await call('POST', `${url}/v1/ingest`, {
      body: envelope(`k-${b}`, 'site-k', [telemetry('k-1', 1, readings(200, b * 200 + 1))]),
      gzip: true,
    });
    t.equal(r.status, 200);
  }
  const killed = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGKILL');
  await killed;
  t.equal(
    readdirSync(join(dir, 'state')).includes('lakehouse') ? countFiles(join(dir, 'state', 'lakehouse')) : 0,
    0,
    'nothing was in Parquet yet',
  );

  write(100);
  proc = spawnCli(['cloud', '--config', cfg]);
  t.teardown(() => proc.kill('SIGKILL'));
  await waitFor(async () => (await call('GET', `${url}/healthz`).catch(() => ({ status: 0 }))).status === 200, 90_000, 'cloud up again');
  const glob = join(dir, 'state', 'lakehouse', 'silver', 'readings', '**', '*.parquet');
  let rows: Record<string, unknown>[] = [];
  await waitFor(
    async () => {
      rows = await duckSql(`SELECT seq FROM read_parquet('${glob}') ORDER BY seq`).catch(() => []);
      return rows.length >= 1000;
    },
    60_000,
    'the landed batches written after the restart',
  );
  t.same(
    rows.map((r) => r['seq']),
    Array.from({ length: 1000 }, (_, i) => i + 1),
    'every acknowledged reading, once',
  );
  const again = await call('POST', `${url}/v1/ingest`, { body: envelope('k-0', 'site-k', [telemetry('k-1', 1, readings(200, 1))]) });
  t.equal(again.body.duplicateBatch, true, 'batch ids survived the crash too');
  const stopped = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await stopped;
});

t.test('compaction merges small files; leftovers of interrupted work are never read twice', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  let cloud = await startTestCloud(join(dir, 'cloud'), { lakehouse: { compaction: { minFiles: 2 } } });
  const day = Date.UTC(2026, 2, 1);
  for (let b = 0; b < 6; b++) {
    const rs = Array.from({ length: 120 }, (_, i) => ({
      seq: b * 120 + i + 1,
      ts: day + (b * 120 + i) * 1000,
      metric: 'temperature',
      value: (b * 120 + i) % 50,
      unit: 'degC',
      ...(i === 7 ? { score: 0.9, alert: true } : {}),
    }));
    await call('POST', `${cloud.url}/v1/ingest`, { body: envelope(`c-${b}`, 'site-c', [telemetry('c-1', 1, rs)]) });
    await cloud.flush(); // one micro-batch per post: many small files
  }
  const root = cloud.lake.root;
  const perMinute = async (): Promise<unknown> =>
    (await call('GET', `${cloud.url}/v1/twins/c-1/telemetry?metric=temperature&from=${day}&to=${day + 720_000}&bucket=1m`)).body.points;
  const before = await perMinute();
  t.equal(listFiles(root, 'silver').length, 6);
  t.equal(listFiles(root, 'rollup1m').length, 6);

  const report = await cloud.lake.compact();
  t.match(report, { merged: 5, inputFiles: 30 }, 'each table with data (all but quarantine): six files into one');
  t.equal(listFiles(root, 'silver').length, 1);
  t.same(await perMinute(), before, 'downsampled history unchanged');
  const gold = await duckSql(
    `SELECT count(*) AS rows, sum(count) AS n, count(DISTINCT bucket_start) AS buckets FROM read_parquet('${root}/gold/rollup_1m/**/*.parquet')`,
  );
  t.same(gold, [{ rows: 12, n: 720, buckets: 12 }], 'gold partials re-aggregated: one row per bucket');
  const silver = await duckSql(
    `SELECT count(*) AS n, count(DISTINCT seq) AS d, min(seq) AS lo, max(seq) AS hi FROM read_parquet('${root}/silver/readings/**/*.parquet')`,
  );
  t.same(silver, [{ n: 720, d: 720, lo: 1, hi: 720 }]);

  // An interrupted compaction: an input file is back next to the merged file that replaced it.
  const merged = listFiles(root, 'silver')[0]!;
  const leftover = join(merged.path, '..', 'part-1-1-0.parquet');
  copyFileSync(merged.path, leftover);
  t.equal((await cloud.identities('c-1')).length, 720, 'a superseded file is not read');
  // An interrupted flush: a file beyond the lake cursor.
  const beyond = join(merged.path, '..', `part-${cloud.staging.cursor() + 1}-${cloud.staging.cursor() + 1}-0.parquet`);
  copyFileSync(merged.path, beyond);
  await cloud.stop();
  cloud = await startTestCloud(join(dir, 'cloud'), { lakehouse: { compaction: { minFiles: 2 } } });
  t.teardown(() => cloud.stop());
  t.notOk(
    listFiles(root, 'silver').some((f) => f.path === beyond),
    'start-up removes files of an unfinished flush',
  );
  t.equal((await cloud.identities('c-1')).length, 720);
  const second = await cloud.lake.compact();
  t.equal(second?.removedLeftovers, 1, 'the next compaction deletes the superseded file');
  t.equal(listFiles(root, 'silver').length, 1);
});

t.test('retention drops old partitions per layer; CLI compact and retention', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cfgFile = join(dir, 'cloud.json');
  const cfg = { stateDir: join(dir, 'state'), lakehouse: { retention: { silverDays: 30, goldDays: 400 }, compaction: { minFiles: 2 } } };
  writeFileSync(cfgFile, JSON.stringify(cfg));
  const cloud = await startTestCloud(join(dir, 'state'), { lakehouse: cfg.lakehouse });
  const old = Date.now() - 100 * 86_400_000;
  const recent = Date.now() - 3_600_000;
  for (const [i, at] of [old, recent, recent].entries()) {
    await call('POST', `${cloud.url}/v1/ingest`, {
      body: envelope(`r-${i}`, 'site-r', [telemetry('r-1', 1, readings(10, i * 10 + 1, at))]),
    });
    await cloud.flush();
  }
  await cloud.stop();
  const root = join(dir, 'state', 'lakehouse');
  const oldDate = new Date(old).toISOString().slice(0, 10);

  const fresh = runCli(['cloud', 'retention', '--dry-run', '--json', '--config', cfgFile]);
  t.same(
    (JSON.parse(fresh.stdout) as { partitionsRemoved: unknown[] }).partitionsRemoved,
    [],
    'old sample dates that arrived just now (a backfill) are kept',
  );
  arrivedAt(root, oldDate, old);
  const dry = runCli(['cloud', 'retention', '--dry-run', '--json', '--config', cfgFile]);
  t.equal(dry.status, 0, dry.stderr);
  const planned = JSON.parse(dry.stdout) as { partitionsRemoved: { table: string; date: string }[] };
  t.same(
    planned.partitionsRemoved.map((p) => [p.table, p.date]),
    [['silver', oldDate]],
    'only silver is past its limit',
  );
  t.ok(
    listFiles(root, 'silver').some((f) => f.date === oldDate),
    'dry run removes nothing',
  );

  const run = runCli(['cloud', 'retention', '--config', cfgFile]);
  t.equal(run.status, 0, run.stderr);
  t.match(run.stdout, /1 partitions removed/);
  t.notOk(
    listFiles(root, 'silver').some((f) => f.date === oldDate),
    'silver older than 30 days is gone',
  );
  t.ok(
    listFiles(root, 'rollup1h').some((f) => f.date === oldDate),
    'gold kept (400 days)',
  );
  t.equal((await duckSql(`SELECT count(*) AS n FROM read_parquet('${root}/silver/readings/**/*.parquet')`))[0]!['n'], 20);

  const compact = runCli(['cloud', 'compact', '--json', '--config', cfgFile]);
  t.equal(compact.status, 0, compact.stderr);
  t.match(JSON.parse(compact.stdout), { merged: 4 }, 'the two recent micro-batches merged per table (bronze, silver, both rollups)');
  t.equal(
    (await duckSql(`SELECT count(*) AS n, count(DISTINCT seq) AS d FROM read_parquet('${root}/silver/readings/**/*.parquet')`))[0]!['d'],
    20,
  );
  const badTable = runCli(['cloud', 'compact', '--table', 'nope', '--config', cfgFile]);
  t.equal(badTable.status, 2);
});

t.test('the daemon compacts on its schedule', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  // minFiles 2: a run may fall between two ingests (the machine is slow at times); whatever it
  // merged then, the next run merges the result with what came later, so the end state is one file.
  const cloud = await startTestCloud(join(dir, 'cloud'), { lakehouse: { compaction: { intervalMs: 300, minFiles: 2 } } });
  t.teardown(() => cloud.stop());
  for (let b = 0; b < 4; b++) {
    await call('POST', `${cloud.url}/v1/ingest`, { body: envelope(`s-${b}`, 'site-s', [telemetry('s-1', 1, readings(50, b * 50 + 1))]) });
    await cloud.flush();
  }
  // Generous: on a loaded CI machine a compaction run (DuckDB, fsyncs) can take seconds.
  await waitFor(() => listFiles(cloud.lake.root, 'silver').length === 1, 60_000, 'scheduled compaction');
  t.equal((await cloud.identities('s-1')).length, 200);
  const done = /edgetwin_cloud_lake_maintenance_total\{job="compaction",result="ok",component="cloud"\} [1-9]/;
  await waitFor(async () => done.test((await call('GET', `${cloud.url}/metrics`)).body as string), 30_000, 'the run counted');
  t.pass('scheduled runs are counted');
});

t.test('the daemon applies retention on its schedule', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  // Gold kept forever: its old partition proves the old readings were written at all, whenever
  // the scheduled run happens to fall (before or after the flush, both end the same way).
  const cloud = await startTestCloud(join(dir, 'cloud'), { lakehouse: { retention: { intervalMs: 300, silverDays: 30, goldDays: 0 } } });
  t.teardown(() => cloud.stop());
  const old = Date.now() - 100 * 86_400_000;
  const recent = Date.now() - 3_600_000;
  const oldDate = new Date(old).toISOString().slice(0, 10);
  for (const [i, at] of [old, recent].entries()) {
    await call('POST', `${cloud.url}/v1/ingest`, {
      body: envelope(`rs-${i}`, 'site-rs', [telemetry('rs-1', 1, readings(10, i * 10 + 1, at))]),
    });
    await cloud.flush();
  }
  const root = cloud.lake.root;
  t.ok(
    listFiles(root, 'rollup1h').some((f) => f.date === oldDate),
    'the old readings were written (gold keeps their hourly rollup)',
  );
  const runs = async (): Promise<number> =>
    Number(
      /edgetwin_cloud_lake_maintenance_total\{job="retention",result="ok"[^}]*\} (\d+)/.exec(
        (await call('GET', `${cloud.url}/metrics`)).body as string,
      )?.[1] ?? 0,
    );
  const before = await runs();
  await waitFor(async () => (await runs()) >= before + 2, 30_000, 'two more scheduled retention runs');
  t.ok(
    listFiles(root, 'silver').some((f) => f.date === oldDate),
    'kept while it arrived recently: a backfill is not deleted within the hour',
  );
  arrivedAt(root, oldDate, old);
  // Generous: on a loaded machine a run can be late by seconds.
  await waitFor(
    () => !listFiles(root, 'silver').some((f) => f.date === oldDate),
    60_000,
    'scheduled retention removing the old silver partition',
  );
  t.pass(`silver ${oldDate} (older than 30 days) removed without anyone asking`);
  t.ok(
    listFiles(root, 'silver').some((f) => f.date !== oldDate),
    'the recent silver partition is kept',
  );
  t.equal((await cloud.identities('rs-1')).length, 10, 'SQL sees only the recent readings');
  const done = /edgetwin_cloud_lake_maintenance_total\{job="retention",result="ok",component="cloud"\} [1-9]/;
  await waitFor(async () => done.test((await call('GET', `${cloud.url}/metrics`)).body as string), 30_000, 'the run counted');
  t.pass('scheduled retention runs are counted');
});
