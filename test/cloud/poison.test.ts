/**
 * Poison isolation in the cloud (issue 13, critical 1): a value the lakehouse cannot store is refused
 * at ingest with a code and kept in quarantine; a staged batch that still fails in the writer is cut
 * down until the offending rows stand alone, those go to quarantine (reason `lake`) and everything
 * else is written — across restarts; /healthz degrades at once, naming the failure's class but never
 * the data.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import t from 'tap';
import type { Cloud } from '../../cloud/cloud.js';
import { call, duckSql, envelope, readings, startTestCloud, telemetry } from '../helpers/cloud.js';
import { tempDir, waitFor } from '../helpers/util.js';

const silverGlob = (c: Cloud): string => join(c.lake.root, 'silver', 'readings', '**', '*.parquet');
const quarantineGlob = (c: Cloud): string => join(c.lake.root, 'silver', 'quarantine', '**', '*.parquet');

/** Lands a body in staging as ingest would, without ingest's checks: what a check that does not know a poison yet lets through. */
async function stageRaw(cloud: Cloud, site: string, batchId: string, body: string): Promise<void> {
  const raw = Buffer.from(body);
  const now = Date.now();
  const id = await cloud.store.tx((tx) =>
    cloud.staging.insert(tx, site, batchId, now, { encoding: 'identity', bytes: raw }, raw.length, null),
  );
  cloud.staging.remember({ id, site, batchId, received: now, body: raw, extra: null });
}

t.test('ingest refuses what the lake cannot store, per message and with a code; the rest is stored', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'));
  t.teardown(() => cloud.stop());
  const now = Date.now();
  const ok = readings(3, 1, now - 10_000);
  // Built as text: JSON.stringify itself overflows the stack on it.
  const deep = `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`;
  const messages = [
    telemetry('good-1', 1, ok),
    telemetry('dev9', 1, [{ seq: 1, ts: now, metric: 'temperature', value: 1, unit: '\ud800' }]),
    telemetry('dev9', 2, [{ seq: 1e20, ts: now, metric: 'temperature', value: 1, unit: 'C' }]),
    { v: 1, kind: 'reported', device: 'dev9', ts: now, patch: 'DEEP' },
    { v: 1, kind: 'reported', device: 'dev9', ts: now, patch: { note: 'x'.repeat(40_000) } },
  ];
  const r = await call('POST', `${cloud.url}/v1/ingest`, {
    raw: JSON.stringify(envelope('poison-1', 'site-a', messages)).replace('"DEEP"', deep),
  });
  t.equal(r.status, 200, 'never a 500: the batch is answered');
  t.same(
    (r.body.rejected as { index: number; code: string }[]).map((x) => [x.index, x.code]),
    [
      [1, 'EDGETWIN_ERR_BAD_VALUE'],
      [2, 'EDGETWIN_ERR_BAD_VALUE'],
      [3, 'EDGETWIN_ERR_LIMIT_EXCEEDED'],
      [4, 'EDGETWIN_ERR_LIMIT_EXCEEDED'],
    ],
    'each refused with its code',
  );
  t.equal(r.body.stored, 3);

  const bad = await call('POST', `${cloud.url}/v1/ingest`, {
    raw: '{"v":1,"batchId":"\\ud800","site":"site-a","messages":[]}',
  });
  t.match(bad, { status: 400, body: { code: 'EDGETWIN_ERR_BAD_VALUE' } }, 'a lone surrogate outside the messages fails the request');

  await cloud.flush();
  t.match(cloud.lake.writer.status(), { pendingBatches: 0, lastError: null, lakeQuarantined: 0 }, 'nothing pending, nothing failed');
  const silver = await duckSql(`SELECT device, seq FROM read_parquet('${silverGlob(cloud)}') ORDER BY seq`);
  t.same(
    silver.map((x) => [x['device'], x['seq']]),
    ok.map((x) => ['good-1', x.seq]),
    'the good readings are in silver',
  );
  const q = await duckSql(`SELECT reason, count(*) AS n FROM read_parquet('${quarantineGlob(cloud)}') GROUP BY reason ORDER BY reason`);
  t.same(q, [
    { reason: 'limit', n: 2 },
    { reason: 'value', n: 2 },
  ]);
  t.equal((await call('GET', `${cloud.url}/healthz`)).status, 200);
});

t.test('a staged batch the writer cannot store: split until the offending rows stand alone, quarantined, the rest written', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const state = join(dir, 'cloud');
  let cloud = await startTestCloud(state, { lakehouse: { flushIntervalMs: 3_600_000 } });
  let running = true;
  t.teardown(() => (running ? cloud.stop() : undefined));
  const now = Date.now();
  const good = (device: string, from: number): string => JSON.stringify(telemetry(device, 1, readings(4, from, now - 60_000)));
  await stageRaw(cloud, 'site-a', 'a-1', JSON.stringify(envelope('a-1', 'site-a', [JSON.parse(good('a-1', 1))])));
  await stageRaw(cloud, 'site-b', 'b-1', JSON.stringify(envelope('b-1', 'site-b', [JSON.parse(good('b-1', 1))])));
  // dev9 is site-a's (claimed by an admin before any data): what the writer quarantines shows on its twin.
  t.equal((await call('PUT', `${cloud.url}/v1/twins/dev9/site`, { body: { site: 'site-a' } })).status, 200);
  // The reading, as DuckDB would see it had ingest let it through: one lone surrogate among good readings.
  const poisoned = `{"v":1,"device":"dev9","epoch":1,"readings":[{"seq":1,"ts":${now},"metric":"t","value":1,"unit":"C"},{"seq":2,"ts":${now},"metric":"t","value":2,"unit":"\\ud800"},{"seq":3,"ts":${now},"metric":"t","value":3,"unit":"C"}]}`;
  await stageRaw(cloud, 'site-a', 'a-2', `{"v":1,"batchId":"a-2","site":"site-a","messages":[${good('a-2', 1)},${poisoned}]}`);
  await stageRaw(cloud, 'site-b', 'b-2', JSON.stringify(envelope('b-2', 'site-b', [JSON.parse(good('b-1', 5))])));
  await cloud.flush();
  t.match(cloud.lake.writer.status(), { pendingBatches: 0, lastError: null, lakeQuarantined: 1 }, 'all written, one row quarantined');
  const silver = await duckSql(`SELECT device, seq FROM read_parquet('${silverGlob(cloud)}') ORDER BY device, seq`);
  t.same(
    silver.map((x) => `${String(x['device'])}/${String(x['seq'])}`),
    ['a-1/1', 'a-1/2', 'a-1/3', 'a-1/4', 'a-2/1', 'a-2/2', 'a-2/3', 'a-2/4', 'b-1/1', 'b-1/2', 'b-1/3', 'b-1/4']
      .concat(['b-1/5', 'b-1/6', 'b-1/7', 'b-1/8', 'dev9/1', 'dev9/3'])
      .sort(),
    "every site's good readings, the poisoned message's good ones too",
  );
  const q = await duckSql(`SELECT device, seq, reason, detail FROM read_parquet('${quarantineGlob(cloud)}')`);
  t.match(q, [{ device: 'dev9', seq: 2, reason: 'lake', detail: /surrogate/ }], 'the one unstorable reading, with the reason');
  t.match(await call('GET', `${cloud.url}/metrics`), { body: /edgetwin_cloud_lake_quarantined_rows_total\{[^}]*\} 1\n/ });
  t.match((await call('GET', `${cloud.url}/v1/twins/dev9`)).body, { quarantine: { count: 1, lastReason: 'lake' } }, 'counted on the twin');

  running = false;
  await cloud.stop();
  cloud = await startTestCloud(state);
  running = true;
  await cloud.flush();
  const again = await duckSql(`SELECT count(*) AS n FROM read_parquet('${silverGlob(cloud)}')`);
  t.same(again, [{ n: 18 }], 'a restart writes nothing twice and finds nothing pending');
});

t.test('/healthz degrades at once with the class of the failure, never the data; stop() does not wait on a failing writer', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'), { lakehouse: { flushIntervalMs: 3_600_000 } });
  let stopped = false;
  t.teardown(() => (stopped ? undefined : cloud.stop()));
  const tmp = join(cloud.lake.root, '_tmp');
  rmSync(tmp, { recursive: true, force: true });
  writeFileSync(tmp, 'not a folder'); // the writer's scratch space is broken: a fault of the machine, not the data
  const rs = readings(2, 1).map((r) => ({ ...r, unit: 'secret-marker' }));
  t.equal((await call('POST', `${cloud.url}/v1/ingest`, { body: envelope('h-1', 'site-a', [telemetry('h-1', 1, rs)]) })).status, 200);
  await cloud.flush();
  const h = await call('GET', `${cloud.url}/healthz`);
  t.equal(h.status, 503, 'degraded at the first failed flush');
  t.match(h.body.reasons, [/lakehouse writes failing.*(ENOTDIR|EEXIST|Error)/]);
  t.notMatch(JSON.stringify(h.body), /secret-marker/, 'no data contents to an unauthenticated caller');
  t.equal(cloud.lake.writer.status().lakeQuarantined, 0, 'a machine fault quarantines nothing');
  t.equal(cloud.lake.writer.status().pendingBatches, 1, 'the batch stays staged');

  rmSync(tmp, { force: true });
  await waitFor(
    async () => {
      await cloud.flush();
      return cloud.lake.writer.status().pendingBatches === 0;
    },
    10_000,
    'written once the fault is gone',
  );
  t.equal((await call('GET', `${cloud.url}/healthz`)).status, 200, 'healthy again');
  rmSync(tmp, { recursive: true, force: true });
  writeFileSync(tmp, 'broken again');
  await call('POST', `${cloud.url}/v1/ingest`, { body: envelope('h-2', 'site-a', [telemetry('h-1', 1, readings(2, 3))]) });
  const t0 = Date.now();
  await cloud.stop();
  stopped = true;
  t.ok(Date.now() - t0 < 10_000, 'stop() returned while the writer fails');
});

t.test('a batch the writer already read from the table (taking its lease) is not queued twice by ingest', async (t) => {
  // Found under load in the test above: stageRaw's remember() came after the writer's refresh() had
  // read the same row, and the batch was written to silver twice. Here the order is forced.
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'), { lakehouse: { flushIntervalMs: 3_600_000 } });
  t.teardown(() => cloud.stop());
  const raw = Buffer.from(JSON.stringify(envelope('s-1', 'site-a', [telemetry('s-dev', 1, readings(3, 1, Date.now() - 60_000))])));
  const now = Date.now();
  const id = await cloud.store.tx((tx) =>
    cloud.staging.insert(tx, 'site-a', 's-1', now, { encoding: 'identity', bytes: raw }, raw.length, null),
  );
  await cloud.staging.refresh();
  cloud.staging.remember({ id, site: 'site-a', batchId: 's-1', received: now, body: raw, extra: null });
  t.equal(cloud.staging.pendingBatches, 1, 'queued once');
  await cloud.flush();
  t.same(await duckSql(`SELECT count(*) AS n FROM read_parquet('${silverGlob(cloud)}')`), [{ n: 3 }], 'written once');
  cloud.staging.remember({ id, site: 'site-a', batchId: 's-1', received: now, body: raw, extra: null });
  t.equal(cloud.staging.pendingBatches, 0, 'a batch already written is not queued again');
});

t.test('a batch remembered while the writer reads the table is queued once, and batches queue in id order', async (t) => {
  // CI found the race the test above does not force: refresh()'s query had already read the row
  // when ingest's remember() queued it, then refresh queued it again (written to silver twice).
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'), { lakehouse: { flushIntervalMs: 3_600_000 } });
  t.teardown(() => cloud.stop());
  const now = Date.now();
  const batch = (n: number): { raw: Buffer; batchId: string } => ({
    batchId: `r-${n}`,
    raw: Buffer.from(JSON.stringify(envelope(`r-${n}`, 'site-a', [telemetry(`r-dev${n}`, 1, readings(2, 1, now - 60_000))]))),
  });
  const stage = (b: { raw: Buffer; batchId: string }): Promise<number> =>
    cloud.store.tx((tx) => cloud.staging.insert(tx, 'site-a', b.batchId, now, { encoding: 'identity', bytes: b.raw }, b.raw.length, null));
  const remember = (id: number, b: { raw: Buffer; batchId: string }): void =>
    cloud.staging.remember({ id, site: 'site-a', batchId: b.batchId, received: now, body: b.raw, extra: null });

  const b1 = batch(1);
  const id1 = await stage(b1);
  const realAll = cloud.store.all.bind(cloud.store);
  let raced = false;
  cloud.store.all = (async (sql: string, params?: never[]) => {
    const rows = await realAll(sql, params);
    if (!raced && sql.includes('FROM staging')) {
      raced = true;
      remember(id1, b1); // ingest's commit lands between the writer's read and its queueing
    }
    return rows;
  }) as typeof cloud.store.all;
  await cloud.staging.refresh();
  cloud.store.all = realAll;
  t.ok(raced, 'the race was forced');
  t.equal(cloud.staging.pendingBatches, 1, 'queued once');

  // Two ingests commit in id order but remember() out of it: the queue stays in id order, so
  // releasing the higher id never drops the lower one unwritten.
  const b2 = batch(2);
  const b3 = batch(3);
  const id2 = await stage(b2);
  const id3 = await stage(b3);
  remember(id3, b3);
  remember(id2, b2);
  t.same(
    (await cloud.staging.take(Number.MAX_SAFE_INTEGER)).map((b) => b.id),
    [id1, id2, id3],
    'oldest first',
  );
  await cloud.flush();
  t.same(await duckSql(`SELECT count(*) AS n FROM read_parquet('${silverGlob(cloud)}')`), [{ n: 6 }], 'each written once');
});

t.test('a staged body that no longer inflates (storage damage) is set aside byte for byte; the batches after it are written', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  // No bodies kept in memory: every body is read back from the database, as after a restart or on another replica.
  const cloud = await startTestCloud(join(dir, 'cloud'), { lakehouse: { flushIntervalMs: 3_600_000, memoryMaxBytes: 0 } });
  t.teardown(() => cloud.stop());
  const now = Date.now();
  const stage = async (batchId: string, encoded: Buffer, bytes: number): Promise<number> =>
    cloud.store.tx((tx) => cloud.staging.insert(tx, 'site-a', batchId, now, { encoding: 'gzip', bytes: encoded }, bytes, null));
  const good = (batchId: string, device: string): Buffer =>
    gzipSync(JSON.stringify(envelope(batchId, 'site-a', [telemetry(device, 1, readings(4, 1, now - 10_000))])));
  // A gzip header, then bytes that are no deflate stream: what a damaged page or a bad restore leaves.
  const damaged = Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 3]), Buffer.from('not a deflate stream at all')]);
  await stage('b-1', good('b-1', 'dev-1'), 200);
  const badId = await stage('b-2', damaged, 200);
  await stage('b-3', good('b-3', 'dev-3'), 200);
  await cloud.staging.refresh();
  t.equal(cloud.staging.pendingBatches, 3);

  await cloud.flush();
  t.equal(cloud.lake.writer.status().pendingBatches, 0, 'nothing is left behind the damaged body');
  t.equal(cloud.lake.writer.status().lastError, null, 'the writer is not failing');
  t.same(
    await duckSql(`SELECT device, count(*)::INT AS n FROM read_parquet('${silverGlob(cloud)}') GROUP BY device ORDER BY device`),
    [
      { device: 'dev-1', n: 4 },
      { device: 'dev-3', n: 4 },
    ],
    'the batches before and after it reach silver',
  );
  const kept = join(cloud.lake.root, '_quarantine', `staging-${badId}.body`);
  t.same(readFileSync(kept), damaged, 'the stored bytes are kept as they were');
  t.match(
    await duckSql(`SELECT reason, detail FROM read_parquet('${quarantineGlob(cloud)}')`),
    [{ reason: 'lake', detail: /staging-\d+\.body: gzip body does not inflate/ }],
    'a quarantine row says where and why',
  );
  t.match(
    await call('GET', `${cloud.url}/metrics`),
    { body: /edgetwin_cloud_lake_quarantined_rows_total\{[^}]*\} 1\n/ },
    'and it is counted',
  );
});
