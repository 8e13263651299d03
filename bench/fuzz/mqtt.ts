/**
 * MQTT fuzzing against a running collector, seeded: valid packets from mqtt-packet, then mutated
 * (bytes flipped, truncated, extended, remaining length forged), random and mutated publish
 * payloads on a device's own topic, truncated frames, oversize payloads, and slow-loris sockets
 * that never finish a CONNECT. Returns what it sent and what the collector answered, so callers
 * can hold the collector's counters against it.
 */
import { connect, type Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { parseDeviceMessage, propertyBag } from '../../collector/broker/iothub-telemetry.js';
import { spliceBatch, topics } from '../../common/wire/record.js';
import { between, pick, rng, type Rng } from '../chaos/rng.js';

export interface MqttFuzzOptions {
  port: number;
  seed: number;
  /** Connections carrying mutated packets. */
  malformedConnections: number;
  packetsPerConnection: number;
  /** Random or mutated publish payloads from authenticated devices. */
  payloads: number;
  oversize: number;
  maxPayloadBytes: number;
  slowLoris: number;
  /** Called when the random-payload phase is over (the caller reads the collector's counters for that phase alone). */
  afterPayloads?: () => Promise<void>;
}

export interface MqttFuzzFigures {
  mqtt_malformed_packets: number;
  mqtt_malformed_connections: number;
  mqtt_payloads: number;
  mqtt_payloads_invalid: number;
  mqtt_payloads_acked: number;
  mqtt_oversize: number;
  mqtt_oversize_acked: number;
  mqtt_truncated_frames: number;
  mqtt_slowloris: number;
}

const gen = (p: object): Buffer => mqttPacket.generate(p as mqttPacket.Packet);

function connectPacket(clientId: string): Buffer {
  return gen({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 30 });
}

function randomBytes(r: Rng, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = between(r, 0, 255);
  return b;
}

/** One valid packet of a random kind. */
function validPacket(r: Rng, device: string, i: number): Buffer {
  const topic = pick(r, [topics.telemetry(device), `devices/${device}/x`, '$iothub/twin/GET/?$rid=1', '#', 'a/+/b', '']);
  switch (between(r, 0, 7)) {
    case 0:
      return connectPacket(pick(r, [device, '', 'x'.repeat(300), 'a+b', '\u0000']));
    case 1:
      return gen({
        cmd: 'publish',
        topic: topic || 't',
        payload: randomBytes(r, between(r, 0, 64)),
        qos: pick(r, [0, 1, 2]),
        messageId: i + 1,
        retain: r() < 0.2,
        dup: false,
      });
    case 2:
      return gen({ cmd: 'subscribe', messageId: i + 1, subscriptions: [{ topic: topic || '#', qos: pick(r, [0, 1, 2]) }] });
    case 3:
      return gen({ cmd: 'unsubscribe', messageId: i + 1, unsubscriptions: [topic || '#'] });
    case 4:
      return gen({ cmd: pick(r, ['puback', 'pubrec', 'pubrel', 'pubcomp']), messageId: between(r, 1, 65535) });
    case 5:
      return gen({ cmd: 'pingreq' });
    case 6:
      return gen({ cmd: 'disconnect' });
    default:
      return gen({ cmd: 'connack', returnCode: 0, sessionPresent: false });
  }
}

/** Damages a packet the ways a broken client or an attacker would. */
function mutate(r: Rng, p: Buffer): Buffer {
  const b = Buffer.from(p);
  switch (between(r, 0, 5)) {
    case 0: // flip bytes
      for (let k = between(r, 1, 4); k > 0; k--) b[between(r, 0, b.length - 1)] = between(r, 0, 255);
      return b;
    case 1: // truncate
      return b.subarray(0, between(r, 0, Math.max(0, b.length - 1)));
    case 2: // garbage appended
      return Buffer.concat([b, randomBytes(r, between(r, 1, 32))]);
    case 3: // forged remaining length: a varint that never ends, or one that claims far more than follows
      return Buffer.concat([
        b.subarray(0, 1),
        r() < 0.5 ? Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff]) : Buffer.from([0xff, 0xff, 0xff, 0x7f]),
        b.subarray(2),
      ]);
    case 4: // reserved packet type 0 or 15, or bad flags
      b[0] = pick(r, [0x00, 0xf0, (b[0]! & 0xf0) | between(r, 1, 15)]);
      return b;
    default: // pure noise
      return randomBytes(r, between(r, 1, 64));
  }
}

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** Writes, then waits until the collector closes the socket, `enough()` holds, or `ms` pass; never throws. */
async function sendAndClose(
  port: number,
  chunks: Buffer[],
  ms: number,
  onData?: (d: Buffer) => void,
  enough?: () => boolean,
): Promise<void> {
  let s: Socket;
  try {
    s = await open(port);
  } catch {
    return;
  }
  s.on('error', () => undefined);
  if (onData) s.on('data', onData);
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  for (const c of chunks) if (!s.destroyed) s.write(c);
  const until = Date.now() + ms;
  let isClosed = false;
  void closed.then(() => (isClosed = true));
  while (!isClosed && Date.now() < until && !enough?.()) await new Promise((r) => setTimeout(r, 10));
  s.destroy();
}

/** Counts PUBACKs (0x40 0x02 id id) in what the collector sent back. */
function pubackCounter(): { onData: (d: Buffer) => void; count: () => number } {
  let n = 0;
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  parser.on('packet', (p: mqttPacket.Packet) => {
    if (p.cmd === 'puback') n++;
  });
  parser.on('error', () => undefined);
  return { onData: (d) => parser.parse(d), count: () => n };
}

/** A payload for device `device`: random bytes, a valid batch, or one damaged at one spot. */
function payload(r: Rng, device: string, seq: number): string | Buffer {
  const good = spliceBatch(device, 1, [JSON.stringify({ seq, ts: Date.now(), metric: 'fz', value: seq, unit: '1' })]);
  switch (between(r, 0, 6)) {
    case 0:
      return randomBytes(r, between(r, 0, 200));
    case 1:
      return good;
    case 2: {
      const i = between(r, 0, good.length - 1);
      return good.slice(0, i) + String.fromCharCode(between(r, 0, 0xffff)) + good.slice(i + 1);
    }
    case 3:
      return good.slice(0, between(r, 0, good.length - 1));
    case 4: // wrong types in otherwise well-formed JSON
      return pick(r, [
        `{"v":1,"device":"${device}","epoch":"1","readings":[]}`,
        `{"v":1,"device":"${device}","epoch":1,"readings":[{"seq":-1,"ts":1,"metric":"m","value":1,"unit":"u"}]}`,
        `{"v":1,"device":"${device}","epoch":1,"readings":[{"seq":1,"ts":1,"metric":"m","value":"1","unit":"u"}]}`,
        `{"v":1,"device":"${device}","epoch":1,"readings":[{"seq":1,"ts":1,"metric":"1; DROP TABLE x","value":1,"unit":"u"}]}`,
        `{"v":2,"device":"${device}","epoch":1,"readings":[{"seq":1,"ts":1,"metric":"m","value":1,"unit":"u"}]}`,
        `{"v":1,"device":"someone-else","epoch":1,"readings":[{"seq":1,"ts":1,"metric":"m","value":1,"unit":"u"}]}`,
        `{"v":1,"device":"${device}","epoch":1,"readings":[{"seq":1,"ts":1,"metric":"m","value":1,"unit":"u","extra":true}]}`,
        `[${'['.repeat(5000)}${']'.repeat(5000)}]`,
        'null',
        '"\\ud800"',
      ]);
    case 5:
      return `{"v":1,"device":"${device}","epoch":1,"readings":[${Array.from({ length: 50 }, (_, k) => `{"seq":${seq + k},"ts":${Date.now()},"metric":"fz","value":1e308,"unit":"u"}`).join(',')}]}`;
    default:
      return Buffer.from(good, 'utf8').reverse();
  }
}

/**
 * Whether the collector must refuse this payload from `device`, by the collector's own parser (a
 * telemetry batch, or an IoT Hub-style metric map; the sequencer that numbers the latter is on).
 */
function invalid(p: string | Buffer, device: string): boolean {
  try {
    parseDeviceMessage(
      device,
      Buffer.isBuffer(p) ? p : Buffer.from(p),
      () => propertyBag(topics.telemetry(device), topics.telemetryPrefix(device)),
      Date.now(),
    );
    return false;
  } catch {
    return true;
  }
}

export async function fuzzMqtt(o: MqttFuzzOptions): Promise<MqttFuzzFigures> {
  const r = rng(o.seed);
  const f: MqttFuzzFigures = {
    mqtt_malformed_packets: 0,
    mqtt_malformed_connections: 0,
    mqtt_payloads: 0,
    mqtt_payloads_invalid: 0,
    mqtt_payloads_acked: 0,
    mqtt_oversize: 0,
    mqtt_oversize_acked: 0,
    mqtt_truncated_frames: 0,
    mqtt_slowloris: 0,
  };

  // Slow loris: sockets that never finish a CONNECT stay open through everything below.
  const loris: Socket[] = [];
  const dribble = connectPacket('fz-loris');
  for (let i = 0; i < o.slowLoris; i++) {
    try {
      const s = await open(o.port);
      s.on('error', () => undefined);
      loris.push(s);
      f.mqtt_slowloris++;
      if (i % 2 === 0) {
        let k = 0;
        const t = setInterval(() => {
          if (s.destroyed || k >= dribble.length - 1) return clearInterval(t);
          s.write(dribble.subarray(k, k + 1));
          k++;
        }, 200);
        s.once('close', () => clearInterval(t));
      }
    } catch {
      break;
    }
  }

  // Random payloads on the device's own topic, QoS 1: each must be acknowledged, the bad ones refused.
  // 50 per connection, sent right behind the CONNECT: more than aedes' default queueLimit (42),
  // which dropped such a client before the collector raised it (docs/reliability.md, finding 6).
  const perConn = 50;
  for (let done = 0, c = 0; done < o.payloads; c++) {
    const device = `fz-p${c}`;
    const n = Math.min(perConn, o.payloads - done);
    const chunks = [connectPacket(device)];
    for (let k = 0; k < n; k++) {
      const p = payload(r, device, done + k + 1);
      if (invalid(p, device)) f.mqtt_payloads_invalid++;
      chunks.push(
        gen({ cmd: 'publish', topic: topics.telemetry(device), payload: p, qos: 1, messageId: k + 1, retain: false, dup: false }),
      );
    }
    f.mqtt_payloads += n;
    done += n;
    const acks = pubackCounter();
    await sendAndClose(o.port, chunks, 30_000, acks.onData, () => acks.count() >= n);
    f.mqtt_payloads_acked += acks.count();
  }

  await o.afterPayloads?.();

  // Mutated packet streams, a few connections at a time.
  const conns = Array.from({ length: o.malformedConnections }, (_, c) => c);
  for (let i = 0; i < conns.length; i += 8) {
    await Promise.all(
      conns.slice(i, i + 8).map((c) => {
        const device = `fz-m${c}`;
        const chunks: Buffer[] = [];
        if (r() < 0.5) chunks.push(connectPacket(device));
        for (let k = 0; k < o.packetsPerConnection; k++)
          chunks.push(r() < 0.8 ? mutate(r, validPacket(r, device, k)) : validPacket(r, device, k));
        f.mqtt_malformed_packets += chunks.length;
        f.mqtt_malformed_connections++;
        return sendAndClose(o.port, chunks, 300);
      }),
    );
  }

  // Truncated frames: a publish cut short, then the socket closed.
  for (let i = 0; i < Math.max(1, Math.floor(o.payloads / 10)); i++) {
    const device = `fz-t${i}`;
    const p = gen({
      cmd: 'publish',
      topic: topics.telemetry(device),
      payload: payload(r, device, 1),
      qos: 1,
      messageId: 1,
      retain: false,
      dup: false,
    });
    f.mqtt_truncated_frames++;
    await sendAndClose(o.port, [connectPacket(device), p.subarray(0, between(r, 1, p.length - 1))], 50);
  }

  // Oversize payloads: acknowledged (so the device stops resending), counted, not stored.
  for (let i = 0; i < o.oversize; i++) {
    const device = `fz-o${i}`;
    const size = o.maxPayloadBytes + between(r, 1, 32 * 1024);
    const acks = pubackCounter();
    const p = gen({
      cmd: 'publish',
      topic: topics.telemetry(device),
      payload: Buffer.alloc(size, 0x7b),
      qos: 1,
      messageId: 7,
      retain: false,
      dup: false,
    });
    f.mqtt_oversize++;
    await sendAndClose(o.port, [connectPacket(device), p], 30_000, acks.onData, () => acks.count() >= 1);
    f.mqtt_oversize_acked += acks.count();
  }

  for (const s of loris) s.destroy();
  return f;
}

/** Opens slow-loris sockets and resolves with how many the collector closed within `ms`. */
export async function lorisClosedWithin(port: number, n: number, ms: number): Promise<number> {
  const sockets = await Promise.all(Array.from({ length: n }, () => open(port)));
  let closed = 0;
  for (const s of sockets) {
    s.on('error', () => undefined);
    s.once('close', () => closed++);
  }
  await new Promise((r) => setTimeout(r, ms));
  for (const s of sockets) s.destroy();
  return closed;
}
