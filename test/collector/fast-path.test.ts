/**
 * The broker's telemetry fast path (collector/broker/fast-path.ts) against a real broker, spool and
 * aedes, fed byte streams directly: packets split at every byte boundary, telemetry interleaved
 * with packets only aedes handles, PUBACK order and message ids, refused payloads, the ACL, and
 * the keepalive with nothing but telemetry on the wire.
 */
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import t, { type Test } from 'tap';
import { OpenAuthenticator } from '../../collector/broker/auth.js';
import { MqttBroker } from '../../collector/broker/broker.js';
import { FAST_PATH_PINS, checkFastPath, installedVersion } from '../../collector/broker/fast-path.js';
import { loadCollectorConfig } from '../../collector/config.js';
import { SpoolWriter } from '../../collector/spool/spool-writer.js';
import { ErrorCodes } from '../../common/errors.js';
import { Registry } from '../../common/metrics.js';
import { SqliteOutbox } from '../../common/outbox/outbox.js';
import { batch, metric } from '../helpers/collector.js';
import { silent, tempDir, waitFor } from '../helpers/stack.js';

function str(s: string): Buffer {
  const b = Buffer.from(s);
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
}

function packet(first: number, body: Buffer): Buffer {
  const len: number[] = [];
  let n = body.length;
  do {
    let d = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) d |= 0x80;
    len.push(d);
  } while (n > 0);
  return Buffer.concat([Buffer.from([first, ...len]), body]);
}

const connect = (id: string, keepaliveS = 0): Buffer =>
  packet(0x10, Buffer.concat([str('MQTT'), Buffer.from([4, 0x02, keepaliveS >> 8, keepaliveS & 0xff]), str(id)]));
const publish = (topic: string, payload: string, qos: 0 | 1, id = 0): Buffer =>
  packet(0x30 | (qos << 1), Buffer.concat([str(topic), qos ? Buffer.from([id >> 8, id & 0xff]) : Buffer.alloc(0), Buffer.from(payload)]));
const pingreq = (): Buffer => Buffer.from([0xc0, 0]);
const subscribe = (id: number, filter: string): Buffer =>
  packet(0x82, Buffer.concat([Buffer.from([id >> 8, id & 0xff]), str(filter), Buffer.from([1])]));

interface Packet {
  type: number;
  body: Buffer;
}

/** A connection as aedes sees it: bytes pushed in by the test, bytes written out collected. */
class Wire extends Duplex {
  out = Buffer.alloc(0);
  gone = false;
  constructor() {
    super();
    this.on('close', () => (this.gone = true));
  }
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.out = Buffer.concat([this.out, chunk]);
    cb();
  }
  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    this.out = Buffer.concat([this.out, ...chunks.map((c) => c.chunk)]);
    cb();
  }
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.gone = true;
    cb(err);
  }
  /** Delivers `chunk` as one read of its own: aedes reads and parses it before the next one arrives. */
  async send(chunk: Buffer): Promise<void> {
    this.push(chunk);
    await new Promise((r) => setImmediate(r));
  }
  packets(): Packet[] {
    const out: Packet[] = [];
    let off = 0;
    const b = this.out;
    while (off < b.length) {
      let i = off + 1;
      let len = 0;
      let mul = 1;
      for (;;) {
        const d = b[i++]!;
        len += (d & 0x7f) * mul;
        mul *= 128;
        if (!(d & 0x80)) break;
      }
      out.push({ type: b[off]! >> 4, body: b.subarray(i, i + len) });
      off = i + len;
    }
    return out;
  }
  pubacks(): number[] {
    return this.packets()
      .filter((p) => p.type === 4)
      .map((p) => p.body.readUInt16BE(0));
  }
}

async function startBroker(t: Test, mqtt: object = {}): Promise<{ broker: MqttBroker; spool: SqliteOutbox; registry: Registry }> {
  const { dir, cleanup } = tempDir();
  const cfg = loadCollectorConfig(
    undefined,
    { stateDir: dir, mqtt: { port: 0, rateLimit: { messagesPerS: 0 }, ...mqtt }, admin: { enabled: false } },
    {},
  );
  const spool = new SqliteOutbox({ path: join(dir, 'spool.db'), maxBytes: 1 << 26, whenFull: 'block', synchronous: 'full' });
  const writer = new SpoolWriter(spool, { commitIntervalMs: 0, commitMaxMessages: 1000 }, silent(), () => undefined);
  const registry = new Registry();
  const broker = new MqttBroker(cfg.mqtt, {
    auth: new OpenAuthenticator(),
    spoolWriter: writer,
    log: silent(),
    registry,
    revocationPollMs: 100,
  });
  await broker.start();
  t.teardown(async () => {
    await broker.stop();
    writer.close();
    spool.close();
    cleanup();
  });
  return { broker, spool, registry };
}

async function connected(broker: MqttBroker, id: string, keepaliveS = 0, extra: Buffer = Buffer.alloc(0)): Promise<Wire> {
  const w = new Wire();
  broker.handle(w);
  await w.send(Buffer.concat([connect(id, keepaliveS), extra]));
  await waitFor(() => w.packets().some((p) => p.type === 2), 10_000, 'CONNACK');
  if (w.packets()[0]!.body[1] !== 0) throw new Error(`CONNACK refused: ${w.packets()[0]!.body[1]}`);
  return w;
}

const allBodies = (spool: SqliteOutbox): string[] =>
  (spool.db.prepare('SELECT body FROM queue ORDER BY id').all() as { body: string }[]).map((r) => r.body);
/** Spooled telemetry; a refused payload is spooled too, as a quarantine message (kept for the cloud's quarantine). */
const bodies = (spool: SqliteOutbox): string[] => allBodies(spool).filter((b) => !b.startsWith('{"v":1,"kind":"quarantine"'));
const quarantined = (spool: SqliteOutbox): { code: string; payload: string }[] =>
  allBodies(spool)
    .filter((b) => b.startsWith('{"v":1,"kind":"quarantine"'))
    .map((b) => JSON.parse(b) as { code: string; payload: string });

/** Telemetry on both paths, a refused payload, QoS 0, a property bag, and packets only aedes handles, in one stream. */
function script(id: string): { bytes: Buffer; acks: number[]; stored: string[] } {
  const ev = `devices/${id}/messages/events/`;
  const b1 = batch(id, 1, 1);
  const b2 = batch(id, 1, 2);
  const b3 = batch(id, 1, 3);
  const b4 = batch(id, 1, 4);
  const b5 = batch(id, 1, 5, 3);
  const bytes = Buffer.concat([
    publish(ev, b1, 1, 7),
    pingreq(),
    publish(ev, 'not json', 1, 8),
    subscribe(9, `devices/${id}/messages/devicebound/#`),
    publish(ev, b2, 0),
    publish(`${ev}$.ct=application%2Fjson&$.ce=utf-8`, b3, 1, 300),
    // A property bag with a slash is aedes' to check: the same ACL and spool, PUBACK still in order.
    publish(`${ev}a/b`, b4, 1, 301),
    publish(ev, b5, 1, 0x1234),
  ]);
  return { bytes, acks: [7, 8, 300, 301, 0x1234], stored: [b1, b2, b3, b4, b5] };
}

t.test('every split of the stream gives the same PUBACKs, in order, and the same spool rows', async (t) => {
  const { broker, spool, registry } = await startBroker(t);
  let runs = 0;
  const check = async (w: Wire, s: ReturnType<typeof script>, what: string): Promise<void> => {
    await waitFor(() => w.pubacks().length >= s.acks.length && w.packets().some((p) => p.type === 9), 30_000, `acks (${what})`);
    runs++;
    const suback = w.packets().find((p) => p.type === 9)!;
    t.same(
      { pubacks: w.pubacks(), pingresp: w.packets().some((p) => p.type === 13), suback: [...suback.body], open: !w.gone },
      // PUBACK ids echoed in publish order; SUBACK grants QoS 1 on its own tree.
      { pubacks: s.acks, pingresp: true, suback: [0, 9, 1], open: true },
      what,
    );
    w.destroy();
  };
  const id0 = 'fp-whole';
  const s0 = script(id0);
  const w0 = await connected(broker, id0);
  await w0.send(s0.bytes);
  await check(w0, s0, 'one chunk');
  t.same(bodies(spool), s0.stored, 'valid telemetry spooled once each, in order, the refused payload not');

  // Every byte boundary: the stream in two chunks split there.
  const splits = Array.from({ length: s0.bytes.length - 1 }, (_, i) => i + 1);
  for (let i = 0; i < splits.length; i += 25) {
    await Promise.all(
      splits.slice(i, i + 25).map(async (k) => {
        const id = `fp-${k}`;
        const s = script(id);
        const w = await connected(broker, id);
        await w.send(s.bytes.subarray(0, k));
        await w.send(s.bytes.subarray(k));
        await check(w, s, `split at ${k}`);
      }),
    );
  }
  // And one byte per chunk.
  const s1 = script('fp-bytes');
  const w1 = await connected(broker, 'fp-bytes');
  for (let k = 0; k < s1.bytes.length; k++) await w1.send(s1.bytes.subarray(k, k + 1));
  await check(w1, s1, 'one byte per chunk');

  t.equal(await metric(registry, 'edgetwin_broker_rejected_total', { code: ErrorCodes.BAD_PAYLOAD }), runs, 'each refused payload counted');
  t.equal(await metric(registry, 'edgetwin_broker_accepted_readings_total'), runs * 7, 'accepted readings counted');
  t.equal(bodies(spool).length, runs * 5);
  const q = quarantined(spool);
  t.equal(q.length, runs, 'each refused payload kept as a quarantine message');
  t.same(Buffer.from(q[0]!.payload, 'base64').toString(), 'not json', 'with the bytes the device sent');
  t.equal(q[0]!.code, ErrorCodes.BAD_PAYLOAD);
});

t.test('packets pipelined with CONNECT, one cut in half, reach the spool in order', async (t) => {
  const { broker, spool } = await startBroker(t);
  const id = 'fp-pipelined';
  const s = script(id);
  const cut = 30;
  const w = await connected(broker, id, 0, s.bytes.subarray(0, cut));
  await w.send(s.bytes.subarray(cut));
  await waitFor(() => w.pubacks().length >= s.acks.length, 10_000, 'acks');
  t.same(w.pubacks(), s.acks);
  t.same(bodies(spool), s.stored);
});

t.test('a publish outside its own telemetry topic closes the connection unacknowledged', async (t) => {
  const { broker, spool, registry } = await startBroker(t);
  for (const topic of [
    'devices/someone-else/messages/events/',
    'devices/fp-acl/messages/events/#',
    'devices/fp-acl/messages/eventsX',
    '$SYS/x',
  ]) {
    const w = await connected(broker, 'fp-acl');
    const before = spool.db.prepare('SELECT count(*) AS n FROM queue').get() as { n: number };
    await w.send(
      Buffer.concat([
        publish('devices/fp-acl/messages/events/', batch('fp-acl', 1, 1), 1, 1),
        publish(topic, batch('fp-acl', 1, 2), 1, 2),
        publish('devices/fp-acl/messages/events/', batch('fp-acl', 1, 3), 1, 3),
      ]),
    );
    await waitFor(() => w.gone, 10_000, `closed after ${topic}`);
    t.notOk(w.pubacks().includes(2), `no PUBACK for ${topic}`);
    const after = spool.db.prepare('SELECT count(*) AS n FROM queue').get() as { n: number };
    t.ok(after.n - before.n <= 2, `nothing published on ${topic} stored`);
    t.notOk(bodies(spool).some((b) => b === batch('fp-acl', 1, 2)));
  }
  t.ok((await metric(registry, 'edgetwin_broker_rejected_total', { code: ErrorCodes.FORBIDDEN })) >= 2, 'ACL refusals counted');
});

t.test('an oversize packet on the fast path closes the connection', async (t) => {
  const { broker, registry } = await startBroker(t, { maxPayloadBytes: 4096 });
  const w = await connected(broker, 'fp-big');
  const head = publish('devices/fp-big/messages/events/', 'x'.repeat(200_000), 1, 5).subarray(0, 100);
  await w.send(head);
  await waitFor(() => w.gone, 10_000, 'closed');
  t.same(w.pubacks(), []);
  t.ok((await metric(registry, 'edgetwin_broker_connection_errors_total')) >= 1, 'counted as a connection error');
});

t.test('telemetry alone keeps the connection alive; silence past the keepalive ends it', async (t) => {
  const { broker } = await startBroker(t);
  const w = await connected(broker, 'fp-keepalive', 1);
  // aedes allows 1.5 × keepalive: four publishes 600 ms apart span 2.4 s with no PINGREQ.
  for (let i = 1; i <= 4; i++) {
    // About time: the keepalive is the subject; publishes spaced 600 ms apart.
    await new Promise((r) => setTimeout(r, 600));
    await w.send(publish('devices/fp-keepalive/messages/events/', batch('fp-keepalive', 1, i), 1, i));
  }
  await waitFor(() => w.pubacks().length === 4, 10_000, 'acks');
  t.notOk(w.gone, 'still connected after 2.4 s of telemetry only');
  await waitFor(() => w.gone, 15_000, 'keepalive timeout');
  t.pass('closed once the device went silent');
});

t.test('engaged: a real MQTT client publishing telemetry goes through the fast path, and the pins hold', async (t) => {
  const { broker, spool, registry } = await startBroker(t);
  const { default: mqttjs } = await import('mqtt');
  const client = await mqttjs.connectAsync(`mqtt://127.0.0.1:${broker.ports.mqtt!}`, { clientId: 'fast-1', protocolVersion: 4 });
  t.teardown(() => client.endAsync(true));
  for (let i = 1; i <= 3; i++) await client.publishAsync('devices/fast-1/messages/events/', batch('fast-1', 1, i), { qos: 1 });
  t.equal(bodies(spool).length, 3, 'stored');
  t.equal(await metric(registry, 'edgetwin_broker_fast_path_publishes_total'), 3, 'every one of them taken by the fast path');
  // The versions the fast path was written for are pinned exactly, and are the ones installed.
  const { readFileSync } = await import('node:fs');
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> };
  for (const [name, version] of Object.entries(FAST_PATH_PINS)) {
    t.equal(pkg.dependencies[name], version, `${name} pinned exactly (a production dependency)`);
    t.equal(installedVersion(name), version, `${name} ${version} is the one installed`);
  }
});

t.test('an aedes whose clients lack the internals is refused at start, loudly', async (t) => {
  const { Aedes } = await import('aedes');
  const aedes = await Aedes.createBroker();
  t.teardown(() => new Promise<void>((r) => aedes.close(() => r())));
  t.doesNotThrow(() => checkFastPath(aedes), 'the installed aedes passes');
  const handle = aedes.handle.bind(aedes);
  (aedes as unknown as { handle: typeof handle }).handle = (stream, req) => {
    const c = handle(stream, req);
    (c as unknown as { _parser: { _parseLength?: unknown } })._parser._parseLength = undefined;
    return c;
  };
  t.throws(() => checkFastPath(aedes), {
    code: ErrorCodes.INTERNAL,
    message: /fast path cannot engage: aedes 1\.2\.0 \/ mqtt-packet 9\.0\.2 lack parser\._parseLength\(\).*pinned in package\.json/,
  });
});
