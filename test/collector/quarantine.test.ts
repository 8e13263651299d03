/**
 * Nothing silently dropped (issue 13): a payload the collector cannot read (`21.5`, `[{"t":1}]`,
 * `temperature=21.5`, invalid UTF-8) or will not store (a lone surrogate, an integer past 2^53, a
 * sample time outside the window, more metric names than `limits.metricsPerDevice`) is acknowledged, counted, and kept — its bytes and the reason
 * spooled as a quarantine message that reaches the cloud's quarantine, where the user finds it.
 * Good telemetry around it is unaffected.
 */
import { join } from 'node:path';
import t from 'tap';
import mqtt from 'mqtt';
import { ErrorCodes } from '../../common/errors.js';
import { call } from '../helpers/cloud.js';
import { batch, metric, publishQos1 } from '../helpers/collector.js';
import { startCloud, startCollector, tempDir, waitFor } from '../helpers/stack.js';

const now = Date.now();
const bad: { name: string; payload: Buffer; code: string }[] = [
  { name: 'a bare number', payload: Buffer.from('21.5'), code: ErrorCodes.BAD_PAYLOAD },
  { name: 'an array', payload: Buffer.from('[{"t":1}]'), code: ErrorCodes.BAD_PAYLOAD },
  { name: 'line protocol', payload: Buffer.from('temperature=21.5'), code: ErrorCodes.BAD_PAYLOAD },
  { name: 'invalid UTF-8', payload: Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]), code: ErrorCodes.BAD_PAYLOAD },
  // The issue's reading: a metric map with a lone surrogate in its unit.
  { name: 'a lone surrogate', payload: Buffer.from('{"temperature":{"value":1,"unit":"\\ud800"}}'), code: ErrorCodes.BAD_VALUE },
  {
    name: 'a seq past 2^53',
    payload: Buffer.from(`{"v":1,"device":"dev9","epoch":1,"readings":[{"seq":1e20,"ts":${now},"metric":"t","value":1,"unit":"C"}]}`),
    code: ErrorCodes.BAD_VALUE,
  },
  {
    name: 'a sample time in 1970',
    payload: Buffer.from(`{"v":1,"device":"dev9","epoch":1,"readings":[{"seq":1,"ts":5,"metric":"t","value":1,"unit":"C"}]}`),
    code: ErrorCodes.BAD_VALUE,
  },
  {
    name: 'a sample time a year ahead',
    payload: Buffer.from(`{"temperature":21.5,"ts":"${new Date(now + 366 * 86_400_000).toISOString()}"}`),
    code: ErrorCodes.BAD_VALUE,
  },
  // limits.metricsPerDevice is 2 below: a message naming more distinct metrics can never fit a twin.
  { name: 'a map of 3 metrics', payload: Buffer.from('{"a":1,"b":2,"c":3}'), code: ErrorCodes.LIMIT_EXCEEDED },
  {
    name: 'a batch of 3 metrics',
    payload: Buffer.from(
      `{"v":1,"device":"dev9","epoch":1,"readings":[${['a', 'b', 'c'].map((m, i) => `{"seq":${10 + i},"ts":${now},"metric":"${m}","value":1,"unit":"C"}`).join(',')}]}`,
    ),
    code: ErrorCodes.LIMIT_EXCEEDED,
  },
];

t.test('refused payloads are acknowledged, counted and delivered to the cloud quarantine with their bytes', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startCloud(join(dir, 'cloud'), { lakehouse: { flushIntervalMs: 100 } });
  t.teardown(() => cloud.stop());
  // The good batches carry 3 readings of one metric: more readings than the cap, but one name — stored.
  const collector = await startCollector(join(dir, 'collector'), cloud.url, 0, {
    mqtt: { maxPayloadBytes: 1024 },
    limits: { metricsPerDevice: 2 },
  });
  t.teardown(() => collector.stop());
  const client = mqtt.connect(`mqtt://127.0.0.1:${collector.mqttPort}`, { clientId: 'dev9', clean: false, reconnectPeriod: 0 });
  t.teardown(() => client.end(true));
  await new Promise((r) => client.once('connect', r));
  const topic = 'devices/dev9/messages/events/';

  await publishQos1(client, topic, batch('dev9', 1, 1, 3));
  for (const b of bad) await publishQos1(client, `${topic}app=${encodeURIComponent(b.name)}`, b.payload);
  const big = Buffer.alloc(2000, 0x41);
  await publishQos1(client, topic, big);
  await publishQos1(client, topic, batch('dev9', 1, 4, 3));
  t.pass('every publish acknowledged (PUBACK)');

  t.equal(await metric(collector.registry, 'edgetwin_broker_quarantined_total'), bad.length + 1, 'counted at the collector');

  // At the cloud: one quarantine row per refused payload (reason `refused`), in order, the 6 good readings in silver.
  const url = `${cloud.url}/v1/quarantine?device=dev9&reason=refused`;
  await waitFor(
    async () => {
      await cloud.flush();
      const r = await call('GET', url);
      return r.status === 200 && (r.body.items as unknown[]).length === bad.length + 1;
    },
    20_000,
    'refused payloads in the cloud quarantine',
  );
  type Kept = { code: string; payload: string; bytes: number; truncated?: boolean; properties?: string };
  const items = ((await call('GET', url)).body.items as { detail: string; raw: string }[])
    .map((i) => ({ detail: i.detail, m: JSON.parse(i.raw) as Kept }))
    .sort((x, y) => (x.m.properties ?? '~').localeCompare(y.m.properties ?? '~'));
  const byName = new Map(items.map((i) => [decodeURIComponent((i.m.properties ?? '').replace(/^app=/, '')), i]));
  for (const b of bad) {
    const got = byName.get(b.name);
    t.ok(got, `${b.name}: in the quarantine`);
    t.equal(got?.m.code, b.code, `${b.name}: refused with ${b.code}`);
    t.ok(got?.detail.startsWith(b.code), `${b.name}: the reason says why`);
    t.same(Buffer.from(got?.m.payload ?? '', 'base64'), b.payload, `${b.name}: byte for byte what the device sent`);
  }
  const oversize = byName.get('');
  t.match(oversize?.m, { code: ErrorCodes.PAYLOAD_TOO_LARGE, bytes: 2000 }, 'an oversize payload: its size and its bytes');
  await waitFor(async () => (await cloud.identities('dev9')).length === 6, 20_000, 'the good readings around them are stored');
  t.equal((await call('GET', `${cloud.url}/healthz`)).status, 200, 'the lake writer is healthy');
});
