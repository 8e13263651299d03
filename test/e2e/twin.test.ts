/**
 * Device twin end to end on real parts: an operator changes desired state on the cloud
 * (`PATCH /v1/twins/{id}/desired`), the collector's desired feed brings it to the site, the agent
 * applies it live, and its reported properties travel back through the spool and the ingest
 * sink until `GET /v1/twins/{id}` shows the change applied — also when the change was made while
 * the collector, or the agent, was down.
 */
import t from 'tap';
import { request } from 'undici';
import { SimulatorSource, simulatorDefaults } from '../../agent/sources/simulator.js';
import type { Agent } from '../../agent/agent.js';
import type { Cloud } from '../../cloud/cloud.js';
import type { Collector } from '../../collector/collector.js';
import { startAgent, startCloud, startCollector, tempDir, waitFor } from '../helpers/stack.js';

const DEVICE = 'e2e-twin';

interface CloudTwin {
  desired: { $version: number; [k: string]: unknown };
  reportedProperties: { applied?: { desiredVersion?: number; samplingIntervalMs?: Record<string, number> }; [k: string]: unknown };
  applied: { version: number; inSync: boolean } | null;
}

async function cloudTwin(cloud: Cloud): Promise<CloudTwin | undefined> {
  const res = await request(`${cloud.url}/v1/twins/${DEVICE}`);
  if (res.statusCode === 404) {
    await res.body.dump();
    return undefined;
  }
  if (res.statusCode !== 200) throw new Error(`GET twin: ${res.statusCode} ${await res.body.text()}`);
  return (await res.body.json()) as CloudTwin;
}

async function patchDesired(cloud: Cloud, patch: object): Promise<number> {
  const res = await request(`${cloud.url}/v1/twins/${DEVICE}/desired`, {
    method: 'PATCH',
    headers: { 'content-type': 'application/json', 'if-match': '*' },
    body: JSON.stringify(patch),
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`PATCH desired: ${res.statusCode} ${text}`);
  return (JSON.parse(text) as CloudTwin).desired.$version;
}

function collectorFor(dir: string, cloud: Cloud, port = 0): Promise<Collector> {
  return startCollector(`${dir}/collector`, cloud.url, port, { twin: { desiredPollMs: 100, backoff: { initialMs: 50, maxMs: 300 } } });
}

function agentFor(dir: string, port: number): Promise<Agent> {
  const sim = new SimulatorSource({ ...simulatorDefaults, intervalMs: 60_000 }, DEVICE);
  return startAgent(`${dir}/agent`, DEVICE, port, [sim], { twin: { reportIntervalMs: 300, requestTimeoutMs: 2000 } });
}

/** Waits until the cloud shows the agent applied desired version `v` with the given interval. */
async function appliedInCloud(cloud: Cloud, v: number, intervalMs: number): Promise<CloudTwin> {
  let twin: CloudTwin | undefined;
  await waitFor(
    async () => {
      twin = await cloudTwin(cloud);
      return twin?.reportedProperties.applied?.desiredVersion === v;
    },
    20_000,
    `the cloud to show desired version ${v} applied`,
  );
  if (twin!.reportedProperties.applied?.samplingIntervalMs?.['simulator'] !== intervalMs)
    throw new Error(`cloud shows ${JSON.stringify(twin!.reportedProperties.applied)}`);
  return twin!;
}

t.test('desired on the cloud → collector → agent applies → reported in the cloud', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startCloud(`${dir}/cloud`);
  t.teardown(() => cloud.stop());
  let collector = await collectorFor(dir, cloud);
  const port = collector.mqttPort;
  let agent = await agentFor(dir, port);

  await waitFor(
    async () => (await cloudTwin(cloud))?.reportedProperties.applied !== undefined,
    20_000,
    'the twin and its first reported properties in the cloud',
  );

  // 1. Everything up.
  const v1 = await patchDesired(cloud, { samplingIntervalMs: 20 });
  await waitFor(() => agent.twin!.state.version === v1, 20_000, 'the agent to apply the change');
  t.same(agent.twin!.state.applied['samplingIntervalMs'], { simulator: 20 }, 'the agent applied the new interval');
  let twin = await appliedInCloud(cloud, v1, 20);
  t.equal(twin.applied?.inSync, true, 'the cloud sees the device in sync');

  // 2. A change made while the collector is down reaches the agent once it is back.
  await collector.stop();
  const v2 = await patchDesired(cloud, { samplingIntervalMs: 40 });
  // About time: nothing may reach the agent while the collector is down; nothing emits "not reached".
  await new Promise((r) => setTimeout(r, 300));
  t.equal(agent.twin!.state.version, v1, 'nothing can reach the agent while the collector is down');
  collector = await collectorFor(dir, cloud, port);
  await waitFor(() => agent.twin!.state.version === v2, 20_000, 'the agent to apply the change made while the collector was down');
  t.same(agent.twin!.state.applied['samplingIntervalMs'], { simulator: 40 });
  twin = await appliedInCloud(cloud, v2, 40);
  t.equal(twin.applied?.inSync, true);

  // 3. A change made while the agent is stopped is applied at its next start.
  await agent.stop();
  const v3 = await patchDesired(cloud, { samplingIntervalMs: 80 });
  await waitFor(() => collector.twin!.store.get(DEVICE).desiredVersion === v3, 20_000, 'the collector to hold the new desired state');
  agent = await agentFor(dir, port);
  await waitFor(() => agent.twin!.state.version === v3, 20_000, 'the restarted agent to apply the change');
  twin = await appliedInCloud(cloud, v3, 80);
  t.equal(twin.applied?.inSync, true);
  t.equal(twin.desired.$version, v3);

  await agent.stop();
  await collector.stop();
});

t.test('the desired feed authenticates with the site token; a wrong token is refused, counted and retried', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startCloud(`${dir}/cloud`, { ingest: { tokens: ['site-1:feed-token-0123456789'] } });
  t.teardown(() => cloud.stop());
  const good = await startCollector(`${dir}/good`, cloud.url, 0, {
    sinks: { http: { url: cloud.url, token: 'feed-token-0123456789' } },
    twin: { desiredPollMs: 50 },
  });
  t.teardown(() => good.stop());
  const bad = await startCollector(`${dir}/bad`, cloud.url, 0, {
    sinks: { http: { url: cloud.url, token: 'wrong-token-0123456789' } },
    twin: { desiredPollMs: 50, backoff: { initialMs: 20, maxMs: 50 } },
  });
  t.teardown(() => bad.stop());
  const polls = async (c: Collector, result: string): Promise<number> => {
    const m = await c.registry.getSingleMetric('edgetwin_twin_feed_polls_total')!.get();
    return m.values.filter((v) => v.labels['result'] === result).reduce((a, v) => a + v.value, 0);
  };
  await waitFor(async () => (await polls(good, 'empty')) >= 2, 10_000, 'polls with the right token');
  t.equal(good.twin!.health().feed, 'ok');
  await waitFor(async () => (await polls(bad, 'error')) >= 2, 10_000, 'refused polls with a wrong token');
  t.equal(bad.twin!.health().feed, 'failing', 'a refused feed shows in health');
  t.equal(await polls(bad, 'empty'), 0, 'and never succeeds');
});
