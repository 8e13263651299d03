/**
 * The lakehouse's Azure Blob copy (issue #9), with the real `@azure/storage-blob` SDK against the
 * protocol-level Blob test server on loopback (test/helpers/blob-server.ts): every committed
 * Parquet file appears in the container under the same path with the same bytes, compaction
 * deletes are mirrored, a cloud with an empty local lakehouse (same state, or a fresh one)
 * restores it and answers the same history, and a failing container never holds up ingest.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import t, { type Test } from 'tap';
import type { Cloud } from '../../cloud/cloud.js';
import { cloudEnv, loadCloudConfig } from '../../cloud/config.js';
import { parseBlobUrl } from '../../cloud/lakehouse/blob-client.js';
import { redactUrl } from '../../common/redact.js';
import { listFiles, TABLE_NAMES } from '../../cloud/lakehouse/layout.js';
import { deepMerge } from '../../common/config.js';
import { BlobTestServer } from '../helpers/blob-server.js';
import { call, envelope, startTestCloud, telemetry } from '../helpers/cloud.js';
import { tempDir, waitFor } from '../helpers/util.js';

const DAY = Date.UTC(2026, 2, 1);
const PREFIX = 'plant/lake';

async function startCloud(stateDir: string, blob: BlobTestServer, extra: Record<string, unknown> = {}): Promise<Cloud> {
  const lakehouse = {
    url: `${blob.endpoint}/lakehouse/${PREFIX}`,
    blobConnectionString: blob.connectionString,
    blobSyncIntervalMs: 0,
    compaction: { minFiles: 2 },
  };
  return startTestCloud(stateDir, deepMerge({ lakehouse }, extra), { lakehouse: { blobPipeline: { retryOptions: { maxTries: 1 } } } });
}

/** Every local data file, relative path → bytes. */
function localFiles(root: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const table of TABLE_NAMES)
    for (const f of listFiles(root, table)) out.set(relative(root, f.path).split(sep).join('/'), readFileSync(f.path));
  return out;
}

function remoteFiles(blob: BlobTestServer): Map<string, Buffer> {
  return new Map(blob.names('lakehouse').map((n) => [n.slice(PREFIX.length + 1), blob.blob('lakehouse', n)!]));
}

function sameFiles(t: Test, local: Map<string, Buffer>, remote: Map<string, Buffer>, what: string): void {
  t.same([...remote.keys()].sort(), [...local.keys()].sort(), `${what}: the same paths`);
  t.ok(
    [...local].every(([k, v]) => remote.get(k)?.equals(v)),
    `${what}: byte-identical`,
  );
}

async function ingest(cloud: Cloud, b: number): Promise<void> {
  const rs = Array.from({ length: 60 }, (_, i) => ({
    seq: b * 60 + i + 1,
    ts: DAY + (b * 60 + i) * 1000,
    metric: 'temperature',
    value: (b * 60 + i) % 40,
    unit: 'degC',
    ...(i === 5 ? { score: 0.95, alert: true } : {}),
  }));
  const r = await call('POST', `${cloud.url}/v1/ingest`, { body: envelope(`bl-${b}`, 'site-b', [telemetry('bl-1', 1, rs)]) });
  if (r.status !== 200) throw new Error(`ingest ${b}: ${r.status}`);
}

t.test('container URLs: blob, dfs, abfss and path-style forms; SAS redacted', async (t) => {
  t.match(parseBlobUrl('https://acct.blob.core.windows.net/lake/edgetwin/prod?sv=2024&sig=SECRET'), {
    containerUrl: 'https://acct.blob.core.windows.net/lake',
    account: 'acct',
    container: 'lake',
    prefix: 'edgetwin/prod',
    sas: 'sv=2024&sig=SECRET',
  });
  t.match(parseBlobUrl('abfss://lakehouse@acct.dfs.core.windows.net/'), {
    containerUrl: 'https://acct.blob.core.windows.net/lakehouse',
    prefix: '',
    sas: '',
  });
  t.match(parseBlobUrl('https://acct.dfs.core.windows.net/fsys/a/b'), {
    containerUrl: 'https://acct.blob.core.windows.net/fsys',
    prefix: 'a/b',
  });
  t.match(parseBlobUrl('http://127.0.0.1:10000/devstoreaccount1/lake/x'), {
    containerUrl: 'http://127.0.0.1:10000/devstoreaccount1/lake',
    account: 'devstoreaccount1',
    prefix: 'x',
  });
  t.throws(() => parseBlobUrl('https://acct.blob.core.windows.net/'), /no valid container/);
  t.throws(() => parseBlobUrl('s3://bucket/x'), /must be https/);
  t.notMatch(redactUrl('https://acct.blob.core.windows.net/lake?sv=1&sig=SECRET'), /SECRET/);
  t.throws(
    () => loadCloudConfig(undefined, { stateDir: '/tmp/x', lakehouse: { url: 'https://acct.blob.core.windows.net/Bad_Name' } }, {}),
    { code: 'EDGETWIN_ERR_CONFIG', message: /"lakehouse\.url"/ },
  );
  t.throws(
    () => loadCloudConfig(undefined, { stateDir: '/tmp/x', lakehouse: { blobConnectionString: 'AccountName=a;AccountKey=b' } }, {}),
    { message: /"lakehouse\.blobConnectionString" needs lakehouse\.url/ },
  );
});

t.test('every EDGETWIN_ variable the Terraform sets is read by the cloud config', async (t) => {
  const tf = readFileSync(new URL('../../deploy/azure/terraform/main.tf', import.meta.url), 'utf8');
  const names = [...tf.matchAll(/name\s*=\s*"(EDGETWIN_[A-Z0-9_]+)"/g)].map((m) => m[1]!);
  t.ok(names.length >= 8, `found ${names.join(', ')}`);
  for (const n of names) t.ok(n in cloudEnv, `${n} is mapped`);
  const cfg = loadCloudConfig(
    undefined,
    { stateDir: '/tmp/x' },
    {
      EDGETWIN_CLOUD_HOST: '0.0.0.0',
      EDGETWIN_EVENTHUBS_ENABLED: 'true',
      EDGETWIN_EVENTHUB_NAMESPACE: 'ehns.servicebus.windows.net',
      EDGETWIN_EVENTHUB_NAME: 'telemetry',
      EDGETWIN_EVENTHUB_CONSUMER_GROUP: 'cloud',
      EDGETWIN_LAKEHOUSE_URL: 'abfss://lakehouse@acct.dfs.core.windows.net/',
      EDGETWIN_CHECKPOINT_STORE: 'blob',
      EDGETWIN_CHECKPOINT_CONTAINER_URL: 'https://acct.blob.core.windows.net/checkpoints',
    },
  );
  t.match(cfg, {
    http: { host: '0.0.0.0' },
    lakehouse: { url: 'abfss://lakehouse@acct.dfs.core.windows.net/' },
    eventHubs: {
      enabled: true,
      fullyQualifiedNamespace: 'ehns.servicebus.windows.net',
      eventHubName: 'telemetry',
      consumerGroup: 'cloud',
      checkpoint: { store: 'blob', containerUrl: 'https://acct.blob.core.windows.net/checkpoints' },
    },
  });
  t.throws(
    () =>
      loadCloudConfig(
        undefined,
        { stateDir: '/tmp/x' },
        {
          EDGETWIN_CHECKPOINT_STORE: 'blob',
          EDGETWIN_EVENTHUBS_ENABLED: 'true',
          EDGETWIN_EVENTHUB_NAMESPACE: 'n',
          EDGETWIN_EVENTHUB_NAME: 'h',
          EDGETWIN_CHECKPOINT_CONTAINER_URL: 'https://acct.blob.core.windows.net/ckpt/sub',
        },
      ),
    { message: /"eventHubs\.checkpoint\.containerUrl" must name the container only/ },
  );
});

t.test('committed Parquet mirrored byte for byte; compaction deletes mirrored; restores answer the same history', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const blob = await new BlobTestServer({ maxPageSize: 7 }).start();
  t.teardown(() => blob.close());
  let cloud = await startCloud(join(dir, 'a'), blob);
  for (let b = 0; b < 4; b++) {
    await ingest(cloud, b);
    await cloud.flush(); // one micro-batch per post: several small files per partition
  }
  await cloud.lake.mirror!.sync();
  const root = cloud.lake.root;
  t.equal(listFiles(root, 'silver').length, 4);
  sameFiles(t, localFiles(root), remoteFiles(blob), 'after 4 flushes');
  t.ok(
    blob.names('lakehouse').some((n) => n.startsWith(`${PREFIX}/bronze/batches/site=site-b/date=`)),
    'bronze, silver and gold all mirrored',
  );
  t.ok(blob.names('lakehouse').some((n) => n.startsWith(`${PREFIX}/gold/rollup_1h/site=site-b/date=2026-03-01/part-`)));

  const report = await cloud.lake.compact();
  t.match(report, { merged: 5, inputFiles: 20 });
  await cloud.lake.mirror!.sync();
  t.equal(listFiles(root, 'silver').length, 1);
  sameFiles(t, localFiles(root), remoteFiles(blob), 'after compaction');
  t.ok(
    blob.names('lakehouse').every((n) => !/part-\d+-\d+-\d+\.parquet$/.test(n) || n.includes('quarantine')),
    'the merged inputs are gone from the container',
  );
  t.ok(blob.requests.some((r) => r.method === 'DELETE' && r.status === 202));
  t.ok(
    blob.requests.every((r) => r.auth === 'sharedkey'),
    'the connection string signs every request',
  );

  const twinQuery = `/v1/twins/bl-1/telemetry?metric=temperature&from=${DAY}&to=${DAY + 240_000}`;
  const raw = (await call('GET', `${cloud.url}${twinQuery}`)).body;
  const perMinute = (await call('GET', `${cloud.url}${twinQuery}&bucket=1m`)).body;
  t.equal(raw.points.length, 240);
  const anomalies = (await call('GET', `${cloud.url}/v1/anomalies?site=site-b&from=${DAY}&to=${DAY + 240_000}`)).body;
  t.equal(anomalies.items.length, 4);
  const q = { device: 'bl-1', site: 'site-b', metric: 'temperature', from: DAY, to: DAY + 240_000, bucketMs: 60_000, limit: 1000 };
  const lakeAnswer = await cloud.lake.query.telemetry(q);
  await cloud.stop();

  // The local lakehouse is lost (ephemeral disk), the state is kept: restored from the container.
  rmSync(root, { recursive: true, force: true });
  cloud = await startCloud(join(dir, 'a'), blob);
  sameFiles(t, localFiles(cloud.lake.root), remoteFiles(blob), 'restored into the same state');
  t.same((await call('GET', `${cloud.url}${twinQuery}`)).body, raw, 'the same raw history');
  t.same((await call('GET', `${cloud.url}${twinQuery}&bucket=1m`)).body, perMinute, 'the same downsampled history');
  await cloud.stop();

  // A new host: empty state and empty lakehouse.
  const fresh = await startCloud(join(dir, 'b'), blob);
  t.teardown(() => fresh.stop());
  t.same(await fresh.lake.query.telemetry(q), lakeAnswer, 'a fresh cloud answers the same history query');
  t.same(
    (await call('GET', `${fresh.url}/v1/anomalies?site=site-b&from=${DAY}&to=${DAY + 240_000}`)).body,
    anomalies,
    'and the same anomalies',
  );
  const restoredCursor = fresh.staging.cursor();
  t.ok(restoredCursor >= 4, `the lake cursor moved to what the restored files cover (${restoredCursor})`);

  // New data after the restore gets staging ids above the restored files: no name collides.
  await ingest(fresh, 4);
  await fresh.flush();
  await fresh.lake.mirror!.sync();
  const newSilver = listFiles(fresh.lake.root, 'silver').filter((f) => f.lo > restoredCursor);
  t.equal(newSilver.length, 1, 'the new micro-batch is a new file above the restored range');
  sameFiles(t, localFiles(fresh.lake.root), remoteFiles(blob), 'after new data on the new host');
  t.equal((await fresh.identities('bl-1')).length, 300, 'old and new readings, once each');
});

t.test('an unreachable container never holds up ingest; the mirror catches up and /healthz tells', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const blob = await new BlobTestServer().start();
  t.teardown(() => blob.close());
  const cloud = await startCloud(join(dir, 'a'), blob);
  t.teardown(() => cloud.stop());
  blob.failNext = 1_000_000;
  await ingest(cloud, 0);
  await cloud.flush();
  await t.rejects(cloud.lake.mirror!.sync(), 'the sync fails while the container answers 503');
  await ingest(cloud, 1);
  await cloud.flush();
  t.equal(listFiles(cloud.lake.root, 'silver').length, 2, 'ingest and local Parquet carry on');
  const status = cloud.lake.mirror!.status();
  t.ok(
    status.pendingUploads > 0 && /busy/i.test(status.lastError ?? ''),
    `pending uploads and the error are reported: ${JSON.stringify(status)}`,
  );
  t.equal(blob.names('lakehouse').length, 0);
  const m = (await call('GET', `${cloud.url}/metrics`)).body as string;
  t.match(m, /edgetwin_cloud_lake_blob_ops_total\{op="upload",result="error",component="cloud"\} [1-9]/);

  blob.failNext = 0;
  // The retry timer (backoff from 1 s) uploads without being asked.
  await waitFor(
    () => cloud.lake.mirror!.status().lastError === null && blob.names('lakehouse').length > 0,
    30_000,
    'the mirror to catch up',
  );
  await cloud.lake.mirror!.sync();
  sameFiles(t, localFiles(cloud.lake.root), remoteFiles(blob), 'caught up');
  t.equal(cloud.health().ok, true);
  t.notMatch(JSON.stringify(cloud.health()), new RegExp(blob.key.slice(0, 20).replace(/[+/=]/g, '.')), 'no key in /healthz');
});

t.test('test server: block uploads and ranged reads, as the SDK does them for large files', async (t) => {
  const blob = await new BlobTestServer().start();
  t.teardown(() => blob.close());
  const { ContainerClient, StorageSharedKeyCredential } = await import('@azure/storage-blob');
  const c = new ContainerClient(`${blob.endpoint}/big`, new StorageSharedKeyCredential(blob.account, blob.key));
  await c.create();
  const data = Buffer.from(Array.from({ length: 3 * 1024 * 1024 + 17 }, (_, i) => (i * 7) % 251));
  await c.getBlockBlobClient('x/large.parquet').uploadData(data, { maxSingleShotSize: 1024 * 1024, blockSize: 1024 * 1024 });
  t.ok(blob.requests.filter((r) => r.op === 'block').length >= 4, 'Put Block per MiB');
  t.ok(
    blob.requests.some((r) => r.op === 'blocklist' && r.status === 201),
    'then Put Block List',
  );
  t.ok(blob.blob('big', 'x/large.parquet')?.equals(data), 'the committed blob is the data');
  const part = await c.getBlobClient('x/large.parquet').downloadToBuffer(1_000_000, 100);
  t.ok(part.equals(data.subarray(1_000_000, 1_000_100)), 'a ranged read');
});
