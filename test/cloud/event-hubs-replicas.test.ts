/**
 * Event Hubs partitions balanced over two cloud replicas (one PostgreSQL) by the Blob checkpoint
 * store, with the real SDKs against the loopback Event Hubs (AMQP) and Blob servers: each replica
 * owns some partitions and says which in /healthz with its last-event age; when one stops, the
 * other takes its partitions over from the checkpoints, and every reading is stored once.
 */
import { join } from 'node:path';
import { EventHubProducerClient } from '@azure/event-hubs';
import t from 'tap';
import type { Cloud } from '../../cloud/cloud.js';
import { call, duckSql, readings, startTestCloud, telemetry } from '../helpers/cloud.js';
import { startCheckpointHub } from '../helpers/checkpoint-hub.js';
import { sharedPostgres } from '../helpers/stores.js';
import { tempDir, waitFor } from '../helpers/util.js';

interface EhHealth {
  eventHubs: { partitions: string[]; lastEventAgeS: number | null; ownerId: string };
}

t.test('two replicas share the partitions; a stopped one hands them over', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const { hub, containerUrl } = await startCheckpointHub(t, 4);
  const pg = await sharedPostgres();
  const url = await pg.createDatabase();
  const lake = join(dir, 'lake');
  const overrides = {
    store: { kind: 'postgres', url, leaseRetryMs: 200 },
    lakehouse: { root: lake, flushIntervalMs: 200 },
    eventHubs: {
      enabled: true,
      connectionString: hub.connectionString,
      maxBatchSize: 50,
      maxWaitTimeMs: 200,
      loadBalancingStrategy: 'balanced',
      updateIntervalMs: 300,
      ownershipExpirationMs: 3000,
      checkpoint: { store: 'blob', containerUrl },
    },
  };
  const a = await startTestCloud(join(dir, 'a'), overrides);
  const b = await startTestCloud(join(dir, 'b'), overrides);
  const running = new Set<Cloud>([a, b]);
  t.teardown(async () => {
    for (const c of running) await c.stop();
  });
  const health = async (c: Cloud): Promise<EhHealth> => (await call('GET', `${c.url}/healthz`)).body as EhHealth;
  await waitFor(
    async () => (await health(a)).eventHubs.partitions.length === 2 && (await health(b)).eventHubs.partitions.length === 2,
    20_000,
    'two partitions each',
  );
  const [ha, hb] = [await health(a), await health(b)];
  t.same([...ha.eventHubs.partitions, ...hb.eventHubs.partitions].sort(), ['0', '1', '2', '3'], 'every partition owned once');
  t.not(ha.eventHubs.ownerId, hb.eventHubs.ownerId, 'each replica under its own owner id');

  const producer = new EventHubProducerClient(hub.connectionString);
  t.teardown(() => producer.close());
  const send = async (round: number): Promise<void> => {
    for (let p = 0; p < 4; p++) {
      const body = Buffer.from(JSON.stringify(telemetry(`eh-${p}`, 1, readings(10, 1 + round * 10))));
      await producer.sendBatch([{ body, properties: { 'edgetwin-site': 'site-e' } }], { partitionId: String(p) });
    }
  };
  const silver = join(lake, 'silver', 'readings', '**', '*.parquet');
  const count = async (): Promise<number> =>
    Number((await duckSql(`SELECT count(*) AS n FROM read_parquet('${silver}')`).catch(() => [{ n: 0 }]))[0]!['n']);
  await send(0);
  await waitFor(async () => (await count()) === 40, 20_000, 'round 0 in silver');
  t.ok((await health(a)).eventHubs.lastEventAgeS !== null && (await health(b)).eventHubs.lastEventAgeS !== null, 'both landed events');

  await a.stop();
  running.delete(a);
  await waitFor(async () => (await health(b)).eventHubs.partitions.length === 4, 20_000, 'the survivor owns all four');
  await send(1);
  await waitFor(async () => (await count()) === 80, 20_000, 'round 1 in silver');
  const ids = await duckSql(`SELECT count(*) AS n, count(DISTINCT (device, epoch, seq)) AS ids FROM read_parquet('${silver}')`);
  t.same(ids, [{ n: 80, ids: 80 }], 'every reading once: the takeover resumed from the checkpoints');
});
