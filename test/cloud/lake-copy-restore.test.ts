/**
 * A database restored to an earlier point under a newer lake copy (the DR drill's case: PostgreSQL
 * point-in-time restore, the ADLS copy kept up to the loss). The database is the truth: files the
 * copy holds beyond its lake cursor are dropped (locally and in the container), new batches get
 * staging ids above everything the copy held, and silver holds each identity the database knows
 * once. Here with SQLite state copied while the cloud was stopped (an older snapshot of it).
 */
import { cpSync, rmSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import t from 'tap';
import { Cloud } from '../../cloud/cloud.js';
import { loadCloudConfig } from '../../cloud/config.js';
import { listFiles, TABLE_NAMES } from '../../cloud/lakehouse/layout.js';
import { createLogger } from '../../common/log.js';
import { BlobTestServer } from '../helpers/blob-server.js';
import { call, envelope, telemetry } from '../helpers/cloud.js';
import { tempDir } from '../helpers/util.js';

const DAY = Date.UTC(2026, 2, 1);

async function startCloud(stateDir: string, blob: BlobTestServer): Promise<Cloud> {
  const cfg = {
    stateDir,
    http: { port: 0 },
    lakehouse: {
      url: `${blob.endpoint}/lakehouse/dr`,
      blobConnectionString: blob.connectionString,
      blobSyncIntervalMs: 0,
      flushIntervalMs: 200,
      compaction: { intervalMs: 0 },
      retention: { intervalMs: 0 },
    },
  };
  const cloud = new Cloud(loadCloudConfig(undefined, cfg, {}), {
    log: createLogger('test', { level: 'silent' }),
    lakehouse: { blobPipeline: { retryOptions: { maxTries: 1 } } },
  });
  await cloud.start();
  return cloud;
}

async function ingest(cloud: Cloud, b: number): Promise<void> {
  const rs = Array.from({ length: 50 }, (_, i) => ({
    seq: b * 50 + i + 1,
    ts: DAY + (b * 50 + i) * 1000,
    metric: 'm',
    value: i,
    unit: 'u',
  }));
  const r = await call('POST', `${cloud.url}/v1/ingest`, { body: envelope(`dr-${b}`, 'site-dr', [telemetry('dr-1', 1, rs)]) });
  if (r.status !== 200) throw new Error(`ingest ${b}: ${r.status}`);
  await cloud.flush();
  await cloud.lake.mirror!.sync();
}

const silverLocal = (root: string): string[] =>
  listFiles(root, 'silver')
    .map((f) => relative(root, f.path).split(sep).join('/'))
    .sort();
const silverRemote = (blob: BlobTestServer): string[] =>
  blob
    .names('lakehouse')
    .filter((n) => n.startsWith('dr/silver/'))
    .map((n) => n.slice('dr/'.length))
    .sort();

t.test('an older database under a newer lake copy: the database wins, nothing twice, no name reused', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const blob = await new BlobTestServer().start();
  t.teardown(() => blob.close());
  const state = join(dir, 'state');

  let cloud = await startCloud(state, blob);
  await ingest(cloud, 0);
  await cloud.stop();
  cpSync(state, join(dir, 'snapshot'), { recursive: true }); // the restore point
  cloud = await startCloud(state, blob);
  await ingest(cloud, 1);
  await ingest(cloud, 2);
  const copyHi = Math.max(...listFiles(cloud.lake.root, 'silver').map((f) => f.hi));
  await cloud.stop();
  t.equal(silverRemote(blob).length, 3, 'the copy holds three micro-batches');

  // The disaster: the state and its lake are gone; the snapshot comes back, the lake from the copy.
  rmSync(state, { recursive: true, force: true });
  cpSync(join(dir, 'snapshot'), state, { recursive: true });
  rmSync(join(state, 'lakehouse'), { recursive: true, force: true });
  cloud = await startCloud(state, blob);
  t.teardown(() => cloud.stop());
  const cursor = cloud.staging.cursor();
  t.ok(cursor < copyHi, `the database's lake cursor (${cursor}) is behind the copy (${copyHi})`);
  t.ok(
    listFiles(cloud.lake.root, 'silver').every((f) => f.hi <= cursor),
    'files beyond the cursor are dropped from the working copy',
  );
  await cloud.lake.mirror!.sync();
  t.same(silverRemote(blob), silverLocal(cloud.lake.root), 'and from the container');
  t.equal((await cloud.identities('dr-1')).length, 50, 'the database knows the first batch only');

  await ingest(cloud, 3);
  const fresh = listFiles(cloud.lake.root, 'silver').filter((f) => f.lo > cursor);
  t.equal(fresh.length, 1, 'one new micro-batch');
  t.ok(fresh[0]!.lo > copyHi, `its staging ids start above everything the copy held (${fresh[0]!.lo} > ${copyHi})`);
  t.same(silverRemote(blob), silverLocal(cloud.lake.root), 'the copy follows');
  t.equal(listFiles(cloud.lake.root, 'silver').length, 2, 'silver: the restored batch and the new one');
  t.equal((await cloud.identities('dr-1')).length, 100, 'identities: once each');
  for (const table of TABLE_NAMES)
    t.ok(
      listFiles(cloud.lake.root, table).every((f) => f.hi <= cloud.staging.cursor()),
      `${table}: nothing beyond the cursor`,
    );
});
