/**
 * Azure's own device SDK (azure-iot-device + azure-iot-device-mqtt) receives direct methods
 * (`onDeviceMethod`) and cloud-to-device messages (`client.on('message')`) through the collector,
 * as it would through IoT Hub: TLS listener on loopback, device in the registry, SAS-token auth.
 * IoT Hub itself cannot be reached from here; the collector is the server the SDK talks to.
 */
import t from 'tap';
import { Client, type Message } from 'azure-iot-device';
import { Mqtt } from 'azure-iot-device-mqtt';
import { ErrorCodes, isEdgetwinError } from '../../common/errors.js';
import { HUB, startSdkCollector } from '../helpers/collector.js';
import { waitFor } from '../helpers/util.js';

t.test('an Azure IoT SDK device answers direct methods and receives device-bound messages', async (t) => {
  const { pki, collector, key } = await startSdkCollector(t, 'sdk-dev');
  const c2d = collector.c2d!;
  const now = Date.now();
  // Queued before the device listens; one for a device this site does not know.
  c2d.acceptMessages([
    {
      id: 'msg-1',
      device: 'sdk-dev',
      body: '{"cmd":"open-valve"}',
      properties: { kind: 'command' },
      correlationId: 'c-1',
      enqueuedAt: now,
      expiresAt: now + 60_000,
    },
    { id: 'msg-x', device: 'stranger', body: 'hi', properties: {}, enqueuedAt: now, expiresAt: now + 60_000 },
  ]);
  t.match(
    c2d.store.unsentFeedback(10).find((f) => f.id === 'msg-x'),
    { outcome: 'rejected', code: ErrorCodes.NOT_FOUND },
    'a message for a device not in the registry is rejected at once',
  );

  const cs = `HostName=${HUB};DeviceId=sdk-dev;SharedAccessKey=${key};GatewayHostName=127.0.0.1:${collector.ports.mqtts}`;
  const client = Client.fromConnectionString(cs, Mqtt);
  await client.setOptions({ ca: pki.ca.toString() });
  await client.open();
  t.teardown(() => client.close());

  client.onDeviceMethod('reboot', (request, response) => {
    response.send(200, { rebooting: true, delayS: (request.payload as { delayS: number }).delayS }, () => undefined);
  });
  client.onDeviceMethod('fail', (_request, response) => response.send(409, { reason: 'busy' }, () => undefined));
  // The SDK subscribes in the background: connectTimeout lets the call wait for it, as IoT Hub's does.
  const r = await c2d.methods.invoke('sdk-dev', 'reboot', { delayS: 3 }, 5000, 5000);
  t.same(r, { status: 200, payload: { rebooting: true, delayS: 3 } }, 'onDeviceMethod handled the call and its answer came back');
  t.same(
    await c2d.methods.invoke('sdk-dev', 'fail', null, 5000, 0),
    { status: 409, payload: { reason: 'busy' } },
    "the device's own status",
  );
  const unhandled = await c2d.methods.invoke('sdk-dev', 'nobodyHome', null, 300, 0).catch((e: unknown) => e);
  t.ok(isEdgetwinError(unhandled, ErrorCodes.METHOD_TIMEOUT), 'a method the SDK has no handler for times out (504), as in IoT Hub');

  const received: Message[] = [];
  client.on('message', (msg: Message) => {
    received.push(msg);
    // Over MQTT the PUBACK already completed it; complete() is a no-op that calls back.
    client.complete(msg, () => undefined);
  });
  await waitFor(() => received.length === 1, 10_000, 'the queued message');
  const m = received[0]!;
  t.equal(m.messageId, 'msg-1', 'messageId from $.mid');
  t.equal(m.correlationId, 'c-1', 'correlationId from $.cid');
  t.equal(m.getData().toString(), '{"cmd":"open-valve"}', 'the body as sent');
  t.equal(m.properties.getValue('kind'), 'command', 'application properties');
  await waitFor(() => c2d.store.unsentFeedback(10).some((f) => f.id === 'msg-1' && f.outcome === 'delivered'), 5000, 'delivered');

  // Live: a message queued while the SDK listens arrives at once.
  c2d.acceptMessages([
    { id: 'msg-2', device: 'sdk-dev', body: 'second', properties: {}, enqueuedAt: Date.now(), expiresAt: Date.now() + 60_000 },
  ]);
  await waitFor(() => received.length === 2, 5000, 'the live message');
  t.equal(received[1]!.getData().toString(), 'second');
  // The store lets a message go on the device's PUBACK, which the SDK sends after it hands it over.
  await waitFor(() => c2d.store.depth().messages === 0, 5000, 'nothing left queued');
});
