/**
 * Azure's own device SDK (azure-iot-device + azure-iot-device-mqtt) reads and patches its twin and
 * receives desired-property updates through the collector, as it would through IoT Hub or an IoT
 * Edge transparent gateway: TLS listener on loopback, device in the registry, SAS-token auth.
 * IoT Hub itself cannot be reached from here; the collector is the server the SDK talks to.
 */
import t from 'tap';
import { Client } from 'azure-iot-device';
import { Mqtt } from 'azure-iot-device-mqtt';
import { LANE_NORMAL } from '../../common/outbox/outbox.js';
import { HUB, startSdkCollector } from '../helpers/collector.js';
import { waitFor } from '../helpers/util.js';

t.test('an Azure IoT SDK device gets its twin, patches reported and receives desired updates', async (t) => {
  const { pki, collector, key } = await startSdkCollector(t, 'sdk-dev');
  collector.twin!.applyDesired([{ device: 'sdk-dev', desired: { samplingIntervalMs: 1000, mode: 'eco' }, version: 4 }], 4);

  const cs = `HostName=${HUB};DeviceId=sdk-dev;SharedAccessKey=${key};GatewayHostName=127.0.0.1:${collector.ports.mqtts}`;
  const client = Client.fromConnectionString(cs, Mqtt);
  await client.setOptions({ ca: pki.ca.toString() });
  await client.open();
  t.teardown(() => client.close());

  const twin = await client.getTwin();
  t.equal(twin.properties.desired['mode'], 'eco', 'GET brings the desired state the collector holds');
  t.equal(twin.properties.desired.$version, 4, 'with its $version');

  await new Promise<void>((resolve, reject) =>
    twin.properties.reported.update({ firmware: '2.1.0', battery: { pct: 87 } }, (err?: Error) => (err ? reject(err) : resolve())),
  );
  t.same(
    collector.twin!.store.get('sdk-dev').reported,
    { firmware: '2.1.0', battery: { pct: 87 } },
    'the reported patch is in the twin store',
  );
  const spooled = collector.spool
    .read(LANE_NORMAL, 0, 100)
    .map((r) => JSON.parse(r.body) as { kind?: string; device?: string; patch?: unknown });
  t.ok(
    spooled.some((m) => m.kind === 'reported' && m.device === 'sdk-dev'),
    'and in the spool for the cloud',
  );

  const refused = await new Promise<Error | undefined>((resolve) =>
    twin.properties.reported.update({ 'bad.key': 1 }, (err?: Error) => resolve(err)),
  );
  t.ok(refused instanceof Error, 'a patch IoT Hub would refuse fails in the SDK');

  const updates: Record<string, unknown>[] = [];
  twin.on('properties.desired', (delta: Record<string, unknown>) => updates.push(delta));
  await waitFor(() => updates.length >= 1, 5000, 'the initial desired event');
  // The SDK subscribes in the background once a listener is added; change desired once it listens.
  await waitFor(() => collector.twin!.handler.listening('sdk-dev') === 1, 5000, 'the SDK subscribed to desired patches');
  collector.twin!.applyDesired([{ device: 'sdk-dev', desired: { samplingIntervalMs: 250 }, version: 5 }], 5);
  await waitFor(() => updates.some((u) => u['$version'] === 5), 5000, 'the desired patch');
  const patch = updates.find((u) => u['$version'] === 5)!;
  t.match(patch, { samplingIntervalMs: 250, $version: 5 }, 'the SDK receives the desired patch');
  t.same({ ...twin.properties.desired }, { samplingIntervalMs: 250, $version: 5 }, 'and merges it into its twin (the removed key is gone)');
});
