/**
 * Device-bound messages end to end: stored by the cloud before the 202, queued durably at the
 * collector (state `queued`), kept across a collector restart while the device is away, delivered
 * at QoS 1 with their properties when it comes back (`delivered`), expired on time at the
 * collector and in the cloud when the site is away (`expired`), bounded per device (429).
 */
import t from 'tap';
import { ErrorCodes } from '../../common/errors.js';
import { C2dDevice } from '../helpers/c2d-device.js';
import { call } from '../helpers/cloud.js';
import { startCloud, startCollector, tempDir, waitFor } from '../helpers/stack.js';

function telemetry(id: string): string {
  return JSON.stringify({ v: 1, device: id, epoch: 1, readings: [{ seq: 1, ts: Date.now(), metric: 'm', value: 1, unit: 'u' }] });
}

t.test('messages survive a collector restart, are delivered, and expire on time', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startCloud(`${dir}/cloud`, { c2d: { maxMessagesPerDevice: 4, sweepIntervalMs: 100 } });
  t.teardown(() => cloud.stop());
  let collector = await startCollector(`${dir}/collector`, cloud.url, 0, { siteId: 'site-m' });
  const port = collector.mqttPort;
  const first = await C2dDevice.connect(port, 'valve-7', { methods: false });
  await first.client.publishAsync('devices/valve-7/messages/events/', telemetry('valve-7'), { qos: 1 });
  await waitFor(async () => (await call('GET', `${cloud.url}/v1/twins/valve-7`)).status === 200, 20_000, 'twin');
  await first.end();

  const base = `${cloud.url}/v1/twins/valve-7/messages`;
  const sent = await call('POST', base, {
    body: { payload: { open: true }, properties: { kind: 'command' }, correlationId: 'c-9', ttlS: 600 },
  });
  t.equal(sent.status, 202, 'stored: 202');
  t.match(sent.body, { messageId: String, state: 'pending', device: 'valve-7', site: 'site-m', properties: { kind: 'command' } });
  const id = sent.body.messageId as string;
  const text = await call('POST', base, { body: { payload: 'plain text', ttlS: 600 } });
  await waitFor(async () => (await call('GET', `${base}/${id}`)).body.state === 'queued', 10_000, 'queued at the collector');
  t.pass('the collector has it in its durable queue');

  await collector.stop();
  collector = await startCollector(`${dir}/collector`, cloud.url, port, { siteId: 'site-m' });
  t.teardown(() => collector.stop());
  const dev = await C2dDevice.connect(port, 'valve-7', { methods: false, messages: 1 });
  t.teardown(() => dev.end());
  await waitFor(() => dev.messages.length === 2, 10_000, 'both messages after the restart');
  t.equal(dev.messages[0]!.body, '{"open":true}', 'an object payload is sent as its JSON');
  t.equal(dev.messages[1]!.body, 'plain text', 'a string payload as its text');
  t.match(dev.messages[0]!.properties, { '$.mid': id, '$.cid': 'c-9', kind: 'command' });
  // The device acknowledges each message on its own, so each one's report reaches the cloud on its own.
  for (const m of [id, text.body.messageId as string]) {
    await waitFor(async () => (await call('GET', `${base}/${m}`)).body.state === 'delivered', 10_000, `${m} delivered`);
  }
  t.pass('both delivered');

  // Expiry at the collector: the device is away, the message times out there and the cloud hears of it.
  await dev.end();
  const short = await call('POST', base, { body: { payload: 'soon gone', ttlS: 1 } });
  const shortId = short.body.messageId as string;
  await waitFor(async () => (await call('GET', `${base}/${shortId}`)).body.state === 'expired', 10_000, 'expired');
  const expired = (await call('GET', `${base}/${shortId}`)).body;
  const late = Date.parse(expired.stateAt) - Date.parse(expired.expiresAt);
  t.ok(late >= 0 && late < 1500, `expired on time (${late} ms after its expiry)`);

  // Expiry in the cloud: the site's collector is down, the message never leaves the cloud.
  await collector.stop();
  const stranded = await call('POST', base, { body: { payload: 'stranded', ttlS: 1 } });
  await waitFor(
    async () => (await call('GET', `${base}/${stranded.body.messageId as string}`)).body.state === 'expired',
    10_000,
    'expired in the cloud',
  );
  t.match((await call('GET', `${base}/${stranded.body.messageId as string}`)).body, {
    state: 'expired',
    reason: /before it reached the site/,
  });

  const list = await call('GET', `${base}?limit=10`);
  t.same(
    list.body.items.map((m: { state: string }) => m.state),
    ['expired', 'expired', 'delivered', 'delivered'],
    'the list, newest first, with each state',
  );
});

t.test('per-device bound and input checks', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startCloud(`${dir}/cloud`, { c2d: { maxMessagesPerDevice: 2 } });
  t.teardown(() => cloud.stop());
  const collector = await startCollector(`${dir}/collector`, cloud.url, 0, { siteId: 'site-q' });
  t.teardown(() => collector.stop());
  const dev = await C2dDevice.connect(collector.mqttPort, 'q-1', { methods: false });
  await dev.client.publishAsync('devices/q-1/messages/events/', telemetry('q-1'), { qos: 1 });
  await dev.end();
  await waitFor(async () => (await call('GET', `${cloud.url}/v1/twins/q-1`)).status === 200, 20_000, 'twin');
  const base = `${cloud.url}/v1/twins/q-1/messages`;
  t.equal((await call('POST', base, { body: { payload: 1 } })).status, 202);
  t.equal((await call('POST', base, { body: { payload: 2 } })).status, 202);
  const full = await call('POST', base, { body: { payload: 3 } });
  t.equal(full.status, 429, 'the third message of a device whose queue holds two: 429');
  t.equal(full.body.code, ErrorCodes.DEVICE_QUEUE_FULL);
  t.equal(
    (await call('POST', base, { body: { payload: 'x', properties: { $bad: 'a' } } })).status,
    400,
    'a property name with $ is refused',
  );
  t.equal((await call('POST', base, { body: { payload: 'x'.repeat(70 * 1024) } })).status, 413, 'a body over 64 KiB: 413');
  t.equal((await call('POST', base, { body: { payload: 'x', ttlS: 3 * 86400 } })).status, 400, 'a TTL over 48 h is refused');
  t.equal((await call('POST', `${cloud.url}/v1/twins/nobody/messages`, { body: { payload: 'x' } })).status, 404, 'an unknown device: 404');
  t.equal((await call('GET', `${base}/no-such-id`)).status, 404);
  const audit = await call('GET', `${cloud.url}/v1/twins/q-1/audit?action=message.send`);
  t.equal(audit.body.items.length, 2, 'each accepted message is audited');
});
