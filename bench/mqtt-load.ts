/**
 * MQTT QoS 1 load generator for bench/collector.ts, run as a child process (several at once). It
 * writes pre-encoded PUBLISH packets straight to sockets and counts PUBACKs, keeping a fixed
 * window in flight per connection: cheap enough per message to saturate a broker, which an
 * MQTT client library would not be. Protocol: MQTT 3.1.1, clean session, no auth (the collector
 * runs with auth.mode open on loopback for the benchmark).
 *
 *   fork(mqtt-load.js, [host, port, connections, window, readingsPerMessage, clientPrefix])
 *   parent → {type:'start', ms}   child → {type:'ready'} then {type:'done', acked, ms}
 */
import { connect, type Socket } from 'node:net';

const [host = '127.0.0.1', portS = '1883', connsS = '8', windowS = '64', readingsS = '1', prefix = 'bench'] = process.argv.slice(2);
const port = Number(portS);
const conns = Number(connsS);
const window = Number(windowS);
const readings = Number(readingsS);

function str(s: string): Buffer {
  const b = Buffer.from(s);
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
}

function varint(n: number): Buffer {
  const out: number[] = [];
  do {
    let d = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) d |= 0x80;
    out.push(d);
  } while (n > 0);
  return Buffer.from(out);
}

function connectPacket(clientId: string): Buffer {
  const body = Buffer.concat([str('MQTT'), Buffer.from([4, 0x02, 0, 60]), str(clientId)]);
  return Buffer.concat([Buffer.from([0x10]), varint(body.length), body]);
}

/** One telemetry batch of the wire contract, so the collector validates and spools real data. */
function payload(device: string): Buffer {
  const rs = Array.from(
    { length: readings },
    (_, i) => `{"seq":${i + 1},"ts":${1_763_913_600_000 + i},"metric":"m${i % 8}","value":${(i * 0.37).toFixed(2)},"unit":"degC"}`,
  );
  return Buffer.from(`{"v":1,"device":"${device}","epoch":1,"readings":[${rs.join(',')}]}`);
}

interface Conn {
  sock: Socket;
  template: Buffer;
  idOffset: number;
  nextId: number;
  inflight: number;
  pending: Buffer;
}

let running = false;
let counting = false;
let acked = 0;

function fill(c: Conn): void {
  const n = window - c.inflight;
  if (n <= 0 || !running) return;
  const out = Buffer.allocUnsafe(n * c.template.length);
  for (let i = 0; i < n; i++) {
    const at = i * c.template.length;
    c.template.copy(out, at);
    c.nextId = c.nextId >= 65535 ? 1 : c.nextId + 1;
    out[at + c.idOffset] = c.nextId >> 8;
    out[at + c.idOffset + 1] = c.nextId & 0xff;
  }
  c.inflight += n;
  c.sock.write(out);
}

/** Counts PUBACKs (and skips anything else) in the byte stream, across chunk boundaries. */
function onData(c: Conn, chunk: Buffer): void {
  const buf = c.pending.length ? Buffer.concat([c.pending, chunk]) : chunk;
  let off = 0;
  let acks = 0;
  while (off + 2 <= buf.length) {
    let len = 0;
    let mul = 1;
    let i = off + 1;
    let complete = false;
    while (i < buf.length) {
      const b = buf[i++]!;
      len += (b & 0x7f) * mul;
      mul *= 128;
      if ((b & 0x80) === 0) {
        complete = true;
        break;
      }
    }
    if (!complete || i + len > buf.length) break;
    if (buf[off]! >> 4 === 4) acks++;
    off = i + len;
  }
  c.pending = off < buf.length ? Buffer.from(buf.subarray(off)) : Buffer.alloc(0);
  if (acks > 0) {
    c.inflight -= acks;
    if (counting) acked += acks;
    fill(c);
  }
}

async function open(i: number): Promise<Conn> {
  const device = `${prefix}-${i}`;
  const topic = str(`devices/${device}/messages/events/`);
  const body = payload(device);
  const remaining = topic.length + 2 + body.length;
  const head = Buffer.concat([Buffer.from([0x32]), varint(remaining)]);
  const template = Buffer.concat([head, topic, Buffer.from([0, 0]), body]);
  const sock = connect(port, host);
  sock.setNoDelay(true);
  const c: Conn = { sock, template, idOffset: head.length + topic.length, nextId: 0, inflight: 0, pending: Buffer.alloc(0) };
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.once('connect', () => sock.write(connectPacket(device)));
    sock.once('data', (d: Buffer) => {
      if (d[0] !== 0x20 || d[3] !== 0) return reject(new Error(`CONNACK refused: ${d.toString('hex')}`));
      if (d.length > 4) onData(c, d.subarray(4));
      sock.on('data', (x: Buffer) => onData(c, x));
      resolve();
    });
  });
  sock.on('error', () => undefined);
  return c;
}

const all = await Promise.all(Array.from({ length: conns }, (_, i) => open(i)));
process.send?.({ type: 'ready' });
process.on('message', (m: { type: string; warmupMs: number; ms: number }) => {
  if (m.type !== 'start') return;
  running = true;
  for (const c of all) fill(c);
  setTimeout(() => {
    counting = true;
    const t0 = process.hrtime.bigint();
    setTimeout(() => {
      counting = false;
      running = false;
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      process.send?.({ type: 'done', acked, ms }, () => {
        for (const c of all) c.sock.destroy();
        process.exit(0);
      });
    }, m.ms);
  }, m.warmupMs);
});
