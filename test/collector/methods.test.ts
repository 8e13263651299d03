/**
 * Direct methods on the collector's real broker, driven by raw MQTT devices: a request reaches
 * only the device it is for, the answer comes back by $rid, and a device can neither answer
 * another device's request nor publish requests; not connected, disconnect mid-call and timeouts
 * end in their stable codes instead of a hang.
 */
import t from 'tap';
import { ErrorCodes, isEdgetwinError } from '../../common/errors.js';
import { methodTopics } from '../../common/wire/c2d-protocol.js';
import type { Collector } from '../../collector/collector.js';
import { C2dDevice } from '../helpers/c2d-device.js';
import { metric } from '../helpers/collector.js';
import { startCollector, tempDir, waitFor } from '../helpers/stack.js';

async function collectorAlone(dir: string): Promise<Collector> {
  return startCollector(`${dir}/collector`, 'http://127.0.0.1:9', 0, { sinks: { http: { enabled: false } }, c2d: { cloudUrl: undefined } });
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (err) {
    return isEdgetwinError(err) ? err.code : String(err);
  }
}

t.test('a method reaches its device and the answer comes back; payloads are JSON both ways', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const collector = await collectorAlone(dir);
  t.teardown(() => collector.stop());
  const pump = await C2dDevice.connect(collector.mqttPort, 'pump-1', { answer: (r) => [200, { echo: r.payload, method: r.method }] });
  const other = await C2dDevice.connect(collector.mqttPort, 'pump-2', { answer: () => [500, 'wrong device'] });
  t.teardown(() => Promise.all([pump.end(), other.end()]));

  const r = await collector.c2d!.methods.invoke('pump-1', 'reboot', { delayS: 5, nested: [1, 'a'] }, 5000, 0);
  t.same(r, { status: 200, payload: { echo: { delayS: 5, nested: [1, 'a'] }, method: 'reboot' } }, 'status and JSON payload of the device');
  t.equal(pump.requests.length, 1);
  t.equal(other.requests.length, 0, 'the other device, subscribed to the same filter, never sees the request');

  pump.setAnswer(() => [404, { errorCode: 'nope' }]);
  const r2 = await collector.c2d!.methods.invoke('pump-1', 'unknownThing', null, 5000, 0);
  t.same(r2, { status: 404, payload: { errorCode: 'nope' } }, "the device's own status is passed on as it is");

  // 20 concurrent calls, answered in reverse order: each answer finds its own caller by $rid.
  const held: (() => void)[] = [];
  pump.setAnswer(
    (req) =>
      new Promise((resolve) => {
        held.push(() => resolve([200, { n: (req.payload as { n: number }).n }]));
      }),
  );
  const calls = Array.from({ length: 20 }, (_, n) => collector.c2d!.methods.invoke('pump-1', 'count', { n }, 5000, 0));
  await waitFor(() => held.length === 20, 5000, '20 requests at the device');
  for (const release of held.reverse()) release();
  const answers = await Promise.all(calls);
  t.same(
    answers.map((a) => (a.payload as { n: number }).n),
    Array.from({ length: 20 }, (_, n) => n),
    'every concurrent call gets its own answer',
  );
  t.equal(await metric(collector.registry, 'edgetwin_methods_total', { result: 'answered' }), 22);
});

t.test('not connected, connect timeout, timeout, disconnect mid-call', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const collector = await collectorAlone(dir);
  t.teardown(() => collector.stop());
  const m = collector.c2d!.methods;

  t.equal(await codeOf(m.invoke('ghost', 'ping', null, 5000, 0)), ErrorCodes.DEVICE_NOT_ONLINE, 'an absent device: 404 at once');
  const unsubscribed = await C2dDevice.connect(collector.mqttPort, 'quiet', { methods: false });
  t.teardown(() => unsubscribed.end());
  t.equal(
    await codeOf(m.invoke('quiet', 'ping', null, 5000, 0)),
    ErrorCodes.DEVICE_NOT_ONLINE,
    'connected but not subscribed to methods: not online, as in IoT Hub',
  );

  // connectTimeout: the call waits for the device to connect and subscribe.
  const waiting = m.invoke('late-comer', 'ping', { x: 1 }, 5000, 5000);
  const late = await C2dDevice.connect(collector.mqttPort, 'late-comer', { answer: () => [200, 'pong'] });
  t.teardown(() => late.end());
  t.same(await waiting, { status: 200, payload: 'pong' }, 'a device that connects within connectTimeout gets the call');
  t.equal(await codeOf(m.invoke('never', 'ping', null, 5000, 200)), ErrorCodes.DEVICE_NOT_ONLINE, 'and one that does not: 404 after it');

  const silent = await C2dDevice.connect(collector.mqttPort, 'silent');
  t.teardown(() => silent.end());
  t.equal(await codeOf(m.invoke('silent', 'ping', null, 150, 0)), ErrorCodes.METHOD_TIMEOUT, 'no answer: 504 code after responseTimeout');
  // The late answer is dropped and counted; the device is not disconnected for it.
  await silent.respond(silent.requests[0]!.rid, 200, 'too late');
  await waitFor(async () => (await metric(collector.registry, 'edgetwin_methods_rejected_total', { code: 'late' })) === 1, 5000, 'late');
  t.notOk(silent.closed, 'a late answer does not cost the connection');

  const leaver = await C2dDevice.connect(collector.mqttPort, 'leaver');
  const call = m.invoke('leaver', 'reboot', null, 30_000, 0);
  await waitFor(() => leaver.requests.length === 1, 5000, 'request at the device');
  const t0 = Date.now();
  leaver.client.stream.destroy();
  t.equal(await codeOf(call), ErrorCodes.GATEWAY, 'a device that drops mid-call fails the call with the gateway code');
  t.ok(Date.now() - t0 < 5000, 'at once, not at the 30 s response timeout');
  t.equal(m.inflight, 0, 'nothing left pending');
});

t.test('a device answers only requests it received, and never sends requests', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const collector = await collectorAlone(dir);
  t.teardown(() => collector.stop());
  const victim = await C2dDevice.connect(collector.mqttPort, 'victim');
  const attacker = await C2dDevice.connect(collector.mqttPort, 'attacker');
  t.teardown(() => Promise.all([victim.end(), attacker.end()]));

  const call = collector.c2d!.methods.invoke('victim', 'unlock', null, 5000, 0);
  await waitFor(() => victim.requests.length === 1, 5000, 'request at the victim');
  const rid = victim.requests[0]!.rid;
  // The attacker guesses (or learned) the victim's request id and answers first.
  await attacker.respond(rid, 200, { unlocked: true, by: 'attacker' });
  await waitFor(() => attacker.closed, 5000, 'the attacker disconnected');
  t.equal(await metric(collector.registry, 'edgetwin_methods_rejected_total', { code: ErrorCodes.FORBIDDEN }), 1, 'refused and counted');
  await victim.respond(rid, 200, { unlocked: false });
  t.same(await call, { status: 200, payload: { unlocked: false } }, "the call gets the victim's own answer, not the forged one");

  const spoofer = await C2dDevice.connect(collector.mqttPort, 'spoofer');
  await spoofer.client.publishAsync(methodTopics.request('reboot', '1'), '{}', { qos: 0 });
  await waitFor(() => spoofer.closed, 5000, 'a device publishing a method request is disconnected');
  t.equal(victim.requests.length, 1, 'and nobody received its request');

  const guesser = await C2dDevice.connect(collector.mqttPort, 'guesser');
  await guesser.respond('never-issued', 200, {});
  await waitFor(() => guesser.closed, 5000, 'an answer to a request id never issued: disconnected');

  const sub = await C2dDevice.connect(collector.mqttPort, 'subscriber', { methods: false });
  t.teardown(() => sub.end());
  const grant = (topic: string): Promise<number> =>
    new Promise((resolve) => sub.client.subscribe(topic, { qos: 0 }, (err, granted) => resolve(err ? 128 : (granted?.[0]?.qos ?? -1))));
  t.same(
    [await grant('$iothub/methods/res/#'), await grant('$iothub/methods/POST/#'), await grant('$iothub/#')],
    [128, 0, 128],
    'only the request filter is granted; answers and wildcards over $iothub are refused (SUBACK 0x80)',
  );
});
