/**
 * The spine end to end on real parts: two agents (SQLite outboxes, mqtt.js QoS 1) → collector
 * (aedes, SQLite spool) → cloud (HTTP ingest, SQLite). Exactly the readings produced must arrive:
 * none missing, none twice, with their values.
 */
import t from 'tap';
import { request } from 'undici';
import { CountingSource, startAgent, startCloud, startCollector, tempDir, waitFor } from '../helpers/stack.js';

const PER_AGENT = 3000;

t.test('readings travel agent → collector → cloud exactly once', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startCloud(`${dir}/cloud`);
  const collector = await startCollector(`${dir}/collector`, cloud.url);
  const sources = [new CountingSource(PER_AGENT, 50), new CountingSource(PER_AGENT, 70)];
  const agents = await Promise.all(['dev-a', 'dev-b'].map((id, i) => startAgent(`${dir}/${id}`, id, collector.mqttPort, [sources[i]!])));

  await waitFor(
    async () => (await Promise.all(agents.map((a) => cloud.identities(a.cfg.deviceId)))).every((ids) => ids.length >= PER_AGENT),
    30_000,
    'all readings in the cloud',
  );
  await waitFor(() => agents.every((a) => a.outbox.depth().rows === 0), 5000, 'outboxes drained');

  for (const a of agents) {
    const ids = await cloud.identities(a.cfg.deviceId);
    t.equal(ids.length, PER_AGENT, `${a.cfg.deviceId}: every reading stored once`);
    t.same(
      ids.map((r) => r.seq),
      Array.from({ length: PER_AGENT }, (_, k) => k + 1),
      `${a.cfg.deviceId}: seqs 1..N, none missing, none twice`,
    );
    t.ok(
      ids.every((r, k) => r.value === k * 0.5 && r.metric === `m${k % 3}`),
      `${a.cfg.deviceId}: values intact`,
    );
    t.ok(
      ids.every((r) => r.epoch === 1),
      'first boot is epoch 1',
    );
  }

  const res = await request(`${cloud.url}/v1/twins`);
  t.equal(res.statusCode, 200);
  const body = (await res.body.json()) as {
    items: { deviceId: string; site: string; readings: number; reported: Record<string, { value: number; seq: number }> }[];
  };
  t.same(
    body.items.map((i) => i.deviceId),
    ['dev-a', 'dev-b'],
  );
  for (const twin of body.items) {
    t.equal(twin.readings, PER_AGENT);
    t.equal(twin.site, 'site-1');
    // The last reading of metric m2 has the highest index k with k % 3 == 2.
    const lastK = PER_AGENT - 1 - ((PER_AGENT - 1 - 2) % 3);
    t.equal(twin.reported['m2']?.value, lastK * 0.5, 'reported state is the newest reading per metric');
  }
  const one = await request(`${cloud.url}/v1/twins/dev-a`);
  t.equal(one.statusCode, 200);
  t.equal(((await one.body.json()) as { deviceId: string }).deviceId, 'dev-a');
  const missing = await request(`${cloud.url}/v1/twins/nobody`);
  t.equal(missing.statusCode, 404);
  t.same(await missing.body.json(), { code: 'EDGETWIN_ERR_NOT_FOUND', message: 'no twin for device nobody' });

  const metrics = await collector.registry.metrics();
  t.match(metrics, new RegExp(`edgetwin_broker_accepted_readings_total\\{[^}]*\\} ${2 * PER_AGENT}`));

  for (const a of agents) await a.stop();
  await collector.stop();
  await cloud.stop();
});

t.test('an agent restart bumps the epoch and continues the seq', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startCloud(`${dir}/cloud`);
  const collector = await startCollector(`${dir}/collector`, cloud.url);
  let agent = await startAgent(`${dir}/dev`, 'dev', collector.mqttPort, [new CountingSource(100, 100)]);
  await waitFor(async () => (await cloud.identities('dev')).length === 100, 10_000, 'first boot readings');
  await agent.stop();
  agent = await startAgent(`${dir}/dev`, 'dev', collector.mqttPort, [new CountingSource(50, 50)]);
  t.equal(agent.identity.epoch, 2);
  await waitFor(async () => (await cloud.identities('dev')).length === 150, 10_000, 'second boot readings');
  const ids = await cloud.identities('dev');
  t.same(
    ids.slice(100).map((r) => [r.epoch, r.seq]),
    Array.from({ length: 50 }, (_, k) => [2, 101 + k]),
  );
  await agent.stop();
  await collector.stop();
  await cloud.stop();
});

t.test('a reading the wire schema refuses (NaN from a sensor) is dropped alone; its neighbours arrive', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startCloud(`${dir}/cloud`);
  const collector = await startCollector(`${dir}/collector`, cloud.url);
  const source = {
    name: 'nan-source',
    start(ctx: { emit: (r: { ts: number; metric: string; value: number; unit: string }[]) => void }) {
      ctx.emit([
        { ts: 1_700_000_000_000, metric: 'a', value: 1, unit: 'u' },
        { ts: 1_700_000_000_001, metric: 'a', value: Number.NaN, unit: 'u' },
        { ts: 1_700_000_000_002, metric: 'a', value: Number.POSITIVE_INFINITY, unit: 'u' },
        { ts: 1_700_000_000_003, metric: 'a', value: 4, unit: 'u' },
      ]);
    },
    stop() {},
  };
  const agent = await startAgent(`${dir}/nan`, 'nan-1', collector.mqttPort, [source as never]);
  await waitFor(async () => (await cloud.identities('nan-1')).length >= 2, 20_000, 'the good readings');
  const ids = await cloud.identities('nan-1');
  t.same(
    ids.map((r) => [r.seq, r.value]),
    [
      [1, 1],
      [2, 4],
    ],
    'both good readings, seqs without a gap',
  );
  t.match(await agent.registry.metrics(), /edgetwin_agent_rejected_total\{source="commit",code="EDGETWIN_ERR_BAD_VALUE"[^}]*\} 2/);
  await agent.stop();
  await collector.stop();
  await cloud.stop();
});
