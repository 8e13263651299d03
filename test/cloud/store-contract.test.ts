/**
 * The store contract (cloud/store/), run against SQLite and a real PostgreSQL 15: migrations,
 * values round-trip, transactions (rollback, after-commit hooks), the change feed (order, resume,
 * other replicas), commit order of `ordered()` ids, leases, and the conditional and exactly-once
 * writes that must hold across replicas: the database decides, not a replica's memory.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import { AuditLog } from '../../cloud/audit/audit-log.js';
import { TokenStore } from '../../cloud/auth/tokens.js';
import { IngestPipeline } from '../../cloud/ingest/pipeline.js';
import { QualityRules } from '../../cloud/ingest/quality.js';
import { SeqIndex } from '../../cloud/ingest/seq-index.js';
import { CursorMoved, StagingStore } from '../../cloud/lakehouse/staging.js';
import { ChangeFeed } from '../../cloud/store/change-feed.js';
import { MIGRATIONS } from '../../cloud/store/migrations/index.js';
import { PostgresStore } from '../../cloud/store/postgres-store.js';
import { SqliteStore } from '../../cloud/store/sqlite-store.js';
import type { Change, Store } from '../../cloud/store/store.js';
import { DeviceOwnership } from '../../cloud/twins/ownership.js';
import { TwinStore } from '../../cloud/twins/twin-store.js';
import { loadCloudConfig } from '../../cloud/config.js';
import { createLogger } from '../../common/log.js';
import { createRegistry } from '../../common/metrics.js';
import { isEdgetwinError } from '../../common/errors.js';
import { envelope, readings, telemetry } from '../helpers/cloud.js';
import { eachStore, PG_TEST_OPTIONS, sharedPostgres } from '../helpers/stores.js';
import { waitFor } from '../helpers/util.js';

const silent = createLogger('test', { level: 'silent' });
const cloudDefaults = loadCloudConfig(undefined, { stateDir: '/nonexistent' }, {});
const admin = { id: 't', name: 'tester', role: 'admin' as const, site: null };

function services(store: Store) {
  const audit = new AuditLog(store);
  const twins = new TwinStore(store, audit, cloudDefaults.twins);
  return { audit, twins, tokens: new TokenStore(store) };
}

async function pipeline(store: Store) {
  const { twins, audit } = services(store);
  const staging = await StagingStore.open(store, 1 << 20);
  return new IngestPipeline({
    store,
    twins,
    ownership: new DeviceOwnership(store, twins, audit),
    seq: new SeqIndex(store),
    staging,
    quality: new QualityRules(cloudDefaults.quality),
    registry: createRegistry('cloud', false),
    log: silent,
    maxStagedBytes: 1 << 30,
  });
}

eachStore(t, 'migrations apply once and values round-trip', async (t, f) => {
  const s = await f.open();
  const ids = (await s.all<{ id: string }>('SELECT id FROM schema_migrations ORDER BY id')).map((r) => r.id);
  t.same(
    ids,
    MIGRATIONS.map((m) => m.id),
    'every migration recorded',
  );
  const again = await f.replica();
  t.equal((await again.all('SELECT id FROM schema_migrations')).length, MIGRATIONS.length, 'a second open applies nothing twice');
  const big = Date.UTC(2100, 0, 1);
  const body = Buffer.from([0, 1, 2, 255]);
  const id = (await s.get<{ id: number }>(
    'INSERT INTO staging (site, batch_id, received, encoding, body, bytes, extra) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id',
    ['s', 'b', big, 'identity', body, 4, null],
  ))!.id;
  const row = await s.get<{ received: number; body: Buffer; extra: null }>('SELECT received, body, extra FROM staging WHERE id = ?', [id]);
  t.same(row, { received: big, body, extra: null }, 'int64 as number, bytes as Buffer, null as null');
  await s.run('INSERT INTO twin_metrics (device, metric, value, unit, ts, epoch, seq) VALUES (?, ?, ?, ?, ?, ?, ?)', [
    'd',
    'm',
    0.1 + 0.2,
    'u',
    big,
    1,
    2,
  ]);
  t.equal((await s.get<{ value: number }>('SELECT value FROM twin_metrics'))!.value, 0.1 + 0.2, 'doubles keep every bit');
  const sum = await s.get<{ n: number; total: number }>('SELECT count(*) AS n, sum(ts) AS total FROM twin_metrics');
  t.same(sum, { n: 1, total: big }, 'count and sum are numbers');
});

eachStore(t, 'a transaction commits everything or nothing; hooks and changes only on commit', async (t, f) => {
  const s = await f.open();
  let hooked = 0;
  await t.rejects(
    s.tx(async (tx) => {
      await tx.run("INSERT INTO meta (k, v) VALUES ('x', 1)");
      tx.emit({ type: 'twin', site: 's', device: 'd', data: {} });
      tx.afterCommit(() => hooked++);
      throw new Error('boom');
    }),
    /boom/,
  );
  t.equal(await s.get("SELECT v FROM meta WHERE k = 'x'"), undefined, 'rolled back');
  t.equal((await s.get<{ n: number }>('SELECT count(*) AS n FROM changes'))!.n, 0, 'no change row');
  t.equal(hooked, 0, 'no hook');
  await s.tx(async (tx) => {
    await tx.run("INSERT INTO meta (k, v) VALUES ('x', 1)");
    tx.afterCommit(() => hooked++);
  });
  t.equal(hooked, 1, 'hook after commit');
  t.same(await s.get("SELECT v FROM meta WHERE k = 'x'"), { v: 1 });
});

eachStore(t, 'change feed: commit order, resume after an id, other replicas woken', async (t, f) => {
  const a = await f.open();
  const b = await f.replica();
  const feed = new ChangeFeed(b, { pollMs: 60_000 });
  await feed.start();
  t.teardown(() => feed.stop());
  const live: Change[] = [];
  const off = await feed.subscribe((c) => void live.push(c));
  for (let i = 0; i < 5; i++) await a.tx(async (tx) => tx.emit({ type: 'twin', site: 's', device: `d${i}`, data: { i } }));
  // No poll for a minute: only a wake-up (in-process, or NOTIFY from the other replica) delivers.
  await waitFor(() => live.length === 5, 3000, 'five live changes');
  t.same(
    live.map((c) => c.data['i']),
    [0, 1, 2, 3, 4],
    'in commit order',
  );
  t.ok(
    live.every((c, i) => i === 0 || c.id > live[i - 1]!.id),
    'ids increase',
  );
  off();
  const resumed: Change[] = [];
  const off2 = await feed.subscribe((c) => void resumed.push(c), live[1]!.id);
  t.same(
    resumed.map((c) => c.data['i']),
    [2, 3, 4],
    'everything after the resume id, once',
  );
  await a.tx(async (tx) => tx.emit({ type: 'twin', site: 's', device: 'd5', data: { i: 5 } }));
  await waitFor(() => resumed.length === 4, 3000, 'then live');
  t.equal(resumed[3]!.data['i'], 5, 'no duplicate between backlog and live');
  off2();
});

eachStore(t, 'ids taken after ordered() become visible in id order', async (t, f) => {
  const a = await f.open();
  const b = await f.replica();
  const seen: number[] = [];
  let releaseFirst!: () => void;
  const gate = new Promise<void>((r) => (releaseFirst = r));
  let firstInside = false;
  const first = a.tx(async (tx) => {
    await tx.ordered();
    await tx.get("INSERT INTO audit (at, actor, actor_id, role, action, detail) VALUES (1, 'a', 'a', 'admin', 'first', '{}') RETURNING id");
    firstInside = true;
    await gate;
  });
  await waitFor(() => firstInside, 5000, 'the first transaction to hold its order and its row');
  const second = b.tx(async (tx) => {
    await tx.ordered();
    seen.push((await tx.get<{ n: number }>("SELECT count(*) AS n FROM audit WHERE action = 'first'"))!.n);
  });
  // About time: the second transaction must still be waiting after 100 ms (a check that nothing happens).
  await new Promise((r) => setTimeout(r, 100));
  t.same(seen, [], 'the second waits for the first to commit');
  releaseFirst();
  await Promise.all([first, second]);
  t.same(seen, [1], "then sees the first's row");
});

eachStore(t, 'a lease has one holder; it passes on when the holder goes', async (t, f) => {
  const a = await f.open();
  const la = a.lease('job', 100);
  await waitFor(() => la.held, 3000, 'first holder');
  if (f.kind === 'sqlite') {
    t.pass('SQLite: one process, always held');
    return;
  }
  const b = await f.replica();
  const lb = b.lease('job', 100);
  // About time: the second lease must still be waiting after 300 ms (3 retry intervals); nothing emits "not taken".
  await new Promise((r) => setTimeout(r, 300));
  t.notOk(lb.held, 'the second waits');
  await a.close(); // a killed replica's session ends the same way
  await waitFor(() => lb.held, 3000, 'taken over within the retry interval');
  await lb.release();
});

eachStore(t, 'concurrent If-Match writes on several replicas: exactly one wins', async (t, f) => {
  const stores = [await f.open(), await f.replica(), await f.replica()];
  const p = await pipeline(stores[0]!);
  await p.ingest({ raw: Buffer.from(JSON.stringify(envelope('b1', 'site-a', [telemetry('dev-1', 1, readings(2))]))) });
  const twins = stores.map((s) => services(s).twins);
  const etag = (await twins[0]!.getTwin('dev-1'))!.etag;
  const results = await Promise.allSettled(
    Array.from({ length: 30 }, (_, i) => twins[i % 3]!.patchDesired('dev-1', { n: i }, etag, admin)),
  );
  const won = results.filter((r) => r.status === 'fulfilled');
  const lost = results.filter((r) => r.status === 'rejected');
  t.equal(won.length, 1, 'one write wins');
  t.ok(
    lost.every((r) => isEdgetwinError((r as PromiseRejectedResult).reason, 'EDGETWIN_ERR_PRECONDITION_FAILED')),
    'every other one is 412',
  );
  const twin = (await twins[2]!.getTwin('dev-1'))!;
  t.equal(twin.desired.$version, 1, 'one desired version');
  t.equal((await services(stores[1]!).audit.list({ device: 'dev-1', limit: 10 })).items.length, 1, 'one audit entry');
});

eachStore(t, 'the same batch on three replicas at once is stored once; overlapping identities once', async (t, f) => {
  const stores = [await f.open(), await f.replica(), await f.replica()];
  const pipes = await Promise.all(stores.map((s) => pipeline(s)));
  const raw = Buffer.from(
    JSON.stringify(envelope('same', 'site-a', [telemetry('dev-1', 1, readings(50)), telemetry('dev-2', 1, readings(50))])),
  );
  const same = await Promise.all(pipes.map((p) => p.ingest({ raw })));
  t.equal(
    same.reduce((n, r) => n + r.stored, 0),
    100,
    'stored once',
  );
  t.equal(same.filter((r) => r.duplicateBatch).length, 2, 'the other two are duplicates of the batch');
  // Other batch ids with overlapping identities (a collector's retry after a lost answer, re-batched).
  const overlapping = await Promise.all(
    pipes.map((p, i) =>
      p.ingest({ raw: Buffer.from(JSON.stringify(envelope(`o-${i}`, 'site-a', [telemetry('dev-3', 1, readings(40, 1 + i * 20))]))) }),
    ),
  );
  t.equal(
    overlapping.reduce((n, r) => n + r.stored, 0),
    80,
    'each of seq 1..80 once',
  );
  t.equal(
    overlapping.reduce((n, r) => n + r.duplicates, 0),
    40,
    'the overlap counted as duplicates',
  );
  const staged = await stores[0]!.get<{ n: number }>('SELECT count(*) AS n FROM staging');
  t.equal(staged!.n, 4, 'one staging row per stored batch');
  const twin = (await services(stores[2]!).twins.getTwin('dev-3'))!;
  t.equal(twin.readings, 80, 'the twin counts each reading once');
});

eachStore(t, 'one device id claimed by three sites on three replicas at once: one owner, the others refused', async (t, f) => {
  const stores = [await f.open(), await f.replica(), await f.replica()];
  const pipes = await Promise.all(stores.map((s) => pipeline(s)));
  const sites = ['site-a', 'site-b', 'site-c'];
  // The same identities (device, epoch 1, seq 1..20) from three sites: the old code stored one and
  // answered the others "duplicates"; now exactly one site owns the id and the others are refused.
  const results = await Promise.all(
    pipes.map((p, i) =>
      p.ingest({ raw: Buffer.from(JSON.stringify(envelope(`claim-${i}`, sites[i]!, [telemetry('shared-1', 1, readings(20))]))) }),
    ),
  );
  const owner = (await services(stores[0]!).twins.getTwin('shared-1'))!.site;
  const won = results.filter((r) => r.stored === 20);
  const refused = results.filter((r) => r.rejected.some((x) => x.code === 'EDGETWIN_ERR_DEVICE_CLAIMED'));
  t.equal(won.length, 1, 'one site stored its readings');
  t.equal(won[0]!.site, owner, '… the one that owns the device');
  t.equal(refused.length, 2, 'the two others were refused with DEVICE_CLAIMED');
  t.ok(
    refused.every((r) => r.stored === 0 && r.duplicates === 0 && r.quality.rejected === 20),
    'never "duplicates": refused, their readings counted as rejected',
  );
  const again = await pipes[0]!.ingest({
    raw: Buffer.from(JSON.stringify(envelope(`claim-x`, owner, [telemetry('shared-1', 2, readings(5))]))),
  });
  t.equal(again.stored, 5, 'the owner keeps sending');
});

eachStore(t, 'staging: every replica stages, the writer drains; a stale writer cannot move the cursor', async (t, f) => {
  const a = await f.open();
  const b = await f.replica();
  const pa = await pipeline(a);
  const pb = await pipeline(b);
  await pa.ingest({ raw: Buffer.from(JSON.stringify(envelope('s1', 'x', [telemetry('d', 1, readings(3))]))) });
  await pb.ingest({ raw: Buffer.from(JSON.stringify(envelope('s2', 'x', [telemetry('d', 1, readings(3, 4))]))) });
  const writer = await StagingStore.open(a, 1 << 20);
  const stale = await StagingStore.open(b, 1 << 20);
  const batches = await writer.take(1 << 20);
  t.same(
    batches.map((x) => x.batchId),
    ['s1', 's2'],
    "both replicas' batches, in id order",
  );
  await writer.release(batches[1]!.id);
  t.equal(writer.pendingBatches, 0);
  await t.rejects(stale.release(batches[1]!.id), CursorMoved, 'a writer that did not see the move is refused');
  await stale.refresh();
  t.equal(stale.cursor(), batches[1]!.id, 'after a refresh it follows');
  t.equal(stale.pendingBatches, 0);
});

eachStore(t, 'staging: bodies not in memory are read back exactly, many per query, gzip inflated', async (t, f) => {
  const s = await f.open();
  const landing = await StagingStore.open(s, 0);
  const bodies = Array.from({ length: 230 }, (_, i) => Buffer.from(JSON.stringify({ messages: [], n: i, pad: 'x'.repeat(i) })));
  for (const [i, body] of bodies.entries()) {
    const stored = i % 2 === 0 ? { encoding: 'gzip' as const, bytes: gzipSync(body) } : { encoding: 'identity' as const, bytes: body };
    await s.tx((tx) => landing.insert(tx, 'site', `b-${i}`, 1, stored, body.length, null));
  }
  const writer = await StagingStore.open(s, 0);
  const taken = await writer.take(1 << 30);
  t.equal(taken.length, bodies.length, 'every staged batch, over more than one read chunk');
  t.ok(
    taken.every((b, i) => b.batchId === `b-${i}` && b.body.equals(bodies[i]!)),
    'each body as received, in id order, gzip inflated',
  );
  t.equal(writer.bodyBytesInMemory, 0, 'read-back bodies are not kept');
});

eachStore(t, 'staging: the writer keeps the bodies it stages itself and frees them at release', async (t, f) => {
  const s = await f.open();
  const writer = await StagingStore.open(s, 1 << 20);
  const body = Buffer.from('{"messages":[]}');
  const stage = async (name: string): Promise<number> => {
    const id = await s.tx((tx) => writer.insert(tx, 'site', name, 1, { encoding: 'identity', bytes: body }, body.length, null));
    writer.remember({ id, site: 'site', batchId: name, received: 1, body, extra: null });
    return id;
  };
  if (f.kind === 'postgres') {
    await stage('not-leader');
    t.equal(writer.bodyBytesInMemory, 0, 'a replica that does not write keeps no bodies');
    writer.keepOwnBodies = true;
  }
  const id = await stage('own');
  t.equal(writer.bodyBytesInMemory, body.length, 'kept while it waits');
  await writer.refresh();
  const taken = await writer.take(1 << 20);
  t.equal(taken.find((b) => b.id === id)?.body, body, 'served from memory, not read back');
  await writer.release(taken[taken.length - 1]!.id);
  t.equal(writer.bodyBytesInMemory, 0, 'freed once written');
  t.equal(writer.pendingBatches, 0);
});

eachStore(t, 'tokens and audit', async (t, f) => {
  const s = await f.open();
  const { tokens, audit } = services(s);
  t.equal(await tokens.everCreated(), 0);
  const c = await s.tx(async (tx) => {
    const made = await tokens.create({ role: 'viewer', site: 'site-a', createdBy: 'test' }, tx);
    await audit.record(tx, admin, 'token.create', { site: 'site-a' }, { id: made.info.id });
    return made;
  });
  t.match(await tokens.lookup(c.token), { role: 'viewer', site: 'site-a' });
  t.ok(await tokens.revoke(c.info.id));
  t.equal(await tokens.lookup(c.token), undefined, 'revoked');
  t.equal(await tokens.everCreated(), 1);
  t.match((await audit.list({ site: 'site-a', limit: 5 })).items, [{ action: 'token.create', detail: { id: c.info.id } }]);
  const at = Date.now() + 60_000;
  const expiring = await tokens.create({ role: 'operator', createdBy: 'test', expiresAt: at });
  t.match(await tokens.lookup(expiring.token), { role: 'operator', expiresAt: at }, 'valid until it expires');
  t.equal(await tokens.lookup(expiring.token, at), undefined, 'refused from its expiry on');
  t.equal((await tokens.list()).find((x) => x.id === expiring.info.id)?.expiresAt, at, 'listed with its expiry');
});

t.test('an existing twins.db from before migrations is upgraded in place [sqlite]', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgetwin-legacy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const old = new Database(join(dir, 'twins.db'));
  old.exec(`CREATE TABLE twins (device TEXT PRIMARY KEY, site TEXT NOT NULL, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, readings INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE batches (batch_id TEXT PRIMARY KEY, site TEXT NOT NULL, received INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
    INSERT INTO twins VALUES ('old-1', 'site-a', 1, 2, 7);
    INSERT INTO batches VALUES ('b-old', 'site-a', 3);
    INSERT INTO meta VALUES ('lake_cursor', 5);`);
  old.close();
  const s = await SqliteStore.open({ stateDir: dir });
  t.teardown(() => s.close());
  t.equal((await s.all('SELECT id FROM schema_migrations')).length, MIGRATIONS.length, 'every migration applied');
  t.match(
    await s.get('SELECT * FROM twins'),
    { device: 'old-1', readings: 7, tags: '{}', version: 1, desired: '{}' },
    'rows kept, new columns defaulted',
  );
  t.match(await s.get('SELECT * FROM batches'), { batch_id: 'b-old', readings: 0, score: null });
  t.same(await s.get("SELECT v FROM meta WHERE k = 'lake_cursor'"), { v: 5 }, 'the lake cursor is kept');
  const twin = await new TwinStore(s, new AuditLog(s), cloudDefaults.twins).getTwin('old-1');
  t.match(twin, { deviceId: 'old-1', site: 'site-a', readings: 7, $version: 1 }, 'served as a twin');
});

t.test('a PostgreSQL pool opens its kept connections before the first request, never more than its maximum', async (t) => {
  const pg = await sharedPostgres();
  const url = await pg.createDatabase();
  const backends = async (s: Store, app: string): Promise<number> =>
    (await s.get<{ n: number }>('SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = ?', [app]))!.n;
  const warm = await PostgresStore.open({ url, ...PG_TEST_OPTIONS, poolMin: 5, applicationName: 'warm-pool' });
  t.teardown(() => warm.close());
  t.equal(warm.pool.totalCount, 5, 'five pooled connections open before any request ran');
  t.ok((await backends(warm, 'warm-pool')) >= 5, 'and the server has them (plus, soon, the session connection)');
  const capped = await PostgresStore.open({ url, ...PG_TEST_OPTIONS, poolMax: 3, poolMin: 50, applicationName: 'capped-pool' });
  t.teardown(() => capped.close());
  t.equal(capped.pool.totalCount, 3, 'a minimum above the maximum opens the maximum');
  t.equal(loadCloudConfig(undefined, { stateDir: '/x' }, {}).store.poolMin, 10, 'the default keeps every default pooled connection');
  for (const poolMin of [-1, 1.5, 'ten', 201])
    t.throws(
      () => loadCloudConfig(undefined, { stateDir: '/x', store: { poolMin } }, {}),
      { code: 'EDGETWIN_ERR_CONFIG' },
      `poolMin ${poolMin} is refused`,
    );
});
