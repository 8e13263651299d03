/**
 * Device-bound (C2D) messages at the collector: queued durably while the device is away,
 * delivered QoS 1 with IoT Hub's property bag, completed by the PUBACK, redelivered when it is not
 * acknowledged, kept across a collector restart, expired on time, bounded per device, and never
 * delivered twice when the cloud sends one again.
 */
import t from 'tap';
import type { Collector } from '../../collector/collector.js';
import { ErrorCodes } from '../../common/errors.js';
import type { DeviceBoundMessage } from '../../common/wire/c2d-protocol.js';
import { C2dDevice } from '../helpers/c2d-device.js';
import { startCollector, tempDir, waitFor } from '../helpers/stack.js';

async function collectorAt(stateDir: string, port = 0): Promise<Collector> {
  return startCollector(stateDir, 'http://127.0.0.1:9', port, {
    sinks: { http: { enabled: false } },
    c2d: { maxMessagesPerDevice: 3, inflightPerDevice: 2 },
  });
}

let n = 0;
function msg(device: string, body: string, ttlMs = 60_000, properties: Record<string, string> = {}): DeviceBoundMessage {
  const now = Date.now();
  return { id: `m-${++n}`, device, body, properties, enqueuedAt: now, expiresAt: now + ttlMs };
}

t.test('queued while away, delivered in order with the property bag, completed by PUBACK', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const c = await collectorAt(`${dir}/c`);
  t.teardown(() => c.stop());
  const a = msg('valve-1', '{"open":true}', 60_000, { kind: 'command', 'with space': 'a/b&c=d' });
  const b = { ...msg('valve-1', 'plain text'), correlationId: 'corr-7' };
  t.same(c.c2d!.acceptMessages([a, b]), [a.id, b.id], 'both acknowledged to the cloud');
  t.same(c.c2d!.store.depth(), { messages: 2, devices: 1, feedback: 0 }, 'queued on disk');

  const dev = await C2dDevice.connect(c.mqttPort, 'valve-1', { messages: 1 });
  t.teardown(() => dev.end());
  await waitFor(() => c.c2d!.store.unsentFeedback(10).length === 2, 5000, 'both delivered');
  t.same(
    dev.messages.map((m) => m.body),
    ['{"open":true}', 'plain text'],
    'in the order they were sent',
  );
  t.match(dev.messages[0]!.properties, {
    '$.mid': a.id,
    '$.to': '/devices/valve-1/messages/devicebound',
    kind: 'command',
    'with space': 'a/b&c=d',
  });
  t.equal(dev.messages[0]!.properties['$.exp'], new Date(a.expiresAt).toISOString(), 'expiry as IoT Hub writes it');
  t.equal(dev.messages[1]!.properties['$.cid'], 'corr-7', 'correlation id');
  t.same(
    c.c2d!.store.unsentFeedback(10).map((f) => [f.id, f.outcome]),
    [
      [a.id, 'delivered'],
      [b.id, 'delivered'],
    ],
    'feedback: delivered',
  );
  t.equal(c.c2d!.store.depth().messages, 0, 'and the queue is empty');

  // The cloud sends a finished message again (a resend that crossed our acknowledgement): acknowledged, not delivered twice.
  t.same(c.c2d!.acceptMessages([a]), [a.id]);
  // About time: a second delivery would show within this window; nothing emits "not delivered".
  await new Promise((r) => setTimeout(r, 100));
  t.equal(dev.messages.length, 2, 'a finished message is never delivered twice');
  c.c2d!.store.ackFeedback([a.id]);
  t.same(c.c2d!.acceptMessages([a]), [a.id]);
  t.equal(c.c2d!.store.depth().messages, 0, 'not even after its feedback was confirmed');
});

t.test('not acknowledged: redelivered on the next connection; a restart keeps the queue', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  let c = await collectorAt(`${dir}/c`);
  const port = c.mqttPort;
  const m1 = msg('pump-1', 'first');
  const m2 = msg('pump-1', 'second');
  const m3 = msg('pump-1', 'third');
  c.c2d!.acceptMessages([m1, m2, m3]);
  const dev = await C2dDevice.connect(port, 'pump-1', { messages: 1, holdAcks: true });
  await waitFor(() => dev.messages.length === 2, 5000, 'two in flight (inflightPerDevice)');
  // About time: a third message would be sent within this window; nothing emits "not sent".
  await new Promise((r) => setTimeout(r, 100));
  t.equal(dev.messages.length, 2, 'no more than the window while unacknowledged');
  await dev.end();
  await c.stop();

  c = await collectorAt(`${dir}/c`, port);
  t.teardown(() => c.stop());
  t.equal(c.c2d!.store.depth().messages, 3, 'all three survived the restart (none was acknowledged)');
  const again = await C2dDevice.connect(port, 'pump-1', { messages: 1 });
  t.teardown(() => again.end());
  await waitFor(() => again.messages.length === 3, 5000, 'all three delivered after the restart');
  t.same(
    again.messages.map((m) => m.body),
    ['first', 'second', 'third'],
  );
  await waitFor(() => c.c2d!.store.depth().messages === 0, 5000, 'completed');
});

t.test('expired on time, bounded per device', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const c = await collectorAt(`${dir}/c`);
  t.teardown(() => c.stop());
  const short = msg('sleepy', 'wake up', 300);
  const long = msg('sleepy', 'later', 60_000);
  const stale = msg('sleepy', 'already over', -1);
  c.c2d!.acceptMessages([short, long, stale]);
  const staleFb = c.c2d!.store.unsentFeedback(10).find((f) => f.id === stale.id);
  t.equal(staleFb?.outcome, 'expired', 'a message that expired on the way is expired on arrival');
  await waitFor(() => c.c2d!.store.unsentFeedback(10).some((f) => f.id === short.id), 3000, 'the short one expires');
  const fb = c.c2d!.store.unsentFeedback(10).find((f) => f.id === short.id)!;
  t.equal(fb.outcome, 'expired');
  t.ok(fb.at >= short.expiresAt && fb.at - short.expiresAt < 500, `expired on time (${fb.at - short.expiresAt} ms after its expiry)`);
  t.equal(c.c2d!.store.depth().messages, 1, 'the long one is still queued');

  const more = [msg('sleepy', '2'), msg('sleepy', '3'), msg('sleepy', '4')];
  c.c2d!.acceptMessages(more);
  const rejected = c.c2d!.store.unsentFeedback(10).find((f) => f.id === more[2]!.id);
  t.match(
    rejected,
    { outcome: 'rejected', code: ErrorCodes.DEVICE_QUEUE_FULL },
    'the fourth for one device is rejected (maxMessagesPerDevice 3)',
  );
  t.equal(c.c2d!.store.depth().messages, 3);

  const dev = await C2dDevice.connect(c.mqttPort, 'sleepy', { messages: 1 });
  t.teardown(() => dev.end());
  await waitFor(() => dev.messages.length === 3, 5000, 'the queued ones delivered');
  t.notOk(
    dev.messages.some((m) => m.body === 'wake up'),
    'an expired message is never delivered',
  );
});
