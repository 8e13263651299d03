/**
 * Three cloud replicas on one real PostgreSQL (store.kind postgres), one shared lake folder: any
 * replica serves any request. The same batch posted to all three at once is stored once; of
 * concurrent PATCHes with one If-Match exactly one wins; SSE resumes with Last-Event-ID on another
 * replica with nothing missed or doubled; one replica writes Parquet, and another takes over when
 * it goes, every identity once in silver.
 */
import { join } from 'node:path';
import t from 'tap';
import type { Cloud } from '../../cloud/cloud.js';
import { call, duckSql, envelope, readings, startTestCloud, telemetry } from '../helpers/cloud.js';
import { openSse } from '../helpers/sse.js';
import { sharedPostgres } from '../helpers/stores.js';
import { tempDir, waitFor } from '../helpers/util.js';

t.test('three replicas on PostgreSQL', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const pg = await sharedPostgres();
  const url = await pg.createDatabase();
  const lake = join(dir, 'lake');
  const overrides = {
    store: { kind: 'postgres', url, leaseRetryMs: 200, changePollMs: 500 },
    lakehouse: { root: lake, flushIntervalMs: 200 },
    models: { dir: join(dir, 'models'), reconcileIntervalMs: 0 },
  };
  const clouds: Cloud[] = [];
  for (let i = 0; i < 3; i++) clouds.push(await startTestCloud(join(dir, `replica-${i}`), overrides));
  const running = new Set(clouds);
  t.teardown(async () => {
    for (const c of running) await c.stop();
  });
  const [a, b, c] = clouds as [Cloud, Cloud, Cloud];
  const silver = join(lake, 'silver', 'readings', '**', '*.parquet');

  const body = envelope('same-1', 'site-a', [telemetry('dev-1', 1, readings(100)), telemetry('dev-2', 1, readings(100))]);
  const posted = await Promise.all(clouds.map((x) => call('POST', `${x.url}/v1/ingest`, { body })));
  t.same(
    posted.map((r) => r.status),
    [200, 200, 200],
    'every replica answers',
  );
  t.equal(
    posted.reduce((n, r) => n + (r.body.stored as number), 0),
    200,
    'stored once',
  );
  t.equal(posted.filter((r) => r.body.duplicateBatch).length, 2, 'two answers say "already stored"');

  await t.test('ETag: of 50 concurrent PATCHes with the same If-Match over the replicas exactly one wins', async (t) => {
    const etag = (await call('GET', `${a.url}/v1/twins/dev-1`)).headers['etag'] as string;
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        call('PATCH', `${clouds[i % 3]!.url}/v1/twins/dev-1/desired`, { body: { setpoint: i }, headers: { 'if-match': etag } }),
      ),
    );
    const codes = answers.map((r) => r.status);
    t.equal(codes.filter((s) => s === 200).length, 1, 'one 200');
    t.equal(codes.filter((s) => s === 412).length, 49, '49 × 412');
    const twin = await call('GET', `${c.url}/v1/twins/dev-1`);
    t.equal(twin.body.desired.$version, 1, 'every replica reads the one winner');
  });

  await t.test('SSE: an event committed on A reaches C; Last-Event-ID resumes on another replica', async (t) => {
    const onC = await openSse(`${c.url}/v1/stream?types=desired&device=dev-2`);
    await waitFor(() => c.events.count === 1, 3000, 'subscribed on C');
    const patch = (x: Cloud, n: number) => call('PATCH', `${x.url}/v1/twins/dev-2/desired`, { body: { n }, headers: { 'if-match': '*' } });
    t.equal((await patch(a, 0)).status, 200);
    await waitFor(() => onC.events.length === 1, 2000, 'the event on C');
    const last = onC.events[0]!.id!;
    onC.close();
    for (let n = 1; n <= 3; n++) t.equal((await patch(b, n)).status, 200);
    const onA = await openSse(`${a.url}/v1/stream?types=desired&device=dev-2`, { 'last-event-id': String(last) });
    await waitFor(() => onA.events.length === 3, 3000, 'the three missed events on A');
    await patch(c, 4);
    await waitFor(() => onA.events.length === 4, 3000, 'then live');
    t.same(
      onA.events.map((e) => e.data.data['patch']),
      [{ n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }],
      'nothing missed, nothing twice, in order',
    );
    t.ok(
      onA.events.every((e, i) => e.id === e.data.id && (i === 0 || e.id! > onA.events[i - 1]!.id!)),
      'SSE ids are the global change ids',
    );
    onA.close();
  });

  await t.test('one Parquet writer; another takes over when it goes; every identity once in silver', async (t) => {
    await waitFor(() => clouds.filter((x) => x.lake.writer.status().leader).length === 1, 5000, 'one leader');
    const leader = clouds.find((x) => x.lake.writer.status().leader)!;
    await waitFor(
      async () => (await duckSql(`SELECT count(*) AS n FROM read_parquet('${silver}')`).catch(() => [{ n: 0 }]))[0]!['n'] === 200,
      10_000,
      'the first batch in silver',
    );
    await leader.stop();
    running.delete(leader);
    const rest = clouds.filter((x) => x !== leader);
    const more = envelope('after-takeover', 'site-a', [telemetry('dev-3', 1, readings(50))]);
    t.equal((await call('POST', `${rest[0]!.url}/v1/ingest`, { body: more })).status, 200);
    await waitFor(() => rest.some((x) => x.lake.writer.status().leader), 5000, 'a survivor took the lease');
    await waitFor(
      async () => (await duckSql(`SELECT count(*) AS n FROM read_parquet('${silver}')`).catch(() => [{ n: 0 }]))[0]!['n'] === 250,
      10_000,
      'the new batch in silver',
    );
    const dup = await duckSql(`SELECT count(*) AS n, count(DISTINCT (device, epoch, seq)) AS ids FROM read_parquet('${silver}')`);
    t.same(dup, [{ n: 250, ids: 250 }], 'each identity once');
  });
});
