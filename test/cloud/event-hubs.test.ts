/**
 * The cloud's Event Hubs consumer: the real `@azure/event-hubs` EventHubConsumerClient against the
 * protocol-level AMQP 1.0 test server on loopback (test/helpers/event-hubs-server.ts; Azure cannot
 * be reached here), feeding the same ingest pipeline as HTTP. Events reach silver exactly once,
 * checkpoints (SQLite store) make a restarted consumer continue where it stopped, and bad events
 * are quarantined without stopping the partition.
 */
import { join } from 'node:path';
import { EventHubProducerClient } from '@azure/event-hubs';
import t from 'tap';
import { envelopesFromEvents, UNASSIGNED_SITE } from '../../cloud/ingest/event-hubs-consumer.js';
import { SqliteCheckpointStore } from '../../cloud/ingest/sqlite-checkpoint-store.js';
import { call, readings, startTestCloud, telemetry } from '../helpers/cloud.js';
import { EventHubsTestServer } from '../helpers/event-hubs-server.js';
import { tempDir, waitFor } from '../helpers/util.js';

t.test('events → one envelope per site, in partition order', async (t) => {
  const envs = envelopesFromEvents('2', [
    { body: Buffer.from('{"v":1,"device":"a","epoch":1,"readings":[]}'), properties: { 'edgetwin-site': 's1' }, sequenceNumber: 10 },
    { body: Buffer.from('not json'), properties: { 'edgetwin-site': 's1' }, sequenceNumber: 11 },
    { body: Buffer.from('{"v":1}'), properties: {}, sequenceNumber: 12 },
    { body: Buffer.from('{"x":2}'), properties: { 'edgetwin-site': 'bad/site' }, sequenceNumber: 13 },
  ]);
  t.same(
    envs.map((e) => [e.site, e.batchId, e.body.messages.length]),
    [
      ['s1', 'eh-2-10-11-s1', 2],
      [UNASSIGNED_SITE, `eh-2-12-13-${UNASSIGNED_SITE}`, 2],
    ],
  );
  const s1 = JSON.parse(envs[0]!.raw.toString()) as { messages: unknown[] };
  t.match(
    s1.messages,
    [
      { v: 1, device: 'a', epoch: 1, readings: [] },
      { kind: 'quarantine', code: 'EDGETWIN_ERR_BAD_PAYLOAD', payload: Buffer.from('not json').toString('base64') },
    ],
    'a non-JSON body travels as a quarantine message with its bytes (kept in the cloud quarantine)',
  );
  t.same(s1, envs[0]!.body, 'raw and parsed agree');
});

t.test('SQLite checkpoint store: ownership by etag, checkpoints kept', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const store = new SqliteCheckpointStore(dir);
  t.teardown(() => store.close());
  const base = { fullyQualifiedNamespace: 'ns', eventHubName: 'hub', consumerGroup: '$Default', partitionId: '0' };
  const [a] = await store.claimOwnership([{ ...base, ownerId: 'A' }]);
  t.ok(a?.etag, 'first claim wins');
  t.same(await store.claimOwnership([{ ...base, ownerId: 'B' }]), [], 'a claim without the current etag loses');
  t.same(await store.claimOwnership([{ ...base, ownerId: 'B', etag: 'stale' }]), []);
  const [b] = await store.claimOwnership([{ ...base, ownerId: 'B', etag: a!.etag! }]);
  t.equal(b?.ownerId, 'B', 'a claim with the current etag (load balancing) wins');
  t.same(
    (await store.listOwnership('ns', 'hub', '$Default')).map((o) => o.ownerId),
    ['B'],
  );
  await store.updateCheckpoint({ ...base, sequenceNumber: 41, offset: '41' });
  await store.updateCheckpoint({ ...base, sequenceNumber: 42, offset: '42' });
  t.match(await store.listCheckpoints('ns', 'hub', '$Default'), [{ partitionId: '0', sequenceNumber: 42, offset: '42' }]);
});

t.test('consumer: events to silver exactly once, checkpointed, across a restart', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const server = await new EventHubsTestServer({ partitionCount: 3 }).start();
  t.teardown(() => server.close());
  const eh = {
    eventHubs: {
      enabled: true,
      connectionString: server.connectionString,
      maxBatchSize: 50,
      maxWaitTimeMs: 200,
      loadBalancingStrategy: 'greedy',
      updateIntervalMs: 500,
    },
  };
  let cloud = await startTestCloud(join(dir, 'cloud'), eh);
  const producer = new EventHubProducerClient(server.connectionString);
  t.teardown(() => producer.close());

  const send = async (device: string, site: string, from: number, n: number): Promise<void> => {
    const batch = await producer.createBatch({ partitionKey: device });
    for (let i = 0; i < n; i += 20) {
      const body = Buffer.from(JSON.stringify(telemetry(device, 1, readings(20, from + i))));
      t.ok(batch.tryAdd({ body, contentType: 'application/json', properties: { 'edgetwin-site': site, 'edgetwin-device': device } }));
    }
    await producer.sendBatch(batch);
  };
  await send('eh-1', 'site-x', 1, 200);
  await send('eh-2', 'site-y', 1, 100);
  await producer.sendBatch([{ body: Buffer.from('{"v":1,"device":"eh-3"'), properties: { 'edgetwin-site': 'site-x' } }], {
    partitionKey: 'eh-3',
  });

  const stored = async (d: string): Promise<number> => (await cloud.identities(d)).length;
  await waitFor(
    async () => {
      await cloud.flush();
      return (await stored('eh-1')) === 200 && (await stored('eh-2')) === 100;
    },
    20_000,
    'events in silver',
  );
  t.equal((await call('GET', `${cloud.url}/v1/twins/eh-2`)).body.site, 'site-y', 'the site comes from the event property');
  const q = await call('GET', `${cloud.url}/v1/quarantine?site=site-x`);
  t.equal(q.body.items.length, 1, 'the truncated event is quarantined, not lost, and did not block its partition');
  t.equal(q.body.items[0].reason, 'refused', 'kept with its bytes, as a payload the cloud could not read');
  await waitFor(
    async () => {
      const m = (await call('GET', `${cloud.url}/metrics`)).body as string;
      return /edgetwin_cloud_eventhubs_events_total\{component="cloud"\} 16/.test(m);
    },
    5000,
    'all 16 events counted',
  );
  await cloud.stop();

  // Restart: the consumer resumes from its checkpoints, so only the new events are read.
  cloud = await startTestCloud(join(dir, 'cloud'), eh);
  t.teardown(() => cloud.stop());
  await send('eh-1', 'site-x', 201, 100);
  await waitFor(
    async () => {
      await cloud.flush();
      return (await stored('eh-1')) === 300;
    },
    20_000,
    'new events after the restart',
  );
  const m = (await call('GET', `${cloud.url}/metrics`)).body as string;
  t.match(m, /edgetwin_cloud_eventhubs_events_total\{component="cloud"\} 5\n/, 'only the 5 new events were read again');
  t.match(m, /edgetwin_cloud_duplicate_readings_total\{component="cloud"\} 0\n/);
  t.same(
    (await cloud.identities('eh-1')).map((r) => r.seq),
    Array.from({ length: 300 }, (_, i) => i + 1),
    'exactly once, in order',
  );
  t.equal(cloud.health().ok, true);
});
