/**
 * The collector serving models over MQTT (real aedes on loopback, a raw mqtt.js device): entry and
 * chunked file on the device's own connection, errors as status replies, spoofed replies refused,
 * damaged cache files dropped at start-up; and the topic and desired-value rules both sides share.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import t from 'tap';
import { ModelFiles, sha256Hex } from '../../common/models/files.js';
import { modelTopics, parseDesiredModel, parseModelTopic } from '../../common/wire/model-protocol.js';
import { canonicalJson } from '../../common/models/signature.js';
import { baseModel, variant } from '../helpers/models.js';
import { startCollector, tempDir, waitFor } from '../helpers/stack.js';

t.test('topics and desired values', async (t) => {
  t.same(parseModelTopic(modelTopics.getChunk('r1', 'forecaster', 'forecaster-1.0.0', 4096)), {
    kind: 'chunk',
    rid: 'r1',
    name: 'forecaster',
    version: 'forecaster-1.0.0',
    offset: 4096,
  });
  t.same(parseModelTopic(modelTopics.getEntry('r2', 'f', 'v1')), { kind: 'entry', rid: 'r2', name: 'f', version: 'v1' });
  t.match(parseModelTopic(modelTopics.response(200, 'r3', { offset: 0, total: 10 })), {
    kind: 'response',
    status: 200,
    rid: 'r3',
    offset: 0,
    total: 10,
  });
  t.equal(parseModelTopic('$edgetwin/models/GET/f/+/entry/?$rid=1').kind, 'unknown', 'no wildcards in names');
  t.equal(parseModelTopic('$edgetwin/models/GET/f/v/file/?$rid=1&offset=-1').kind, 'unknown');
  t.same(parseDesiredModel({ name: 'f', version: 'v1', sha256: 'a'.repeat(64), extra: 1 }), {
    name: 'f',
    version: 'v1',
    sha256: 'a'.repeat(64),
  });
  t.throws(() => parseDesiredModel('forecaster-1.0.0'), { code: 'EDGETWIN_ERR_CONFIG' });
  t.throws(() => parseDesiredModel({ name: 'f', version: 'v/1', sha256: 'a'.repeat(64) }), { code: 'EDGETWIN_ERR_CONFIG' });
  t.equal(
    canonicalJson({ b: 1, a: { d: [1, { z: 0, y: 1 }], c: 'x' } }),
    '{"a":{"c":"x","d":[1,{"y":1,"z":0}]},"b":1}',
    'signed bytes do not depend on key order',
  );
});

interface Reply {
  status: number;
  offset: number | undefined;
  total: number | undefined;
  body: Buffer;
}

async function device(
  port: number,
  id: string,
): Promise<{ client: MqttClient; ask: (topic: (rid: string) => string) => Promise<Reply>; closed: () => boolean }> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId: id, username: id, reconnectPeriod: 0, clean: true });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  let closed = false;
  client.on('close', () => (closed = true));
  client.on('error', () => undefined);
  const replies = new Map<string, Reply>();
  client.on('message', (topic, payload) => {
    const r = parseModelTopic(topic);
    if (r.kind === 'response' && r.rid) replies.set(r.rid, { status: r.status, offset: r.offset, total: r.total, body: payload });
  });
  const granted = await client.subscribeAsync(modelTopics.responses, { qos: 0 });
  if (granted[0]?.qos === 128) throw new Error('subscription refused');
  let n = 0;
  const ask = async (topic: (rid: string) => string): Promise<Reply> => {
    const rid = `q${++n}`;
    await client.publishAsync(topic(rid), '', { qos: 0 });
    await waitFor(() => replies.has(rid), 5000, `reply ${rid}`);
    return replies.get(rid)!;
  };
  return { client, ask, closed: () => closed };
}

t.test('the collector serves its cache to devices over MQTT', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cacheDir = join(dir, 'collector', 'models');
  const files = new ModelFiles(cacheDir);
  const { bytes } = baseModel();
  const stored = { entry: variant('forecaster-1.1.0').entry as never };
  files.put(stored, bytes);
  files.put({ entry: variant('forecaster-1.9.0').entry as never }, bytes);
  // Damaged after it was stored: the collector drops it when it starts.
  const damaged = files.filePath('forecaster', 'forecaster-1.9.0');
  const b = readFileSync(damaged);
  b[10] ^= 1;
  writeFileSync(damaged, b);

  // No cloud: only what is cached can be served.
  const collector = await startCollector(join(dir, 'collector'), 'http://127.0.0.1:9', 0, {
    sinks: { http: { enabled: false } },
    models: { chunkBytes: 4096 },
  });
  t.teardown(() => collector.stop());
  t.equal(collector.models!.cache.files.get('forecaster', 'forecaster-1.9.0'), undefined, 'the damaged file was dropped at start-up');
  t.same(collector.health().models, { poll: 'off' });

  const d = await device(collector.mqttPort, 'dev-1');
  t.teardown(() => d.client.endAsync());
  const entry = await d.ask((rid) => modelTopics.getEntry(rid, 'forecaster', 'forecaster-1.1.0'));
  t.equal(entry.status, 200);
  t.same(JSON.parse(entry.body.toString('utf8')), stored);
  const parts: Buffer[] = [];
  const wrong: unknown[] = [];
  for (let offset = 0; offset < bytes.length;) {
    const c = await d.ask((rid) => modelTopics.getChunk(rid, 'forecaster', 'forecaster-1.1.0', offset));
    if (c.status !== 200 || c.offset !== offset || c.total !== bytes.length || c.body.length === 0 || c.body.length > 4096)
      wrong.push({ ...c, body: c.body.length });
    parts.push(c.body);
    offset += c.body.length;
  }
  t.same(wrong, [], 'every chunk: 200, its offset, the total size, at most models.chunkBytes');
  t.equal(parts.length, Math.ceil(bytes.length / 4096));
  t.equal(sha256Hex(Buffer.concat(parts)), baseModel().entry.sha256, 'the chunks make up the file');
  const past = await d.ask((rid) => modelTopics.getChunk(rid, 'forecaster', 'forecaster-1.1.0', bytes.length));
  t.same([past.status, JSON.parse(past.body.toString()).errorCode], [400, 'EDGETWIN_ERR_BAD_REQUEST']);
  const unknown = await d.ask((rid) => modelTopics.getEntry(rid, 'forecaster', 'forecaster-0.0.1'));
  t.same([unknown.status, JSON.parse(unknown.body.toString()).errorCode], [404, 'EDGETWIN_ERR_NOT_FOUND']);
  const bad = await d.ask((rid) => `$edgetwin/models/GET/forecaster/forecaster-1.1.0/nonsense/?$rid=${rid}`);
  t.equal(bad.status, 400);

  // Another device may not answer on the reply topics.
  const spoofer = await device(collector.mqttPort, 'dev-2');
  await spoofer.client.publishAsync(modelTopics.response(200, 'q1'), 'forged', { qos: 0 }).catch(() => undefined);
  await waitFor(() => spoofer.closed(), 5000, 'the spoofing device to be disconnected');
  t.pass('a device publishing a model reply is disconnected');
});

t.test('a device naming versions at random cannot keep the collector fetching: bounded, and 404s remembered', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  // A stand-in cloud registry: promotions answered at once (none), every version request held until released.
  const held: ServerResponse[] = [];
  const asked: string[] = [];
  const cloud = createServer((req, res) => {
    if (req.url?.startsWith('/v1/models/promotions')) return void res.writeHead(200).end('{"items":[]}');
    asked.push(req.url ?? '');
    held.push(res);
  });
  await new Promise<void>((r) => cloud.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => {
    cloud.closeAllConnections();
    cloud.close();
  });
  const collector = await startCollector(join(dir, 'collector'), 'http://127.0.0.1:9', 0, {
    sinks: { http: { enabled: false } },
    models: { cloudUrl: `http://127.0.0.1:${(cloud.address() as { port: number }).port}`, deviceFetches: 2, pollMs: 3_600_000 },
  });
  t.teardown(() => collector.stop());
  const d = await device(collector.mqttPort, 'dev-1');
  t.teardown(() => d.client.endAsync());
  const first = [d.ask((rid) => modelTopics.getEntry(rid, 'f', 'x-1')), d.ask((rid) => modelTopics.getEntry(rid, 'f', 'x-2'))];
  await waitFor(() => asked.length === 2, 5000, 'two fetches at the cloud');
  const busy = await d.ask((rid) => modelTopics.getEntry(rid, 'f', 'x-3'));
  t.same([busy.status, JSON.parse(busy.body.toString()).errorCode], [429, 'EDGETWIN_ERR_RATE_LIMITED'], 'a third version: 429 at once');
  const joined = d.ask((rid) => modelTopics.getEntry(rid, 'f', 'x-1'));
  for (const res of held.splice(0)) res.writeHead(404, { 'content-type': 'application/json' }).end('{"code":"EDGETWIN_ERR_NOT_FOUND"}');
  const answers = await Promise.all([...first, joined]);
  t.same(
    answers.map((a) => a.status),
    [404, 404, 404],
    'the held versions answered 404; a second ask for one in flight joined it',
  );
  const again = await d.ask((rid) => modelTopics.getEntry(rid, 'f', 'x-2'));
  t.equal(again.status, 404, 'asked again: 404 from memory');
  t.same(asked, ['/v1/models/f/x-1', '/v1/models/f/x-2'], 'the cloud was asked twice in all, never for x-3 nor again');
  const later = d.ask((rid) => modelTopics.getEntry(rid, 'f', 'x-3'));
  await waitFor(() => asked.length === 3, 5000, 'a fetch slot free again');
  held.splice(0)[0]!.writeHead(404).end();
  t.equal((await later).status, 404, 'once the fetches ended, another version is fetched');
});
