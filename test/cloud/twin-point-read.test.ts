/**
 * A twin point read on SQLite and a real PostgreSQL (one contract): the one-statement read (twin row,
 * metrics and predictions as JSON, cloud/twins/twin-store.ts) gives exactly what separate queries
 * give — floats to the last bit, nulls, explanations, predictions — and the read caches follow a write
 * on this replica at once and one on another replica through the change feed, including a write
 * that lands while a read is under way. Then the per-device rule of the cache itself
 * (cloud/store/device-cache.ts): a read is kept unless its own device changed meanwhile.
 */
import t from 'tap';
import { AuditLog } from '../../cloud/audit/audit-log.js';
import { loadCloudConfig } from '../../cloud/config.js';
import { DerivedReadings } from '../../cloud/ingest/derived-readings.js';
import { DriftStore } from '../../cloud/drift/drift-store.js';
import { PredictionStore } from '../../cloud/predictions/prediction-store.js';
import { ChangeFeed } from '../../cloud/store/change-feed.js';
import { DeviceCache } from '../../cloud/store/device-cache.js';
import type { SqlValue, Store, Tx } from '../../cloud/store/store.js';
import { TwinStore } from '../../cloud/twins/twin-store.js';
import { twinView, type MetricRow, type TwinRow } from '../../cloud/twins/twin-view.js';
import type { Reading } from '../../common/wire/record.js';
import { rulPrediction } from '../helpers/readings.js';
import { eachStore } from '../helpers/stores.js';

const cfg = loadCloudConfig(undefined, { stateDir: '/nonexistent' }, {});
const T0 = Date.parse('2026-12-01T00:00:00Z');

/** Values a JSON round trip through the database could bend: shortest-exact floats, extremes, signs. */
const TRICKY = [0.1 + 0.2, 1 / 3, -2.5e-300, 1.7976931348623157e308, 123456789.12345679, 5e-324];

function reading(seq: number, metric: string, value: number, extra: Partial<Reading> = {}): Reading {
  return { seq, ts: T0 + seq * 1000, metric, value, unit: 'u', ...extra } as Reading;
}

async function ingest(store: Store, device: string, rs: Reading[]): Promise<void> {
  const { IngestPipeline } = await import('../../cloud/ingest/pipeline.js');
  const { QualityRules } = await import('../../cloud/ingest/quality.js');
  const { SeqIndex } = await import('../../cloud/ingest/seq-index.js');
  const { StagingStore } = await import('../../cloud/lakehouse/staging.js');
  const { DeviceOwnership } = await import('../../cloud/twins/ownership.js');
  const { createRegistry } = await import('../../common/metrics.js');
  const { createLogger } = await import('../../common/log.js');
  const audit = new AuditLog(store);
  const twins = new TwinStore(store, audit, cfg.twins);
  const p = new IngestPipeline({
    store,
    twins,
    ownership: new DeviceOwnership(store, twins, audit),
    seq: new SeqIndex(store),
    staging: await StagingStore.open(store, 1 << 20),
    quality: new QualityRules(cfg.quality),
    registry: createRegistry('cloud', false),
    log: createLogger('test', { level: 'silent' }),
    maxStagedBytes: 1 << 30,
  });
  const body = { v: 1, batchId: `b-${device}-${rs[0]!.seq}`, site: 'plant-1', messages: [{ v: 1, device, epoch: 1, readings: rs }] };
  await p.ingest({ raw: Buffer.from(JSON.stringify(body)) });
}

async function predict(store: Store, device: string, seq: number, asset: string, rul: number): Promise<void> {
  const d = new DerivedReadings({ predictions: new PredictionStore(store), drift: new DriftStore(store) });
  d.take('plant-1', device, 1, rulPrediction(seq, T0 + seq * 60_000, asset, rul));
  await store.tx((tx) => d.persist(tx, T0));
}

/** The twin as separate statements read it (the path the one statement replaced). */
async function reference(store: Store, device: string) {
  const row = (await store.get<TwinRow>('SELECT * FROM twins WHERE device = ?', [device]))!;
  const metrics = await store.all<MetricRow>('SELECT * FROM twin_metrics WHERE device = ? ORDER BY metric', [device]);
  const { health: _health, ...view } = twinView(cfg.twins, row, metrics);
  return { view, predictions: await new PredictionStore(store).latest(device) };
}

eachStore(t, 'a point read is one statement and gives what separate queries give', async (t, f) => {
  const store = await f.open();
  await ingest(store, 'dev-1', [
    ...TRICKY.map((v, i) => reading(i + 1, `m${i}`, v)),
    reading(20, 'vib', 7.25, {
      score: 0.9712345678901234,
      model: 'forecaster-2.1.0',
      alert: true,
      explain: { detector: 'forecast', surprise: 4.5, baseline: 1.25, groups: [{ group: 'vib', contribution: 1 }] },
    }),
  ]);
  await predict(store, 'dev-1', 1, 'engine-2', 40.125);
  await predict(store, 'dev-1', 2, 'engine-1', 0.1 + 0.7);
  await ingest(store, 'dev-2', [reading(1, 'temp', 21)]);

  const twins = new TwinStore(store, new AuditLog(store), cfg.twins);
  const predictions = new PredictionStore(store);
  const statements: string[] = [];
  const all = store.all.bind(store);
  const get = store.get.bind(store);
  store.all = (sql, p) => (statements.push(sql), all(sql, p));
  store.get = (sql, p) => (statements.push(sql), get(sql, p));
  const parts = (await twins.getTwinParts('dev-1', predictions))!;
  t.equal(statements.length, 1, 'a cold read is one statement');
  store.all = all;
  store.get = get;

  const want = await reference(store, 'dev-1');
  const { health: _h, ...view } = parts.view;
  t.same(view, want.view, 'the view equals the one built from separate queries');
  t.same(parts.predictions, want.predictions, 'predictions too');
  for (const [i, v] of TRICKY.entries()) t.equal(parts.view.reported[`m${i}`]!.value, v, `m${i} = ${v} exactly`);
  t.equal(parts.view.reported['vib']!.score, 0.9712345678901234, 'a score to the last digit');
  t.equal(parts.predictions!['engine-1']!.rulCycles, 0.1 + 0.7, 'a prediction to the last digit');
  t.same(Object.keys(parts.predictions!), ['engine-1', 'engine-2'], 'predictions ordered by asset');

  const plain = (await twins.getTwinParts('dev-2', predictions))!;
  t.same(plain.predictions, {}, 'a twin without predictions has none');
  t.same(plain.view.reported['temp']!.value, 21);
  t.equal(await twins.getTwinParts('nope', predictions), undefined, 'no such twin');

  const again = (await twins.getTwinParts('dev-1', predictions))!;
  t.equal(again.view, parts.view, 'then served from the cache (the same object)');
  t.equal(again.predictions, parts.predictions);
});

eachStore(t, 'point reads follow writes here at once and on another replica through the change feed', async (t, f) => {
  const store = await f.open();
  const other = await f.replica();
  await ingest(store, 'dev-1', [reading(1, 'temp', 20)]);
  const feed = new ChangeFeed(other, { pollMs: 60_000 });
  await feed.start();
  t.teardown(() => feed.stop());
  // The other replica: only the change feed tells it that the device changed.
  const twins = new TwinStore(other, new AuditLog(other), cfg.twins);
  const predictions = new PredictionStore(other);
  twins.watch(feed);
  predictions.watch(feed);
  const read = async () => (await twins.getTwinParts('dev-1', predictions))!;
  t.equal((await read()).view.reported['temp']!.value, 20);
  t.same((await read()).predictions, {});

  await ingest(store, 'dev-1', [reading(2, 'temp', 22.5)]);
  await predict(store, 'dev-1', 1, 'engine-1', 99);
  await feed.wake();
  const after = await read();
  t.equal(after.view.reported['temp']!.value, 22.5, 'the new value once the change arrives');
  t.equal(after.predictions!['engine-1']!.rulCycles, 99, 'and the new prediction');

  // A write that commits while a cold read is under way: that read is answered but not kept.
  await ingest(store, 'dev-1', [reading(3, 'temp', 23)]);
  await feed.wake();
  const get = other.get.bind(other);
  other.get = async <T>(sql: string, p?: readonly SqlValue[]): Promise<T | undefined> => {
    const row = await get<T>(sql, p);
    other.get = get;
    await ingest(store, 'dev-1', [reading(4, 'temp', 24)]);
    await feed.wake();
    return row;
  };
  t.equal((await read()).view.reported['temp']!.value, 23, 'the raced read answers what it read');
  t.equal((await read()).view.reported['temp']!.value, 24, 'and was not cached: the next read has the newer value');
});

t.test('the read cache keeps a read unless its own device changed meanwhile', async (t) => {
  const cache = new DeviceCache<string>();
  const before = cache.mark();
  cache.forget('dev-2');
  cache.set('dev-1', 'one', before);
  t.equal(cache.get('dev-1'), 'one', 'another device changing does not stop it (continuous ingest)');
  const raced = cache.mark();
  cache.forget('dev-1');
  cache.set('dev-1', 'stale', raced);
  t.equal(cache.get('dev-1'), undefined, 'its own device changing does');
  cache.set('dev-1', 'fresh', cache.mark());
  t.equal(cache.get('dev-1'), 'fresh');

  // Past the drops it remembers one by one, a read older than the forgotten ones is not kept.
  const old = cache.mark();
  cache.forget('dev-3');
  for (let i = 0; i < 100_001; i++) cache.forget(`other-${i}`);
  cache.set('dev-3', 'stale', old);
  t.equal(cache.get('dev-3'), undefined, 'a drop it no longer lists still refuses an older read');
  cache.set('dev-3', 'fresh', cache.mark());
  t.equal(cache.get('dev-3'), 'fresh', 'a read taken after it is kept');
});

t.test('a write in a transaction drops the entry at once and again at commit', async (t) => {
  const cache = new DeviceCache<string>();
  cache.set('dev-1', 'old', cache.mark());
  const hooks: (() => void)[] = [];
  const tx = { afterCommit: (fn: () => void) => hooks.push(fn) } as unknown as Tx;
  cache.touch(tx, 'dev-1');
  t.equal(cache.get('dev-1'), undefined, 'dropped at once');
  const during = cache.mark();
  cache.set('dev-1', 'read before the commit', during);
  for (const h of hooks) h();
  t.equal(cache.get('dev-1'), undefined, 'what a read found before the commit goes at the commit');
});
