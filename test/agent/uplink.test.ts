/**
 * The uplink against a real MQTT broker (aedes) on loopback: QoS 1 batches bounded by count, bytes
 * and time; a bounded in-flight window; rows leave the outbox only on PUBACK; a persistent session
 * that re-sends what was in flight after the broker comes back; order within each stream; alerts
 * first; and a backlog that drains alongside live readings instead of starving them.
 */
import t, { type Test } from 'tap';
import type { Agent } from '../../agent/agent.js';
import type { Source, SourceContext, SourceReading } from '../../agent/types.js';
import { CountingSource, TestBroker, startAgent, tempDir, waitFor } from '../helpers/stack.js';

/** Emits whatever the test pushes. */
class ManualSource implements Source {
  readonly name = 'manual';
  ctx: SourceContext | undefined;
  start(ctx: SourceContext): void {
    this.ctx = ctx;
  }
  stop(): void {}
  push(readings: SourceReading[]): void {
    this.ctx!.emit(readings);
  }
}

const r = (k: number, extra: Partial<SourceReading> = {}): SourceReading => ({
  ts: 1_700_000_000_000 + k,
  metric: 'm',
  value: k,
  unit: 'u',
  ...extra,
});

async function setup(t: Test, overrides: object = {}, sources: Source[] = []): Promise<{ broker: TestBroker; agent: Agent }> {
  const { dir, cleanup } = tempDir();
  const broker = new TestBroker();
  await broker.start();
  const agent = await startAgent(`${dir}/agent`, 'up-1', broker.port, sources, { twin: { enabled: false }, ...overrides });
  t.teardown(async () => {
    broker.release();
    await agent.stop(200);
    await broker.stop();
    cleanup();
  });
  return { broker, agent };
}

t.test('batches are bounded by count and by bytes', async (t) => {
  const src = new ManualSource();
  const { broker, agent } = await setup(t, { uplink: { batchMaxReadings: 100, batchMaxBytes: 4096 } }, [src]);
  await waitFor(() => agent.uplink.connected, 5000, 'connected');
  src.push(Array.from({ length: 1000 }, (_, k) => r(k)));
  await waitFor(() => broker.readings().length === 1000, 10_000, 'all readings');
  t.ok(
    broker.batches.every((b) => b.readings.length <= 100),
    'no batch over batchMaxReadings',
  );
  t.ok(
    broker.batches.every((b) => JSON.stringify(b).length <= 4096),
    'no message over batchMaxBytes',
  );
  t.ok(broker.batches.length < 40, `many readings per message (${broker.batches.length} messages for 1000)`);
  t.ok(
    broker.batches.every((b) => b.readings.every((x, i) => i === 0 || x.seq === b.readings[i - 1]!.seq + 1)),
    'each batch is a run of consecutive seqs',
  );
  await waitFor(() => agent.outbox.depth().rows === 0, 5000, 'outbox empty after the PUBACKs');
});

t.test('a batch that is not full waits batchMaxDelayMs to fill up', async (t) => {
  const src = new CountingSource(200, 1, 5);
  const { broker } = await setup(t, { uplink: { batchMaxDelayMs: 500 } }, [src]);
  await waitFor(() => broker.readings().length === 200, 10_000, 'all readings');
  t.ok(broker.batches.length <= 20, `200 readings trickling in went out in ${broker.batches.length} messages, not 200`);
  const seqs = broker.readings().map((x) => x.seq);
  t.same(
    seqs,
    Array.from({ length: 200 }, (_, i) => i + 1),
    'in seq order, once each',
  );
});

t.test('the in-flight window is bounded and rows leave only on PUBACK', async (t) => {
  const src = new ManualSource();
  const { broker, agent } = await setup(t, { uplink: { batchMaxReadings: 10, inflightMax: 4 } }, [src]);
  await waitFor(() => agent.uplink.connected, 5000, 'connected');
  broker.holdAcks = true;
  src.push(Array.from({ length: 200 }, (_, k) => r(k)));
  await waitFor(() => broker.heldAcks === 4, 5000, 'the window to fill');
  // About time: a fifth batch would be published within this window; nothing emits "not published".
  await new Promise((res) => setTimeout(res, 300));
  t.equal(broker.batches.length, 4, 'no more than inflightMax batches published without PUBACK');
  t.equal(agent.uplink.inflightBatches, 4);
  t.equal(agent.outbox.depth().rows, 200, 'nothing left the outbox before its PUBACK');
  broker.release();
  await waitFor(() => agent.outbox.depth().rows === 0, 10_000, 'outbox drained once acknowledged');
  t.equal(broker.readings().length, 200);
});

t.test('persistent session: what was in flight when the broker died is re-sent, nothing lost', async (t) => {
  const src = new ManualSource();
  const { broker, agent } = await setup(t, { uplink: { batchMaxReadings: 10, inflightMax: 4, backoff: { initialMs: 50, maxMs: 100 } } }, [
    src,
  ]);
  await waitFor(() => agent.uplink.connected, 5000, 'connected');
  t.match(broker.connects[0], { clientId: 'up-1', username: 'up-1', clean: false }, 'clean=false, client id = device id');
  broker.holdAcks = true;
  src.push(Array.from({ length: 100 }, (_, k) => r(k)));
  await waitFor(() => broker.heldAcks === 4, 5000, 'batches in flight');
  const port = broker.port;
  await broker.stop();
  const seenBefore = broker.readings().length;
  broker.holdAcks = false;
  await broker.start(port);
  await waitFor(() => agent.outbox.depth().rows === 0, 10_000, 'outbox drained after the broker came back');
  const seqs = new Set(broker.readings().map((x) => x.seq));
  t.equal(seqs.size, 100, 'every reading arrived');
  t.equal(seenBefore, 40, '4 batches of 10 were out, unacknowledged, when the broker died');
  t.ok(broker.readings().length >= 140, `and were sent again after the reconnect (${broker.readings().length} received for 100)`);
  t.ok(broker.connects.length >= 2 && broker.connects.every((c) => !c.clean), 'reconnected with the same persistent session');
});

/** An agent whose broker is down (on a known port) until the test starts it again. */
async function offline(
  t: Test,
  device: string,
  uplink: object,
): Promise<{ broker: TestBroker; agent: Agent; src: ManualSource; port: number }> {
  const src = new ManualSource();
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const broker = new TestBroker();
  const port = await broker.start();
  await broker.stop();
  const agent = await startAgent(`${dir}/agent`, device, port, [src], {
    twin: { enabled: false },
    uplink: { backoff: { initialMs: 50, maxMs: 100 }, ...uplink },
  });
  t.teardown(async () => {
    await agent.stop(200);
    await broker.stop();
  });
  return { broker, agent, src, port };
}

t.test('alerts go first, ahead of a telemetry backlog', async (t) => {
  // The broker is down while the backlog and then an alert are committed.
  const { broker, agent, src, port } = await offline(t, 'up-2', { batchMaxReadings: 50 });
  src.push(Array.from({ length: 1000 }, (_, k) => r(k)));
  src.push([r(1000, { alert: true, metric: 'alarm' })]);
  await agent.flush();
  await broker.start(port);
  await waitFor(() => broker.readings().length >= 1001, 10_000, 'everything delivered');
  t.same(
    broker.batches[0]!.readings.map((x) => [x.metric, x.alert]),
    [['alarm', true]],
    'the first message after reconnect is the alert',
  );
});

t.test('a backlog drains at full speed without starving live readings', async (t) => {
  const { broker, agent, src, port } = await offline(t, 'up-3', { batchMaxReadings: 100, inflightMax: 2, batchMaxDelayMs: 0 });
  const BACKLOG = 20_000;
  for (let k = 0; k < BACKLOG; k += 1000) src.push(Array.from({ length: 1000 }, (_, i) => r(k + i)));
  await agent.flush();
  broker.holdAcks = true;
  await broker.start(port);
  // While the first PUBACKs are held, a live reading arrives.
  await waitFor(() => broker.heldAcks > 0, 5000, 'first batches out');
  src.push([r(BACKLOG, { metric: 'live' })]);
  await agent.flush();
  broker.release();
  await waitFor(() => broker.readings().length >= BACKLOG + 1, 20_000, 'everything delivered');
  const firstLive = broker.batches.findIndex((b) => b.readings.some((x) => x.metric === 'live'));
  t.ok(
    firstLive >= 0 && firstLive <= 4,
    `the live reading went out in message ${firstLive}, not after the ${BACKLOG / 100} backlog messages`,
  );
  const backlogSeqs = broker
    .readings()
    .filter((x) => x.metric !== 'live')
    .map((x) => x.seq);
  t.same(
    backlogSeqs,
    Array.from({ length: BACKLOG }, (_, i) => i + 1),
    'the backlog went out complete and in order',
  );
  // The broker sees the last batch before the agent handles its PUBACK: backlog mode ends on that PUBACK.
  await waitFor(() => !agent.uplink.drainingBacklog, 5000, 'backlog mode to end');
  t.notOk(agent.uplink.drainingBacklog, 'backlog mode ended once drained');
  const metrics = await agent.registry.metrics();
  t.match(metrics, /edgetwin_uplink_published_batches_total\{stream="live"[^}]*\} [1-9]/);
  t.match(metrics, /edgetwin_uplink_published_batches_total\{stream="backlog"[^}]*\} [1-9]/);
});
