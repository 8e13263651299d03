/**
 * The agent's device twin against a real collector on loopback: desired properties set at the
 * collector are applied live by the agent (simulator sampling interval, sources on/off, appliers
 * other parts plug in), reported properties land in the collector's twin store and spool, and a
 * change made while the agent was stopped is applied when it starts again.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import t from 'tap';
import type { Agent } from '../../agent/agent.js';
import { SimulatorSource, simulatorDefaults } from '../../agent/sources/simulator.js';
import type { Collector } from '../../collector/collector.js';
import { LANE_NORMAL } from '../../common/outbox/outbox.js';
import { startAgent, startCollector, tempDir, waitFor } from '../helpers/stack.js';

const DEVICE = 'twin-dev';

async function collectorAlone(dir: string, port = 0): Promise<Collector> {
  return startCollector(`${dir}/collector`, 'http://127.0.0.1:9', port, { sinks: { http: { enabled: false } } });
}

/** A simulator that ticks once a minute unless the twin says otherwise. */
function slowSimulator(): SimulatorSource {
  return new SimulatorSource({ ...simulatorDefaults, intervalMs: 60_000 }, DEVICE);
}

async function twinAgent(dir: string, port: number): Promise<Agent> {
  return startAgent(`${dir}/agent`, DEVICE, port, [slowSimulator()], { twin: { reportIntervalMs: 200, requestTimeoutMs: 2000 } });
}

type Reported = {
  applied?: {
    desiredVersion?: number;
    samplingIntervalMs?: Record<string, number>;
    sources?: Record<string, { enabled: boolean }>;
    thresholds?: unknown;
  };
  errors?: Record<string, { code: string; message: string }>;
  versions?: { agent?: string; wire?: number };
  outbox?: { rows: number; bytes: number };
  health?: { ok: boolean; epoch: number };
};

const reported = (c: Collector): Reported => c.twin!.store.get(DEVICE).reported as Reported;

/** Readings the agent has committed so far (delivered or not). */
async function produced(a: Agent): Promise<number> {
  await a.flush();
  const m = await a.registry.getSingleMetric('edgetwin_agent_readings_total')!.get();
  return m.values[0]?.value ?? 0;
}

t.test('desired properties set at the collector are applied live and reported back', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const collector = await collectorAlone(dir);
  t.teardown(() => collector.stop());
  const agent = await twinAgent(dir, collector.mqttPort);
  t.teardown(() => agent.stop());

  await waitFor(() => reported(collector).versions?.agent !== undefined, 10_000, 'first reported properties');
  const first = reported(collector);
  t.equal(first.applied?.desiredVersion, 0, 'reports desired version 0 before any desired state');
  t.same(first.applied?.samplingIntervalMs, { simulator: 60_000 }, 'reports the configured interval in effect');
  t.equal(first.versions?.wire, 1);
  t.equal(
    first.versions?.agent,
    (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version,
    'the agent version is reported',
  );
  t.equal(first.health?.epoch, agent.identity.epoch, 'health is reported');
  t.type(first.outbox?.rows, 'number', 'outbox depth is reported');

  const before = await produced(agent);
  collector.twin!.applyDesired([{ device: DEVICE, desired: { samplingIntervalMs: 20 }, version: 1 }], 1);
  await waitFor(async () => (await produced(agent)) > before + 30, 10_000, 'the simulator sampling at the new interval');
  await waitFor(() => reported(collector).applied?.desiredVersion === 1, 10_000, 'desired version 1 reported');
  t.same(reported(collector).applied?.samplingIntervalMs, { simulator: 20 }, 'the collector sees the interval applied');
  t.same(agent.twin!.state.applied['samplingIntervalMs'], { simulator: 20 });

  // Stopping a source live.
  collector.twin!.applyDesired(
    [{ device: DEVICE, desired: { samplingIntervalMs: 20, sources: { simulator: { enabled: false } } }, version: 2 }],
    2,
  );
  await waitFor(() => reported(collector).applied?.desiredVersion === 2, 10_000, 'desired version 2 reported');
  t.same(reported(collector).applied?.sources, { simulator: { enabled: false } });
  const stoppedAt = await produced(agent);
  // About time: a disabled source would produce within 300 ms (every 20 ms); nothing emits "did not produce".
  await new Promise((r) => setTimeout(r, 300));
  t.equal(await produced(agent), stoppedAt, 'a disabled source produces nothing');

  // A value the agent refuses, and a key no part of the agent handles yet.
  collector.twin!.applyDesired(
    [
      {
        device: DEVICE,
        desired: { samplingIntervalMs: 1, sources: { simulator: { enabled: true } }, thresholds: { alert: 0.9 } },
        version: 3,
      },
    ],
    3,
  );
  await waitFor(() => reported(collector).applied?.desiredVersion === 3, 10_000, 'desired version 3 reported');
  const r3 = reported(collector);
  t.equal(r3.errors?.['samplingIntervalMs']?.code, 'EDGETWIN_ERR_CONFIG', 'an out-of-range interval is refused with a stable code');
  t.same(r3.applied?.samplingIntervalMs, { simulator: 20 }, 'and the previous interval stays');
  t.same(r3.applied?.sources, { simulator: { enabled: true } }, 'the rest of the document still applies');
  t.match(r3.errors?.['thresholds'], { code: 'EDGETWIN_ERR_CONFIG', message: /no part of this agent/ }, 'an unhandled key is reported');

  // Another part of the agent plugs in its applier: the current value is applied at once.
  const seen: unknown[] = [];
  agent.twin!.use({ key: 'thresholds', apply: (v) => (seen.push(v), v) });
  await waitFor(() => reported(collector).applied?.thresholds !== undefined, 10_000, 'plugged-in applier reported');
  t.same(seen, [{ alert: 0.9 }]);
  t.notOk(reported(collector).errors?.['thresholds'], 'its error is cleared');

  // Every reported patch also went to the spool, for the cloud.
  const kinds = collector.spool.read(LANE_NORMAL, 0, 100_000).map((r) => (JSON.parse(r.body) as { kind?: string }).kind);
  t.ok(kinds.filter((k) => k === 'reported').length >= 4, 'reported patches are spooled for the cloud');
  t.match(await agent.registry.metrics(), /edgetwin_twin_desired_version\{[^}]*\} 3/);
});

t.test('a change made while the agent is stopped is applied at its next start', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  let collector = await collectorAlone(dir);
  let agent = await twinAgent(dir, collector.mqttPort);
  collector.twin!.applyDesired([{ device: DEVICE, desired: { samplingIntervalMs: 500 }, version: 1 }], 1);
  await waitFor(() => reported(collector).applied?.desiredVersion === 1, 10_000, 'version 1 applied');
  await agent.stop();

  collector.twin!.applyDesired(
    [{ device: DEVICE, desired: { samplingIntervalMs: 250, sources: { simulator: { enabled: false } } }, version: 2 }],
    2,
  );
  agent = await twinAgent(dir, collector.mqttPort);
  await waitFor(() => agent.twin!.state.version === 2, 10_000, 'version 2 applied after restart');
  t.same(agent.twin!.state.applied['samplingIntervalMs'], { simulator: 250 });
  await waitFor(() => reported(collector).applied?.desiredVersion === 2, 10_000, 'version 2 reported');
  await agent.stop();

  // Restart with the collector down: the kept desired state applies before any source starts.
  const port = collector.mqttPort;
  await collector.stop();
  agent = await twinAgent(dir, port);
  t.equal(agent.twin!.state.version, 2, 'the kept desired version is in effect without a collector');
  t.same(agent.twin!.state.applied['sources'], { simulator: { enabled: false } });
  t.equal(await produced(agent), 0, 'the disabled source never started');
  t.notOk(agent.uplink.connected);

  collector = await collectorAlone(dir, port);
  t.teardown(() => collector.stop());
  collector.twin!.applyDesired([{ device: DEVICE, desired: { samplingIntervalMs: 250 }, version: 3 }], 3);
  await waitFor(() => agent.twin!.state.version === 3, 15_000, 'version 3 applied after the collector came back');
  t.same(agent.twin!.state.applied['sources'], { simulator: { enabled: true } }, 'the source runs again');
  await waitFor(async () => (await produced(agent)) > 0, 10_000, 'readings flow again');
  await agent.stop();
});

t.test('a damaged kept desired file costs nothing but the offline start-up state', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const collector = await collectorAlone(dir);
  t.teardown(() => collector.stop());
  collector.twin!.applyDesired([{ device: DEVICE, desired: { samplingIntervalMs: 300 }, version: 6 }], 6);
  mkdirSync(`${dir}/agent`, { recursive: true });
  writeFileSync(`${dir}/agent/twin-desired.json`, '\u0000garbage{');
  const agent = await twinAgent(dir, collector.mqttPort);
  t.teardown(() => agent.stop());
  await waitFor(() => agent.twin!.state.version === 6, 10_000, 'desired state read from the collector');
  t.same(agent.twin!.state.applied['samplingIntervalMs'], { simulator: 300 });
});
