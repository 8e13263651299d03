/**
 * Event Hubs checkpoints in Azure Blob (issue #5): the real `@azure/eventhubs-checkpointstore-blob`
 * BlobCheckpointStore on a real `@azure/storage-blob` ContainerClient, against the protocol-level
 * Blob test server on loopback (test/helpers/blob-server.ts), and the cloud's consumer configured
 * the way the Terraform does it (a container URL) resuming on another host from those checkpoints.
 */
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { EventHubProducerClient } from '@azure/event-hubs';
import { BlobCheckpointStore } from '@azure/eventhubs-checkpointstore-blob';
import { AnonymousCredential, ContainerClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import t from 'tap';
import { call, readings, startTestCloud, telemetry } from '../helpers/cloud.js';
import { BlobTestServer } from '../helpers/blob-server.js';
import { startCheckpointHub } from '../helpers/checkpoint-hub.js';
import { tempDir, waitFor } from '../helpers/util.js';

t.test('BlobCheckpointStore on the test server: ownership by etag, checkpoints, listing', async (t) => {
  const blob = await new BlobTestServer({ maxPageSize: 2 }).start();
  t.teardown(() => blob.close());
  const container = new ContainerClient(`${blob.endpoint}/checkpoints`, new StorageSharedKeyCredential(blob.account, blob.key));
  await container.create();
  const store = new BlobCheckpointStore(container);
  const base = { fullyQualifiedNamespace: 'NS.servicebus.windows.net', eventHubName: 'Telemetry', consumerGroup: '$Default' };

  const claimed = await store.claimOwnership(['0', '1', '2'].map((partitionId) => ({ ...base, partitionId, ownerId: 'A' })));
  t.same(
    claimed.map((c) => c.partitionId),
    ['0', '1', '2'],
    'unowned partitions are claimed',
  );
  t.ok(
    claimed.every((c) => typeof c.etag === 'string' && c.etag.length > 0),
    'each claim carries the new etag',
  );
  t.same(blob.names('checkpoints'), [
    'ns.servicebus.windows.net/telemetry/$default/ownership/0',
    'ns.servicebus.windows.net/telemetry/$default/ownership/1',
    'ns.servicebus.windows.net/telemetry/$default/ownership/2',
  ]);

  t.same(
    await store.claimOwnership([{ ...base, partitionId: '0', ownerId: 'B', etag: '"0xSTALE"' }]),
    [],
    'a claim with a stale etag loses (412)',
  );
  const [p0] = await store.claimOwnership([{ ...base, partitionId: '0', ownerId: 'B', etag: claimed[0]!.etag! }]);
  t.equal(p0?.ownerId, 'B', 'a claim with the current etag takes the partition over');
  t.same(
    await store.claimOwnership([{ ...base, partitionId: '0', ownerId: 'A', etag: claimed[0]!.etag! }]),
    [],
    'the old etag no longer wins',
  );

  // Three ownership blobs over pages of two: the listing follows NextMarker.
  const owners = await store.listOwnership(base.fullyQualifiedNamespace, base.eventHubName, base.consumerGroup);
  t.same(owners.map((o) => [o.partitionId, o.ownerId]).sort(), [
    ['0', 'B'],
    ['1', 'A'],
    ['2', 'A'],
  ]);
  t.ok(owners.every((o) => typeof o.lastModifiedTimeInMs === 'number' && o.lastModifiedTimeInMs > 0));
  t.ok(blob.requests.filter((r) => r.op === 'list').length >= 2, 'listing was paged');

  await store.updateCheckpoint({ ...base, partitionId: '1', sequenceNumber: 41, offset: '4100' });
  await store.updateCheckpoint({ ...base, partitionId: '1', sequenceNumber: 42, offset: '4200' });
  await store.updateCheckpoint({ ...base, partitionId: '2', sequenceNumber: 7, offset: '700' });
  const cps = await store.listCheckpoints(base.fullyQualifiedNamespace, base.eventHubName, base.consumerGroup);
  t.same(
    cps.map((c) => [c.partitionId, c.sequenceNumber, c.offset]).sort(),
    [
      ['1', 42, '4200'],
      ['2', 7, '700'],
    ],
    'the newest checkpoint per partition',
  );
  t.ok(
    blob.requests.every((r) => r.auth === 'sharedkey'),
    'every request was Shared Key signed (and verified)',
  );

  const unsigned = new BlobCheckpointStore(
    new ContainerClient(`${blob.endpoint}/checkpoints`, new AnonymousCredential(), { retryOptions: { maxTries: 1 } }),
  );
  await t.rejects(
    unsigned.listCheckpoints(base.fullyQualifiedNamespace, base.eventHubName, base.consumerGroup),
    'an unsigned request is refused',
  );
  const wrongKey = new ContainerClient(
    `${blob.endpoint}/checkpoints`,
    new StorageSharedKeyCredential(blob.account, Buffer.alloc(64, 1).toString('base64')),
    { retryOptions: { maxTries: 1 } },
  );
  const refused = await new BlobCheckpointStore(wrongKey)
    .updateCheckpoint({ ...base, partitionId: '1', sequenceNumber: 99, offset: '1' })
    .then(
      () => undefined,
      (err: { statusCode?: number }) => err,
    );
  t.equal(refused?.statusCode, 403, 'a signature with the wrong key is refused');
});

t.test('consumer with blob checkpoints (container URL + SAS): another host resumes from them', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const { blob, hub, containerUrl } = await startCheckpointHub(t, 2);
  const eh = {
    eventHubs: {
      enabled: true,
      connectionString: hub.connectionString,
      maxBatchSize: 50,
      maxWaitTimeMs: 200,
      loadBalancingStrategy: 'greedy',
      updateIntervalMs: 500,
      checkpoint: { store: 'blob', containerUrl },
    },
  };
  const producer = new EventHubProducerClient(hub.connectionString);
  t.teardown(() => producer.close());
  const send = async (from: number, n: number): Promise<void> => {
    const body = Buffer.from(JSON.stringify(telemetry('bk-1', 1, readings(n, from))));
    await producer.sendBatch([{ body, properties: { 'edgetwin-site': 'site-b' } }], { partitionKey: 'bk-1' });
  };

  const adminRequests = blob.requests.length;
  const hostA = join(dir, 'host-a');
  let cloud = await startTestCloud(hostA, eh);
  for (let i = 0; i < 4; i++) await send(1 + i * 25, 25);
  await waitFor(
    async () => {
      await cloud.flush();
      return (await cloud.identities('bk-1')).length === 100;
    },
    30_000,
    '100 readings from 4 events in silver',
  );
  await waitFor(() => blob.names('eh-checkpoints').some((n) => n.includes('/checkpoint/')), 10_000, 'a checkpoint blob');
  const names = blob.names('eh-checkpoints');
  t.ok(
    names.some((n) => n.includes('/ownership/')),
    'ownership blobs in the container',
  );
  t.notOk(existsSync(join(hostA, 'eventhubs-checkpoints.db')), 'no local SQLite checkpoint store');
  t.ok(
    blob.requests.length > adminRequests && blob.requests.slice(adminRequests).every((r) => r.auth === 'sas'),
    'the consumer authenticated with the SAS from the URL',
  );
  await cloud.stop();

  // Another host (fresh state, nothing local): only the Blob checkpoints can make it skip the 4 read events.
  cloud = await startTestCloud(join(dir, 'host-b'), eh);
  t.teardown(() => cloud.stop());
  await send(101, 25);
  await waitFor(
    async () => {
      await cloud.flush();
      return (await cloud.identities('bk-1')).length === 25;
    },
    30_000,
    'the new event on host B',
  );
  const m = (await call('GET', `${cloud.url}/metrics`)).body as string;
  t.match(m, /edgetwin_cloud_eventhubs_events_total\{component="cloud"\} 1\n/, 'host B read only the one new event');
  t.same(
    (await cloud.identities('bk-1')).map((r) => r.seq),
    Array.from({ length: 25 }, (_, i) => 101 + i),
  );
  t.equal(cloud.health().ok, true);
});
