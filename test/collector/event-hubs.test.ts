/**
 * The Event Hubs sink with the real `@azure/event-hubs` producer against a protocol-level AMQP 1.0
 * test server on loopback (test/helpers/event-hubs-server.ts) — Azure itself cannot be reached
 * from here. Checks what arrives byte for byte, the partition key per device, per-device order,
 * CBS auth, outages, and per-record refusal of an event too large for the hub. The Entra ID path
 * (DefaultAzureCredential → AMQPS) runs the compiled collector as its own process.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import t from 'tap';
import type { MqttClient } from 'mqtt';
import { EventHubsSink } from '../../collector/sinks/event-hubs.js';
import { ErrorCodes } from '../../common/errors.js';
import { topics } from '../../common/wire/record.js';
import { makePki } from '../helpers/certs.js';
import { spawnDaemon } from '../helpers/cli.js';
import { batch, connectOnce, metric, publishQos1, startRegistryCollector } from '../helpers/collector.js';
import { EventHubsTestServer } from '../helpers/event-hubs-server.js';
import { tempDir, waitFor } from '../helpers/stack.js';

async function publishAll(client: MqttClient, device: string, n: number, from = 1): Promise<string[]> {
  const sent: string[] = [];
  for (let i = from; i < from + n; i++) {
    const p = batch(device, 1, i, 1 + (i % 3));
    await publishQos1(client, topics.telemetry(device), p);
    sent.push(p);
  }
  return sent;
}

t.test('events arrive byte for byte, keyed by device, in order per device', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const hub = await new EventHubsTestServer({ partitionCount: 4 }).start();
  const c = await startRegistryCollector(dir, {
    auth: { mode: 'open' },
    sinks: { eventHubs: { enabled: true, connectionString: hub.connectionString } },
    runner: { batchMaxMessages: 50 },
  });
  const a = await connectOnce(`mqtt://127.0.0.1:${c.mqttPort}`, { clientId: 'eh-a' });
  const b = await connectOnce(`mqtt://127.0.0.1:${c.mqttPort}`, { clientId: 'eh-b' });
  const [sentA, sentB] = await Promise.all([publishAll(a.client, 'eh-a', 120), publishAll(b.client, 'eh-b', 80)]);
  await waitFor(() => hub.events.length >= 200, 15_000, 'all events at the hub');

  const got = (key: string): string[] => hub.events.filter((e) => e.partitionKey === key).map((e) => e.body.toString('utf8'));
  t.same(got('eh-a'), sentA, 'eh-a: every payload, byte for byte, in order');
  t.same(got('eh-b'), sentB, 'eh-b: every payload, byte for byte, in order');
  t.equal(hub.events.length, 200, 'nothing twice');
  t.ok(hub.events.every((e) => e.contentType === 'application/json' && e.properties['edgetwin-site'] === 'site-1'));
  t.ok(
    hub.events.every((e) => e.properties['edgetwin-device'] === e.partitionKey),
    'device property matches the partition key',
  );
  t.equal(
    new Set(hub.events.filter((e) => e.partitionKey === 'eh-a').map((e) => e.partitionId)).size,
    1,
    "one device's events share one partition",
  );
  t.ok(
    hub.transfers.every((x) => x.target === hub.hubName && x.partitionKey !== undefined),
    'sent to the hub with a partition key, not to a fixed partition',
  );
  t.ok(
    hub.transfers.some((x) => x.count > 1),
    'events are batched (several per AMQP transfer)',
  );
  t.ok(hub.transfers.length < 200, `fewer transfers (${hub.transfers.length}) than events`);
  t.ok(
    hub.tokens.length > 0 && hub.tokens.every((x) => x.accepted && x.type === 'servicebus.windows.net:sastoken'),
    'CBS SAS tokens presented and valid',
  );
  t.ok(
    hub.management.some((m) => m.type === 'com.microsoft:eventhub'),
    'the hub was READ on $management at connect',
  );
  await waitFor(() => c.spool.depth().rows === 0, 5000, 'spool released');
  a.client.end(true);
  b.client.end(true);
  await c.stop();
  await hub.close();
});

t.test('hub outage: retried until it is back, nothing lost; oversize events refused per record', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const hub = await new EventHubsTestServer({ maxMessageSize: 16 * 1024 }).start();
  const c = await startRegistryCollector(dir, {
    auth: { mode: 'open' },
    mqtt: { maxPayloadBytes: 64 * 1024 },
    sinks: { eventHubs: { enabled: true, connectionString: hub.connectionString, timeoutMs: 2000 } },
  });
  const { client } = await connectOnce(`mqtt://127.0.0.1:${c.mqttPort}`, { clientId: 'eh-o' });
  const first = await publishAll(client, 'eh-o', 20);
  await waitFor(() => hub.events.length === 20, 10_000, 'first events');

  hub.rejectWith = 'com.microsoft:server-busy';
  const during = await publishAll(client, 'eh-o', 30, 21);
  await waitFor(
    async () => (await metric(c.registry, 'edgetwin_sink_failures_total', { sink: 'event-hubs' })) >= 2,
    10_000,
    'failures retried',
  );
  t.equal(hub.events.length, 20, 'nothing accepted during the outage');
  t.ok(c.spool.depth().rows >= 30, 'the spool holds what the hub refused');
  t.equal(c.health().ok, false, 'health reports the failing sink');
  hub.rejectWith = undefined;
  await waitFor(() => hub.events.length >= 50, 15_000, 'backlog delivered');
  const bodies = hub.events.map((e) => e.body.toString('utf8'));
  t.same([...new Set(bodies)], [...first, ...during], 'every message delivered, in order (no loss)');

  // An event larger than the hub's max message size cannot ever be sent: refused on its own.
  const big = batch('eh-o', 1, 1000, 400);
  t.ok(Buffer.byteLength(big) > 16 * 1024);
  await publishQos1(client, topics.telemetry('eh-o'), big);
  const after = await publishAll(client, 'eh-o', 3, 2000);
  await waitFor(
    async () =>
      (await metric(c.registry, 'edgetwin_sink_rejected_total', { sink: 'event-hubs', code: ErrorCodes.PAYLOAD_TOO_LARGE })) === 1,
    10_000,
    'oversize refused',
  );
  await waitFor(() => hub.events.some((e) => e.body.toString() === after[2]), 10_000, 'later events still flow');
  t.notOk(
    hub.events.some((e) => e.body.length > 16 * 1024),
    'the oversize event never reached the hub',
  );
  client.end(true);
  await c.stop();
  await hub.close();
});

t.test('a wrong key is refused by CBS and the sink keeps retrying', async (t) => {
  const hub = await new EventHubsTestServer().start();
  const sink = new EventHubsSink({ enabled: true, connectionString: hub.connectionString.replace(hub.key, 'wrong-key'), timeoutMs: 2000 });
  await t.rejects(sink.connect(), /Event Hubs unreachable/);
  t.ok(
    hub.tokens.some((x) => !x.accepted),
    'the server saw and refused the token',
  );
  await sink.close();
  await hub.close();
});

t.test('Entra ID: DefaultAzureCredential token over AMQPS, collector as its own process', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const pki = makePki(dir);
  const jwt = 'eyJ0eXAiOiJKV1QifQ.test-token.sig';
  const hub = await new EventHubsTestServer({ jwt, tls: { cert: readFileSync(pki.certFile), key: readFileSync(pki.keyFile) } }).start();
  // An App Service managed-identity endpoint: what DefaultAzureCredential asks on such a host.
  const tokenRequests: string[] = [];
  const msi: Server = createServer((req, res) => {
    tokenRequests.push(`${req.url} ${String(req.headers['x-identity-header'])}`);
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ access_token: jwt, expires_on: String(Math.floor(Date.now() / 1000) + 3600), token_type: 'Bearer' }));
  });
  await new Promise<void>((r) => msi.listen(0, '127.0.0.1', () => r()));
  const cfgFile = join(dir, 'collector.json');
  writeFileSync(
    cfgFile,
    JSON.stringify({
      stateDir: join(dir, 'state'),
      mqtt: { port: 0 },
      admin: { enabled: false },
      runner: { flushIntervalMs: 5 },
      sinks: {
        http: { enabled: false },
        eventHubs: { enabled: true, fullyQualifiedNamespace: `127.0.0.1:${hub.port}`, eventHubName: hub.hubName },
      },
    }),
  );
  const proc = spawnDaemon(['collector', '--config', cfgFile], {
    NODE_EXTRA_CA_CERTS: pki.caFile,
    IDENTITY_ENDPOINT: `http://127.0.0.1:${(msi.address() as { port: number }).port}/msi/token`,
    IDENTITY_HEADER: 'test-identity-header',
    EDGETWIN_LOG_LEVEL: 'warn',
  });
  t.teardown(() => {
    proc.kill('SIGKILL');
  });
  const port = Number((await proc.ready)['mqttPort']);
  const { client } = await connectOnce(`mqtt://127.0.0.1:${port}`, { clientId: 'eh-entra' });
  const sent = await publishAll(client, 'eh-entra', 5);
  await waitFor(() => hub.events.length === 5, 20_000, 'events through the Entra path');
  t.same(
    hub.events.map((e) => e.body.toString()),
    sent,
    'delivered byte for byte',
  );
  t.ok(hub.tokens.length > 0 && hub.tokens.every((x) => x.type === 'jwt' && x.accepted), 'CBS got the Entra JWT');
  t.match(
    tokenRequests[0] ?? '',
    /resource=https%3A%2F%2Feventhubs\.azure\.net.* test-identity-header$/,
    'the token came from the managed identity endpoint for Event Hubs',
  );
  client.end(true);
  proc.kill('SIGTERM');
  t.equal(await proc.exited, 0, 'graceful shutdown on SIGTERM');
  msi.close();
  await hub.close();
});
