/**
 * The collector's IoT Hub twin protocol on a real broker, spool and twin store, driven by raw
 * MQTT devices: GET, reported patches (durable in the spool before the 204), desired pushes, and
 * what a device must not be able to do to another device's twin.
 */
import t from 'tap';
import { LANE_NORMAL } from '../../common/outbox/outbox.js';
import { checkMessage } from '../../common/wire/record.js';
import { twinTopics } from '../../common/wire/twin-protocol.js';
import { startCollector, tempDir, waitFor } from '../helpers/stack.js';
import { RawTwinDevice } from '../helpers/twin-device.js';
import type { Collector } from '../../collector/collector.js';

/** A collector with no sink (spool rows stay, so the test can read them) and no desired feed. */
async function collectorAlone(dir: string): Promise<Collector> {
  return startCollector(`${dir}/collector`, 'http://127.0.0.1:9', 0, { sinks: { http: { enabled: false } } });
}

function spooled(c: Collector): unknown[] {
  return c.spool.read(LANE_NORMAL, 0, 1000).map((r) => JSON.parse(r.body) as unknown);
}

t.test('GET, reported patch and desired push follow IoT Hub semantics', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const collector = await collectorAlone(dir);
  t.teardown(() => collector.stop());
  const dev = await RawTwinDevice.connect(collector.mqttPort, 'pump-1');
  t.teardown(() => dev.end());

  const empty = await dev.get();
  t.equal(empty.status, 200);
  t.same(JSON.parse(empty.body), { desired: { $version: 0 }, reported: { $version: 0 } }, 'a new device has empty documents at version 0');

  const r1 = await dev.patchReported({ firmware: '1.0', telemetry: { intervalMs: 1000, on: true } });
  t.equal(r1.status, 204);
  t.equal(r1.version, 1, '204 carries the new reported $version');
  t.equal(r1.body, '', '204 has no body');
  const rows = spooled(collector);
  t.equal(rows.length, 1, 'the patch is in the spool when the 204 arrives');
  const msg = checkMessage(rows[0]);
  t.equal(msg.kind, 'reported', 'spooled as a reported message that passes the wire schema');
  t.match(rows[0], {
    v: 1,
    kind: 'reported',
    device: 'pump-1',
    version: 1,
    patch: { firmware: '1.0', telemetry: { intervalMs: 1000, on: true } },
  });

  const r2 = await dev.patchReported({ telemetry: { on: null, intervalMs: 500 }, extra: [1, 2] });
  t.equal(r2.version, 2);
  const twin = JSON.parse((await dev.get()).body) as { reported: unknown };
  t.same(
    twin.reported,
    { firmware: '1.0', telemetry: { intervalMs: 500 }, extra: [1, 2], $version: 2 },
    'patches merge (null removes a key, arrays replace)',
  );
  t.same(
    collector.twin!.store.get('pump-1').reported,
    { firmware: '1.0', telemetry: { intervalMs: 500 }, extra: [1, 2] },
    'the twin store holds the merged document',
  );

  // Desired: two changes; the device gets each as a merge patch with its $version.
  collector.twin!.applyDesired(
    [{ device: 'pump-1', desired: { samplingIntervalMs: 500, sources: { sim: { enabled: true } } }, version: 3 }],
    10,
  );
  collector.twin!.applyDesired([{ device: 'pump-1', desired: { samplingIntervalMs: 250 }, version: 4 }], 11);
  await waitFor(() => dev.desiredPatches().length === 2, 5000, 'two desired patches');
  t.same(
    dev.desiredPatches(),
    [
      { version: 3, body: { samplingIntervalMs: 500, sources: { sim: { enabled: true } }, $version: 3 } },
      { version: 4, body: { samplingIntervalMs: 250, sources: null, $version: 4 } },
    ],
    'desired patches are diffs with nulls for removed keys, on the desired topic with $version',
  );
  const after = JSON.parse((await dev.get()).body) as { desired: unknown };
  t.same(after.desired, { samplingIntervalMs: 250, $version: 4 }, 'GET returns the full desired document');
  t.equal(collector.twin!.store.feedCursor, 11, 'the feed cursor is stored with the documents');

  // The same document again (a re-delivered feed page) is not pushed twice.
  collector.twin!.applyDesired([{ device: 'pump-1', desired: { samplingIntervalMs: 250 }, version: 4 }], 11);
  // About time: a second push would show within this window; nothing emits "not pushed".
  await new Promise((r) => setTimeout(r, 100));
  t.equal(dev.desiredPatches().length, 2, 'an unchanged document is not pushed again');

  const metrics = await collector.registry.metrics();
  t.match(metrics, /edgetwin_twin_requests_total\{op="reported",status="204"[^}]*\} 2/);
  t.match(metrics, /edgetwin_twin_desired_pushed_total\{[^}]*\} 2/);
});

t.test('desired state survives a collector restart and reaches a device that connects later', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  let collector = await collectorAlone(dir);
  collector.twin!.applyDesired([{ device: 'late-1', desired: { samplingIntervalMs: 750 }, version: 7 }], 42);
  await collector.stop();
  collector = await collectorAlone(dir);
  t.teardown(() => collector.stop());
  t.equal(collector.twin!.store.feedCursor, 42, 'cursor kept across restart');
  const dev = await RawTwinDevice.connect(collector.mqttPort, 'late-1');
  t.teardown(() => dev.end());
  const twin = JSON.parse((await dev.get()).body) as { desired: unknown };
  t.same(twin.desired, { samplingIntervalMs: 750, $version: 7 });
});

t.test('bad reported patches get an error reply with a stable code and are not stored', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const collector = await collectorAlone(dir);
  t.teardown(() => collector.stop());
  const dev = await RawTwinDevice.connect(collector.mqttPort, 'bad-1');
  t.teardown(() => dev.end());

  const cases: [string, string | Buffer, number, string][] = [
    ['not JSON', '{nope', 400, 'EDGETWIN_ERR_BAD_PAYLOAD'],
    ['not an object', '[1,2]', 400, 'EDGETWIN_ERR_BAD_PAYLOAD'],
    ['a $ key', JSON.stringify({ $version: 9 }), 400, 'EDGETWIN_ERR_BAD_PAYLOAD'],
    ['a dotted key', JSON.stringify({ 'a.b': 1 }), 400, 'EDGETWIN_ERR_BAD_PAYLOAD'],
    [
      'too deep',
      JSON.stringify({ a: { b: { c: { d: { e: { f: { g: { h: { i: { j: { k: 1 } } } } } } } } } } }),
      400,
      // Past IoT Hub's 10 levels: a limit, with the code every path gives for JSON depth.
      'EDGETWIN_ERR_LIMIT_EXCEEDED',
    ],
    ['too large', JSON.stringify({ blob: 'x'.repeat(40_000) }), 413, 'EDGETWIN_ERR_PAYLOAD_TOO_LARGE'],
  ];
  for (const [what, body, status, code] of cases) {
    const r = await dev.request((rid) => twinTopics.patchReported(rid), body);
    t.equal(r.status, status, `${what}: status ${status}`);
    t.equal((JSON.parse(r.body) as { errorCode: string }).errorCode, code, `${what}: ${code}`);
  }
  t.equal(spooled(collector).length, 0, 'nothing spooled');
  t.same(collector.twin!.store.get('bad-1').reported, {}, 'nothing stored');
  const unknown = await dev.request((rid) => `$iothub/twin/DELETE/?$rid=${rid}`, '');
  t.equal(unknown.status, 400, 'an unknown twin operation is answered 400');
  t.notOk(dev.closed, 'bad input does not cost the device its connection');
  const ok = await dev.patchReported({ fine: true });
  t.equal(ok.status, 204, 'the device keeps working');
  const metrics = await collector.registry.metrics();
  t.match(metrics, /edgetwin_twin_rejected_total\{code="EDGETWIN_ERR_BAD_PAYLOAD"[^}]*\} 4/);
  t.match(metrics, /edgetwin_twin_rejected_total\{code="EDGETWIN_ERR_LIMIT_EXCEEDED"[^}]*\} 1/);
});

t.test("a device cannot read, patch or spoof another device's twin", async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const collector = await collectorAlone(dir);
  t.teardown(() => collector.stop());
  const a = await RawTwinDevice.connect(collector.mqttPort, 'dev-a');
  const b = await RawTwinDevice.connect(collector.mqttPort, 'dev-b');
  t.teardown(() => Promise.all([a.end(), b.end()]));

  collector.twin!.applyDesired([{ device: 'dev-b', desired: { secret: 'b-only' }, version: 1 }], 1);
  await waitFor(() => b.desiredPatches().length === 1, 5000, "b's desired patch");
  await b.patchReported({ mine: 'b' });
  const aTwin = JSON.parse((await a.get()).body) as unknown;
  t.same(aTwin, { desired: { $version: 0 }, reported: { $version: 0 } }, "a's GET returns a's twin only, whatever it subscribed to");
  t.equal(a.desiredPatches().length, 0, "b's desired patch never reaches a, though both subscribe to the same filter");
  t.notOk(
    a.received.some((m) => m.body.includes('b-only') || m.body.includes('"mine"')),
    "nothing of b's twin reached a",
  );

  // a answers as if it were the hub: a GET reply and a desired patch on the shared topics.
  const bBefore = b.received.length;
  // (Not awaited: a QoS 1 publish that is refused never gets its PUBACK.)
  void a.client
    .publishAsync('$iothub/twin/res/200/?$rid=r1', JSON.stringify({ desired: { evil: true } }), { qos: 1 })
    .catch(() => undefined);
  await waitFor(() => a.closed, 5000, 'a disconnected for publishing a twin reply');
  const c = await RawTwinDevice.connect(collector.mqttPort, 'dev-c');
  t.teardown(() => c.end());
  void c.client.publishAsync(twinTopics.desiredPatch(99), JSON.stringify({ evil: true }), { qos: 0 }).catch(() => undefined);
  await waitFor(() => c.closed, 5000, 'c disconnected for publishing a desired patch');
  // About time: a forwarded spoof would reach b within this window; nothing emits "not forwarded".
  await new Promise((r) => setTimeout(r, 150));
  t.equal(b.received.length, bBefore, 'the spoofed reply and desired patch reached no one');
  t.notOk(b.closed, 'the victim stays connected');
  t.same(collector.twin!.store.get('dev-b').desired, { secret: 'b-only' }, "b's desired state is untouched");
  const bTwin = JSON.parse((await b.get()).body) as { desired: unknown; reported: unknown };
  t.same(bTwin, { desired: { secret: 'b-only', $version: 1 }, reported: { mine: 'b', $version: 1 } });
  t.match(await collector.registry.metrics(), /edgetwin_twin_rejected_total\{code="EDGETWIN_ERR_FORBIDDEN"[^}]*\} 2/);

  // Subscribing to another device's tree or to all twin traffic is refused by the broker's ACL.
  const d = await RawTwinDevice.connect(collector.mqttPort, 'dev-d', false);
  t.teardown(() => d.end());
  const granted = await d.client.subscribeAsync(['$iothub/#', 'devices/dev-b/#'], { qos: 0 }).catch((err: Error) => err);
  t.ok(
    granted instanceof Error || granted.every((g) => g.qos === 128) || d.closed,
    'wildcard twin and foreign-device subscriptions are refused',
  );
});
