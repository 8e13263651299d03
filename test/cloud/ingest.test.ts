/**
 * Cloud ingest through real HTTP into the real lakehouse: idempotent by batch id and by reading
 * identity, bad batches refused with a code and nothing stored, gzip, quarantine and quality, and
 * silver Parquet that plain DuckDB SQL (no edgetwin code) reads back in full.
 */
import { join } from 'node:path';
import t from 'tap';
import { call, duckSql, envelope, readings, startTestCloud, telemetry } from '../helpers/cloud.js';
import { tempDir } from '../helpers/util.js';

t.test('a batch posted twice is stored once; the same readings under a new batch id too', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'));
  t.teardown(() => cloud.stop());
  const rs = readings(300);
  const env = envelope('batch-1', 'site-a', [telemetry('dev-1', 1, rs)]);

  const first = await call('POST', `${cloud.url}/v1/ingest`, { body: env, gzip: true });
  t.equal(first.status, 200);
  t.match(first.body, { batchId: 'batch-1', stored: 300, duplicates: 0, duplicateBatch: false, quality: { score: 1, passed: 300 } });
  const again = await call('POST', `${cloud.url}/v1/ingest`, { body: env, gzip: true });
  t.equal(again.status, 200);
  t.match(again.body, { stored: 0, duplicates: 300, duplicateBatch: true });
  // A collector that lost its batch bookkeeping resends under a new id: caught by identity.
  const overlap = envelope('batch-2', 'site-a', [telemetry('dev-1', 1, readings(400))]);
  const third = await call('POST', `${cloud.url}/v1/ingest`, { body: overlap });
  t.match(third.body, { stored: 100, duplicates: 300, duplicateBatch: false });

  await cloud.flush();
  const ids = await cloud.identities('dev-1');
  t.same(
    ids.map((r) => r.seq),
    Array.from({ length: 400 }, (_, i) => i + 1),
    'each reading once in silver',
  );
  const twin = await call('GET', `${cloud.url}/v1/twins/dev-1`);
  t.equal(twin.body.readings, 400);
  const bronze = await duckSql(`SELECT count(*) AS n FROM read_parquet('${cloud.lake.root}/bronze/batches/**/*.parquet')`);
  t.equal(bronze[0]!['n'], 2, 'bronze holds each batch as received once (the repeat was not landed)');
});

t.test('a bad batch is refused with 400 and a code, and nothing is stored', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'));
  t.teardown(() => cloud.stop());
  const cases: [string, { body?: unknown; raw?: string | Buffer; headers?: Record<string, string> }][] = [
    ['not JSON', { raw: '{"v":1,"batchId":' }],
    ['wrong envelope version', { body: { ...envelope('b', 's', [telemetry('d', 1, readings(2))]), v: 2 } }],
    ['missing site', { body: { v: 1, batchId: 'b', messages: [] } }],
    ['site with a slash', { body: envelope('b', '../etc', [telemetry('d', 1, readings(2))]) }],
    ['unknown envelope field', { body: { ...envelope('b', 's', []), extra: 1 } }],
    [
      'invalid UTF-8',
      { raw: Buffer.concat([Buffer.from('{"v":1,"batchId":"b","site":"s","messages":["'), Buffer.from([0xc3, 0x28]), Buffer.from('"]}')]) },
    ],
  ];
  for (const [what, c] of cases) {
    const r = await call('POST', `${cloud.url}/v1/ingest`, c);
    t.equal(r.status, 400, `${what}: 400`);
    t.equal(r.body.code, 'EDGETWIN_ERR_BAD_REQUEST', `${what}: stable code`);
    t.type(r.body.message, 'string');
  }
  const ct = await call('POST', `${cloud.url}/v1/ingest`, { raw: 'x', headers: { 'content-type': 'text/plain' } });
  t.equal(ct.status, 415, 'other content types are refused');
  t.equal(ct.body.code, 'EDGETWIN_ERR_UNSUPPORTED_MEDIA_TYPE');
  // An encoding the cloud does not decode is 415 too, never parsed as if it were plain JSON.
  const br = await call('POST', `${cloud.url}/v1/ingest`, { raw: 'x', headers: { 'content-encoding': 'br' } });
  t.match(br, { status: 415, body: { code: 'EDGETWIN_ERR_UNSUPPORTED_MEDIA_TYPE', message: /content-encoding "br"/ } });
  await cloud.flush();
  t.same((await call('GET', `${cloud.url}/v1/twins`)).body.items, [], 'no twin');
  t.equal(cloud.staging.cursor(), 0, 'nothing landed');
  t.equal((await call('GET', `${cloud.url}/v1/quality`)).body.summary.batches, 0, 'no batch recorded');
  t.same(await cloud.identities('d'), []);
  const metrics = (await call('GET', `${cloud.url}/metrics`)).body as string;
  t.match(metrics, /edgetwin_cloud_rejected_total\{code="EDGETWIN_ERR_BAD_REQUEST",component="cloud"\} 5/, 'counted');
});

t.test('quarantine: rows failing expectations are kept aside with their reason; quality per batch', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'), { quality: { ranges: { m1: { min: 0, max: 10 } } } });
  t.teardown(() => cloud.stop());
  const now = Date.now();
  const good = readings(6); // m0, m1, m2 values 0..1.25
  const outOfRange = { seq: 7, ts: now, metric: 'm1', value: 99, unit: 'u' };
  const future = { seq: 8, ts: now + 3_600_000, metric: 'm0', value: 1, unit: 'u' };
  const clockNotSet = { seq: 9, ts: 5000, metric: 'm0', value: 1, unit: 'u' };
  const noUnit = { seq: 10, ts: now, metric: 'm2', value: 1, unit: '' };
  const broken = {
    v: 1,
    device: 'dev-q',
    epoch: 1,
    readings: [
      { seq: 11, ts: now, metric: 'm0', value: null, unit: 'u' },
      { seq: 12, ts: now, metric: 'bad metric!', value: 1, unit: 'u' },
    ],
  };
  const env = envelope('q-1', 'site-q', [telemetry('dev-q', 1, [...good, outOfRange, future, clockNotSet, noUnit]), broken, 42]);
  const r = await call('POST', `${cloud.url}/v1/ingest`, { body: env });
  t.equal(r.status, 200, 'partial success');
  t.equal(r.body.stored, 6);
  t.equal(r.body.quarantined, 4);
  t.same(
    r.body.rejected.map((x: { index: number; code: string }) => [x.index, x.code]),
    [
      [1, 'EDGETWIN_ERR_BAD_PAYLOAD'],
      [2, 'EDGETWIN_ERR_BAD_PAYLOAD'],
    ],
  );
  t.same(r.body.quality, { score: 0.4615, readings: 13, passed: 6, quarantined: 4, rejected: 3, duplicates: 0 }, '6 of 13 new rows passed');

  await cloud.flush();
  const q = await call('GET', `${cloud.url}/v1/quarantine?site=site-q`);
  t.equal(q.status, 200);
  const bySeq = new Map<unknown, { reason: string }>(q.body.items.map((i: { seq: number | null; reason: string }) => [i.seq, i]));
  t.equal(bySeq.get(7)?.reason, 'range');
  t.equal(bySeq.get(8)?.reason, 'timestamp');
  t.equal(bySeq.get(9)?.reason, 'timestamp');
  t.equal(bySeq.get(10)?.reason, 'null');
  t.equal(bySeq.get(11)?.reason, 'null', 'a null value in a rejected message');
  t.equal(bySeq.get(12)?.reason, 'schema');
  t.equal(bySeq.get(null)?.reason, 'schema', 'a message that is not a batch at all');
  t.equal(q.body.items.length, 7);
  t.same(
    (await cloud.identities('dev-q')).map((x) => x.seq),
    [1, 2, 3, 4, 5, 6],
    'only passing rows in silver',
  );
  const onlyRange = await call('GET', `${cloud.url}/v1/quarantine?reason=range`);
  t.same(
    onlyRange.body.items.map((i: { seq: number }) => i.seq),
    [7],
  );

  const quality = await call('GET', `${cloud.url}/v1/quality?site=site-q`);
  t.match(quality.body.summary, { batches: 1, passed: 6, quarantined: 4, rejected: 3, score: 0.4615 });
  t.match(quality.body.items[0], { batchId: 'q-1', score: 0.4615 });
  const rows = await duckSql(
    `SELECT reason, count(*) AS n FROM read_parquet('${cloud.lake.root}/silver/quarantine/**/*.parquet', hive_partitioning = true) WHERE site = 'site-q' GROUP BY reason ORDER BY reason`,
  );
  t.same(
    rows,
    [
      { reason: 'null', n: 2 },
      { reason: 'range', n: 1 },
      { reason: 'schema', n: 2 },
      { reason: 'timestamp', n: 2 },
    ],
    'quarantine table readable with plain SQL',
  );
});

t.test('silver Parquet: plain DuckDB SQL finds every reading, typed, partitioned by site and date', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'));
  t.teardown(() => cloud.stop());
  const day = Date.UTC(2026, 0, 10);
  // Two sites, two devices, readings spanning midnight, in several batches and one gzip body.
  const sent: { site: string; device: string; seq: number; ts: number; value: number }[] = [];
  let batch = 0;
  for (const [site, device] of [
    ['north', 'n-1'],
    ['south', 's-1'],
  ] as const) {
    for (let part = 0; part < 4; part++) {
      const rs = Array.from({ length: 250 }, (_, i) => {
        const seq = part * 250 + i + 1;
        return {
          seq,
          ts: day - 500_000 + seq * 1000,
          metric: 'temperature',
          value: seq / 8,
          unit: 'degC',
          ...(seq % 100 === 0 ? { score: 0.99, model: 'm-1', alert: true } : {}),
        };
      });
      rs.forEach((r) => sent.push({ site, device, seq: r.seq, ts: r.ts, value: r.value }));
      const r = await call('POST', `${cloud.url}/v1/ingest`, {
        body: envelope(`b-${batch++}`, site, [telemetry(device, 3, rs)]),
        gzip: part % 2 === 0,
      });
      t.equal(r.status, 200);
    }
  }
  await cloud.flush();

  const glob = `${cloud.lake.root}/silver/readings/**/*.parquet`;
  const rows = await duckSql(
    `SELECT site, CAST(date AS VARCHAR) AS date, device, epoch, seq, epoch_ms(ts) AS ts, metric, value, unit, score, alert
     FROM read_parquet('${glob}', hive_partitioning = true) ORDER BY site, device, seq`,
  );
  t.equal(rows.length, sent.length, 'every reading, once');
  t.same(
    rows.map((r) => [r['site'], r['device'], r['seq'], r['ts'], r['value']]),
    sent.map((s) => [s.site, s.device, s.seq, s.ts, s.value]),
    'identities, times and values intact',
  );
  t.ok(
    rows.every((r) => r['date'] === new Date(r['ts'] as number).toISOString().slice(0, 10)),
    'partitioned by the reading date',
  );
  t.same([...new Set(rows.map((r) => r['date']))].sort(), ['2026-01-09', '2026-01-10'], 'both days');
  t.equal(rows.filter((r) => r['alert'] === true).length, 20);
  const types = await duckSql(
    `SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('${glob}', hive_partitioning = false))`,
  );
  t.match(Object.fromEntries(types.map((r) => [r['column_name'], r['column_type']])), {
    device: 'VARCHAR',
    epoch: 'BIGINT',
    seq: 'BIGINT',
    ts: 'TIMESTAMP WITH TIME ZONE',
    metric: 'VARCHAR',
    value: 'DOUBLE',
    unit: 'VARCHAR',
    score: 'DOUBLE',
    alert: 'BOOLEAN',
  });
  const gold = await duckSql(
    `SELECT sum(count) AS n, sum(alerts) AS alerts FROM read_parquet('${cloud.lake.root}/gold/rollup_1h/**/*.parquet', hive_partitioning = true)`,
  );
  t.same(gold, [{ n: 2000, alerts: 20 }], 'gold hourly rollups count every reading');
  const anomalies = await duckSql(`SELECT count(*) AS n FROM read_parquet('${cloud.lake.root}/gold/anomalies/**/*.parquet')`);
  t.equal(anomalies[0]!['n'], 20, 'an anomaly event per alert');
  const bronze = await duckSql(
    `SELECT body FROM read_parquet('${cloud.lake.root}/bronze/batches/site=north/**/*.parquet') ORDER BY staging_id LIMIT 1`,
  );
  t.equal(JSON.parse(bronze[0]!['body'] as string).batchId, 'b-0', 'bronze keeps the envelope as received');
});

t.test('ingest answers 503 with Retry-After while the lakehouse writer is too far behind', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'), {
    lakehouse: { flushIntervalMs: 600_000, maxStagedBytes: 1024 * 1024, flushMaxBytes: 64 * 1024 * 1024 },
  });
  t.teardown(() => cloud.stop());
  const big = envelope('big-1', 's', [telemetry('d', 1, readings(20_000))]);
  t.equal((await call('POST', `${cloud.url}/v1/ingest`, { body: big })).status, 200);
  const next = await call('POST', `${cloud.url}/v1/ingest`, { body: envelope('big-2', 's', [telemetry('d', 1, readings(10, 30_000))]) });
  t.equal(next.status, 503);
  t.equal(next.body.code, 'EDGETWIN_ERR_STORE_FULL');
  t.equal(next.headers['retry-after'], '1');
  t.equal((await call('POST', `${cloud.url}/v1/ingest`, { body: big })).body.duplicateBatch, true, 'a repeat is still answered');
  await cloud.flush();
  t.equal(
    (await call('POST', `${cloud.url}/v1/ingest`, { body: envelope('big-2', 's', [telemetry('d', 1, readings(10, 30_000))]) })).status,
    200,
    'accepted once written',
  );
});
