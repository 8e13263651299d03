/**
 * spool.whenFull: drop_oldest at collector level (the `block` policy is in
 * collector-durability.test.ts): with a real broker, a tiny spool and a sink that is down, a flood
 * keeps being acknowledged, the oldest rows make room for the newest, every drop is counted in
 * edgetwin_spool_dropped_total and the spool stays within spool.maxBytes.
 */
import t, { type Test } from 'tap';
import type { Collector } from '../../collector/collector.js';
import { topics } from '../../common/wire/record.js';
import {
  batch,
  closed,
  connectOnce,
  metric,
  publishQos1,
  spooledBodies,
  startRegistryCollector,
  SwitchSink,
} from '../helpers/collector.js';
import { tempDir, waitFor } from '../helpers/stack.js';

const MAX_BYTES = 65536;

/** An open collector with a MAX_BYTES drop_oldest spool (plus `spool`) and a sink that starts down, stopped at the test's end. */
async function dropOldestCollector(t: Test, spool: object = {}): Promise<{ c: Collector; sink: SwitchSink }> {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const sink = new SwitchSink();
  const c = await startRegistryCollector(
    dir,
    { auth: { mode: 'open' }, spool: { maxBytes: MAX_BYTES, whenFull: 'drop_oldest', ...spool } },
    { sinks: [sink] },
  );
  t.teardown(() => c.stop());
  return { c, sink };
}

t.test('a full spool with whenFull drop_oldest keeps acknowledging and drops the oldest rows, counted', async (t) => {
  const { c, sink } = await dropOldestCollector(t);
  const { client } = await connectOnce(`mqtt://127.0.0.1:${c.mqttPort}`, { clientId: 'drop-1' });
  t.teardown(() => void client.end(true));
  // About 300 B each: 1,200 of them are over 5× the spool.
  const payloads = Array.from({ length: 1200 }, (_, i) => batch('drop-1', 1, 3 * i + 1, 3));
  const bytes = payloads.reduce((n, p) => n + Buffer.byteLength(p), 0);
  t.ok(bytes > 4 * MAX_BYTES, `the flood (${bytes} B) is several times the spool (${MAX_BYTES} B)`);

  let acked = 0;
  await Promise.all(payloads.map((p) => publishQos1(client, topics.telemetry('drop-1'), p).then(() => acked++)));
  t.equal(acked, payloads.length, 'every publish acknowledged while the sink is down and the spool is full');
  t.ok(client.connected, 'the device stays connected');

  const depth = c.spool.depth();
  t.ok(depth.bytes <= MAX_BYTES, `the spool stays within spool.maxBytes (${depth.bytes} of ${MAX_BYTES} B)`);
  const dropped = await metric(c.registry, 'edgetwin_spool_dropped_total', { reason: 'full' });
  t.ok(dropped > 0, `drops counted (${dropped})`);
  // Nothing was released (the sink never acknowledged), so every row is either still spooled or dropped.
  t.equal(dropped + depth.rows, payloads.length, `dropped (${dropped}) + still spooled (${depth.rows}) = published (${payloads.length})`);

  const kept = spooledBodies(c);
  t.same(kept, payloads.slice(payloads.length - kept.length), 'what remains is the newest messages, in order: the oldest went first');
  t.notOk(kept.includes(payloads[0]!), 'the first message is gone');

  sink.up = true;
  await waitFor(() => sink.received.includes(payloads.at(-1)!), 20_000, 'the newest message delivered once the sink is back');
  await waitFor(() => c.spool.depth().rows === 0, 20_000, 'spool drained');
  t.same(sink.received.slice(-kept.length), kept, 'the kept rows reach the sink in order');
  t.equal(await metric(c.registry, 'edgetwin_spool_dropped_total', { reason: 'full' }), dropped, 'no more drops once there is room');
});

t.test('drop_oldest: a group commit larger than the whole spool is acknowledged, not held forever', async (t) => {
  // A long commit interval and several devices at once gather one group far larger than spool.maxBytes
  // (one connection alone has only about 64 KiB in flight).
  const { c } = await dropOldestCollector(t, { commitIntervalMs: 500, commitMaxMessages: 5000 });
  const devices = ['grp-1', 'grp-2', 'grp-3', 'grp-4', 'grp-5', 'grp-6'];
  const clients = await Promise.all(devices.map((id) => connectOnce(`mqtt://127.0.0.1:${c.mqttPort}`, { clientId: id, keepalive: 0 })));
  t.teardown(() => clients.forEach(({ client }) => client.end(true)));
  const sent = devices.map((id) => Array.from({ length: 100 }, (_, i) => batch(id, 1, 10 * i + 1, 10)));
  let acked = 0;
  const all = Promise.all(
    clients.flatMap(({ client }, k) => sent[k]!.map((p) => publishQos1(client, topics.telemetry(devices[k]!), p).then(() => acked++))),
  );
  await waitFor(() => acked === 600, 60_000, 'every publish acknowledged');
  await all;
  const depth = c.spool.depth();
  t.ok(depth.bytes <= MAX_BYTES, `the spool stays within spool.maxBytes (${depth.bytes} of ${MAX_BYTES} B)`);
  const dropped = await metric(c.registry, 'edgetwin_spool_dropped_total', { reason: 'full' });
  t.ok(dropped > 0, `drops counted (${dropped})`);
  t.equal(dropped + depth.rows, 600, `dropped (${dropped}) + still spooled (${depth.rows}) = published`);
  const kept = spooledBodies(c);
  for (const [k, id] of devices.entries()) {
    const mine = kept.filter((b) => b.includes(`"device":"${id}"`));
    t.same(mine, sent[k]!.slice(sent[k]!.length - mine.length), `${id}: what is kept is its newest messages, in order`);
  }
});

t.test('drop_oldest: a message larger than the whole spool is refused unacknowledged, counted, others go on', async (t) => {
  const { c } = await dropOldestCollector(t);
  const big = await connectOnce(`mqtt://127.0.0.1:${c.mqttPort}`, { clientId: 'big-1' });
  const huge = batch('big-1', 1, 1, 1000);
  t.ok(Buffer.byteLength(huge) > MAX_BYTES, `one message of ${Buffer.byteLength(huge)} B`);
  const gone = closed(big.client, 20_000);
  let answered = false;
  big.client.publish(topics.telemetry('big-1'), huge, { qos: 1 }, (err) => (answered = !err));
  t.ok(await gone, 'the connection is closed instead');
  t.notOk(answered, 'no PUBACK for it');
  big.client.end(true);
  t.equal(await metric(c.registry, 'edgetwin_broker_rejected_total', { code: 'EDGETWIN_ERR_STORE_FULL' }), 1, 'the refusal is counted');
  const { client } = await connectOnce(`mqtt://127.0.0.1:${c.mqttPort}`, { clientId: 'small-1' });
  t.teardown(() => void client.end(true));
  await publishQos1(client, topics.telemetry('small-1'), batch('small-1', 1, 1, 3));
  t.same(spooledBodies(c), [batch('small-1', 1, 1, 3)], 'the next device is acknowledged and spooled as usual');
});
