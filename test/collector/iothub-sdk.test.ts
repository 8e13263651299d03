/**
 * Devices on Azure's own IoT Hub device SDK (azure-iot-device + azure-iot-device-mqtt) talk to the
 * collector as they would to IoT Edge acting as a transparent gateway: a connection string with
 * GatewayHostName, MQTT over TLS trusting the site CA, a SAS token as password. Their telemetry
 * (metric maps or edgetwin batches) reaches the cloud with a collector-assigned, durable
 * (device, epoch, seq) identity.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import { ErrorCodes } from '../../common/errors.js';
import { makePki } from '../helpers/certs.js';
import { batch, HUB, metric, startRegistryCollector } from '../helpers/collector.js';
import { startCloud, tempDir, waitFor } from '../helpers/stack.js';
import type { Collector } from '../../collector/collector.js';
import type { Cloud } from '../../cloud/cloud.js';
import { duckSql } from '../helpers/cloud.js';

const { Client, Message } = deviceSdk;
const { Mqtt } = deviceMqtt;
type Client = InstanceType<typeof Client>;

async function quarantined(cloud: Cloud): Promise<Record<string, unknown>[]> {
  const glob = join(cloud.lake.root, 'silver', 'quarantine', '**', '*.parquet');
  return existsSync(join(cloud.lake.root, 'silver', 'quarantine')) ? duckSql(`SELECT * FROM read_parquet('${glob}')`) : [];
}

async function sdkClient(c: Collector, deviceId: string, key: string, ca: Buffer): Promise<Client> {
  const cs = `HostName=${HUB};DeviceId=${deviceId};SharedAccessKey=${key};GatewayHostName=127.0.0.1:${c.ports.mqtts}`;
  const client = Client.fromConnectionString(cs, Mqtt);
  await client.setOptions({ ca: ca.toString() });
  await client.open();
  return client;
}

t.test('Azure IoT device SDK telemetry through the collector to the cloud', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const pki = makePki(dir);
  const cloud = await startCloud(`${dir}/cloud`);
  const overrides = {
    mqtt: { enabled: false, tls: { enabled: true, port: 0, certFile: pki.certFile, keyFile: pki.keyFile } },
    sinks: { http: { enabled: true, url: cloud.url } },
  };
  let c = await startRegistryCollector(`${dir}/collector`, overrides);
  const dev = await c.devices!.add('sdk-1', 'sas');
  let client = await sdkClient(c, 'sdk-1', dev.key!, pki.ca);

  const m1 = new Message(JSON.stringify({ temperature: 21.5, pressure: { value: 101.3, unit: 'kPa' }, status: 'ok' }));
  m1.contentType = 'application/json';
  m1.contentEncoding = 'utf-8';
  m1.properties.add('source', 'line-3');
  await client.sendEvent(m1);
  await client.sendEvent(new Message(JSON.stringify({ ts: 1_763_913_600_000, temperature: 22 })));
  await client.sendEvent(new Message(batch('sdk-1', 7, 500, 2, 'flow')));
  await client.sendEvent(new Message('hello, not JSON'));
  for (let i = 0; i < 5; i++) await client.sendEvent(new Message(JSON.stringify({ rpm: 1000 + i })));

  t.equal(
    await metric(c.registry, 'edgetwin_broker_rejected_total', { code: ErrorCodes.BAD_PAYLOAD }),
    1,
    'a non-JSON body is acknowledged, counted, not stored',
  );
  t.equal(await metric(c.registry, 'edgetwin_broker_skipped_fields_total'), 1, 'the non-numeric field is skipped and counted');
  t.equal(
    await metric(c.registry, 'edgetwin_broker_quarantined_total', { code: ErrorCodes.BAD_VALUE }),
    1,
    'the message with a skipped field is also kept in quarantine (never silently dropped)',
  );
  await waitFor(async () => (await cloud.identities('sdk-1')).length === 10, 10_000, 'readings in the cloud');
  await waitFor(
    async () => {
      await cloud.flush();
      return (await quarantined(cloud)).length === 2;
    },
    10_000,
    'both quarantine copies in the cloud',
  );
  const kept = await quarantined(cloud);
  t.match(
    kept.find((q) => String(q['detail']).includes(ErrorCodes.BAD_VALUE)),
    { device: 'sdk-1', detail: /not numeric metrics.*status/ },
    'the partly stored message: its skipped field named',
  );
  t.match(
    kept.find((q) => String(q['detail']).includes(ErrorCodes.BAD_PAYLOAD)),
    { device: 'sdk-1' },
    'the non-JSON body',
  );
  const ids = await cloud.identities('sdk-1');
  const own = ids.filter((r) => r.epoch === 7);
  t.same(
    own.map((r) => [r.seq, r.metric]),
    [
      [500, 'flow'],
      [501, 'flow'],
    ],
    'an edgetwin batch keeps its own identity',
  );
  const mapped = ids.filter((r) => r.epoch !== 7);
  const epoch = mapped[0]!.epoch;
  t.ok(epoch > 1_600_000_000, `collector-assigned epoch is the spool incarnation (${epoch})`);
  t.ok(mapped.every((r) => r.epoch === epoch));
  t.same(
    mapped.map((r) => r.seq),
    [1, 2, 3, 4, 5, 6, 7, 8],
    'collector-assigned seqs 1..8, in order',
  );
  t.same(
    mapped.slice(0, 3).map((r) => [r.metric, r.value]),
    [
      ['temperature', 21.5],
      ['pressure', 101.3],
      ['temperature', 22],
    ],
  );
  t.same(
    mapped.slice(3).map((r) => r.value),
    [1000, 1001, 1002, 1003, 1004],
  );

  // The seq counter is durable: a restarted collector continues it under the same epoch.
  await client.close();
  await c.stop();
  c = await startRegistryCollector(`${dir}/collector`, overrides);
  client = await sdkClient(c, 'sdk-1', dev.key!, pki.ca);
  await client.sendEvent(new Message(JSON.stringify({ rpm: 2000 })));
  await waitFor(async () => (await cloud.identities('sdk-1')).length === 11, 10_000, 'reading after restart');
  const last = (await cloud.identities('sdk-1')).find((r) => r.value === 2000)!;
  t.same([last.epoch, last.seq], [epoch, 9], 'same epoch, next seq after a restart');

  // A wrong key never gets a connection.
  const bad = Client.fromConnectionString(
    `HostName=${HUB};DeviceId=sdk-1;SharedAccessKey=${Buffer.alloc(32, 1).toString('base64')};GatewayHostName=127.0.0.1:${c.ports.mqtts}`,
    Mqtt,
  );
  await bad.setOptions({ ca: pki.ca.toString() });
  await t.rejects(bad.open(), 'an SDK client with the wrong key is refused');
  await bad.close().catch(() => undefined);

  await client.close();
  await c.stop();
  await cloud.stop();
});
