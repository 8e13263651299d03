/**
 * Fast path for device telemetry: once a device is connected, its QoS 0/1 PUBLISHes on its own
 * telemetry topic are framed here, straight from the bytes aedes reads, instead of going through
 * mqtt-packet's parser and aedes' per-packet handlers (a packet object, a handler series, one
 * generated PUBACK buffer and one setImmediate per message). Everything else — CONNECT, SUBSCRIBE,
 * PINGREQ, DISCONNECT, QoS 2, other topics, anything malformed or unusual — is handed to aedes'
 * own parser as whole packets, in the order received, so aedes' behaviour for them is unchanged.
 *
 * Why it is safe by construction:
 * - aedes reads a client's next chunk only when every packet of the current one is done
 *   (`_parsingBatch`); fast-path packets join that count, so flow control stays aedes'.
 * - Only topics that begin with the device's own telemetry prefix (compared as bytes) and whose
 *   property bag has no `/`, `#` or `+` are taken: the ACL holds without a check, and aedes'
 *   topic rules (wildcards, level count) cannot be bypassed. Anything else goes to aedes, which
 *   refuses and closes the connection as before.
 * - PUBACKs are written in the order the PUBLISHes arrived (MQTT-4.6.0-2), even when a refused
 *   payload is answered before the publishes ahead of it are on disk (ConnAcks); a connection's
 *   PUBACKs of one commit group go out in one write (AckWriter).
 * - Each fast packet refreshes the keepalive timer as aedes' handler would.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Duplex, type Writable } from 'node:stream';
import type { Aedes, Client } from 'aedes';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';

/**
 * The versions whose internals the fast path (and the broker's packet-size cap) were written and
 * tested against. package.json pins exactly these; checkFastPath refuses to start otherwise.
 */
export const FAST_PATH_PINS = { aedes: '1.2.0', 'mqtt-packet': '9.0.2' } as const;

/** aedes/mqtt-packet internals the fast path works with (aedes 1.x, mqtt-packet 9.x). */
interface Parser {
  parse(buf: Buffer): number;
  _stateCounter: number;
  _states: string[];
  _list: { length: number };
  packet: { length: number };
  error: Error | null;
  _emitError(err: Error): void;
  _parseLength(): boolean;
}

interface AedesClientInternals {
  conn: Writable & { destroyed?: boolean };
  connected: boolean;
  closed: boolean;
  version: number | null;
  _disconnected: boolean;
  _parser?: Parser;
  _parsingBatch: number;
  _nextBatch(err?: Error | null): void;
  _keepaliveInterval: number;
  _keepaliveTimer: NodeJS.Timeout | null;
}

export type FastDone = (err: Error | null) => void;

export interface FastPathHandler {
  /** The device's telemetry topic prefix (bytes), or undefined while the client may not use the fast path. */
  prefix(client: Client): Buffer | undefined;
  /**
   * A telemetry PUBLISH. `done(null)` acknowledges it (QoS 1), `done(err)` closes the connection
   * without acknowledging it. `topic` builds the topic string (only needed for a property bag).
   */
  publish(client: Client, payload: Buffer, topic: () => string, done: FastDone): void;
}

const PUBLISH = 3;
const SLASH = 0x2f;
const HASH = 0x23;
const PLUS = 0x2b;

interface Slot {
  id: number;
  ok: boolean;
}

/** One connection's QoS 1 publishes in arrival order, and the PUBACKs released so far. */
export class ConnAcks {
  private waiting: Slot[] = [];
  private head = 0;
  out: number[] = [];

  constructor(readonly client: AedesClientInternals) {}

  reserve(id: number): Slot {
    const s = { id, ok: false };
    this.waiting.push(s);
    return s;
  }

  /** Marks one done; returns whether PUBACKs became due (only in order: an early answer waits for those before it). */
  complete(s: Slot): boolean {
    s.ok = true;
    const w = this.waiting;
    let h = this.head;
    if (w[h] !== s) return false;
    while (h < w.length && w[h]!.ok) this.out.push(w[h++]!.id);
    if (h === w.length) {
      this.waiting = [];
      this.head = 0;
    } else this.head = h;
    return true;
  }
}

/**
 * Writes PUBACKs per connection: all the acknowledgements that became due for one connection in
 * one turn (a commit group's callbacks) go out as one buffer, on the next tick.
 */
export class AckWriter {
  /** PUBLISH packets the fast path took (shown as edgetwin_broker_fast_path_publishes_total). */
  fastPublishes = 0;
  private readonly due = new Map<Writable, ConnAcks>();
  private scheduled = false;
  private readonly flushAll = (): void => {
    this.scheduled = false;
    for (const a of this.due.values()) this.write(a);
    this.due.clear();
  };

  complete(a: ConnAcks, s: Slot): void {
    if (!a.complete(s)) return;
    this.due.set(a.client.conn, a);
    if (!this.scheduled) {
      this.scheduled = true;
      process.nextTick(this.flushAll);
    }
  }

  /** Writes what is due for `conn` now: a PUBACK aedes is about to write must not overtake them. */
  flush(conn: Writable): void {
    const a = this.due.get(conn);
    if (!a) return;
    this.due.delete(conn);
    this.write(a);
  }

  private write(a: ConnAcks): void {
    const ids = a.out;
    a.out = [];
    const c = a.client;
    if (ids.length === 0 || !c.connected || c.closed || c.conn.destroyed) return;
    const buf = Buffer.allocUnsafe(ids.length * 4);
    for (let i = 0, o = 0; i < ids.length; i++, o += 4) {
      const id = ids[i]!;
      buf[o] = 0x40;
      buf[o + 1] = 2;
      buf[o + 2] = id >> 8;
      buf[o + 3] = id & 0xff;
    }
    c.conn.write(buf);
  }
}

/**
 * Puts the fast path in front of aedes' parser for one client. Returns the client. `maxPacketBytes`
 * is the same cap capPacketSize applies to the packets aedes parses.
 */
export function attachFastPath(client: Client, handler: FastPathHandler, acks: AckWriter, maxPacketBytes: number): Client {
  const c = client as unknown as AedesClientInternals;
  const missing = missingInternals(c);
  // checkFastPath ran at start; this can only fail if something replaced aedes' client meanwhile.
  if (missing.length) throw fastPathError(missing);
  const parser = c._parser!;
  const aedesParse = parser.parse.bind(parser);
  let prefix: Buffer | undefined;
  /** Chunks of an incomplete packet, kept for the next chunk (the fast path never leaves one in aedes' parser). */
  let restChunks: Buffer[] = [];
  let restLen = 0;
  /** Size of that packet once its length header is in (0: not known yet). */
  let restNeed = 0;

  const order = new ConnAcks(c);
  const ack = (messageId: number): FastDone => {
    const slot = order.reserve(messageId);
    return (err) => {
      if (err) return c._nextBatch(err);
      acks.complete(order, slot);
      c._nextBatch(null);
    };
  };
  const ackQos0: FastDone = (err) => c._nextBatch(err);

  const alive = (): boolean => c.connected && !c.closed && !c._disconnected && !c.conn.destroyed && parser.error === null;

  /** Feeds aedes' parser the rest of a packet it had begun before the fast path took over; returns what is left. */
  const finishParserPacket = (buf: Buffer): Buffer => {
    while (buf.length > 0 && (parser._stateCounter !== 0 || parser._list.length > 0) && parser.error === null) {
      const take = parser._stateCounter === 2 ? Math.min(buf.length, Math.max(1, parser.packet.length - parser._list.length)) : 1;
      aedesParse(buf.subarray(0, take));
      buf = buf.subarray(take);
    }
    return buf;
  };

  parser.parse = (chunk: Buffer): number => {
    if (prefix === undefined) {
      if (!c.connected || (c.version !== 4 && c.version !== 3)) return aedesParse(chunk);
      prefix = handler.prefix(client);
      if (prefix === undefined) return aedesParse(chunk);
      chunk = finishParserPacket(chunk);
    }
    // A packet that is still incomplete waits whole: its chunks are joined once, when it is.
    if (restLen > 0) {
      restChunks.push(chunk);
      restLen += chunk.length;
      if (restNeed > 0 && restLen < restNeed) return restLen;
      chunk = Buffer.concat(restChunks, restLen);
      restChunks = [];
      restLen = 0;
      restNeed = 0;
    }
    // Held while this chunk is framed: a packet answered synchronously (a refused payload) must
    // not make aedes read and parse the next chunk from inside this loop.
    c._parsingBatch++;
    const fast = frame(chunk);
    acks.fastPublishes += fast;
    if (fast > 0 && c._keepaliveInterval > 0) c._keepaliveTimer?.refresh();
    if (alive()) c._nextBatch(null);
    else c._parsingBatch--;
    return restLen;
  };

  /** Hands every complete packet in `data` to the fast path or to aedes, in order; keeps an incomplete tail. */
  function frame(data: Buffer): number {
    const len = data.length;
    let off = 0;
    let fast = 0;
    while (off < len && alive()) {
      // Fixed header: type/flags byte, then the remaining length (1-4 bytes, 7 bits each).
      let i = off + 1;
      let remaining = 0;
      let mul = 1;
      let complete = false;
      while (i < len && i - off <= 4) {
        const b = data[i++]!;
        remaining += (b & 0x7f) * mul;
        mul *= 128;
        if ((b & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete) {
        // A fifth length byte is malformed: aedes' parser reports it and the client is closed.
        if (i - off > 4) {
          aedesParse(data.subarray(off));
          return fast;
        }
        break;
      }
      if (remaining > maxPacketBytes) {
        parser!._emitError(new EdgetwinError(ErrorCodes.PAYLOAD_TOO_LARGE, `packet of ${remaining} bytes exceeds ${maxPacketBytes}`));
        return fast;
      }
      const end = i + remaining;
      if (end > len) {
        restNeed = end - off;
        break;
      }
      if (takeFast(data, off, i, end)) fast++;
      else aedesParse(data.subarray(off, end));
      off = end;
    }
    if (off < len && alive()) {
      // Copied: a view would keep the whole chunk alive.
      const tail = Buffer.from(data.subarray(off));
      restChunks = [tail];
      restLen = tail.length;
    } else restNeed = 0;
    return fast;
  }

  /** Handles the packet at data[off, end) (body from `body`) if it is a device telemetry PUBLISH. */
  function takeFast(data: Buffer, off: number, body: number, end: number): boolean {
    const h = data[off]!;
    if (h >> 4 !== PUBLISH) return false;
    const qos = (h >> 1) & 3;
    if (qos > 1) return false;
    const p = prefix!;
    if (end - body < 2) return false;
    const topicLen = (data[body]! << 8) | data[body + 1]!;
    const topicStart = body + 2;
    const topicEnd = topicStart + topicLen;
    const idLen = qos === 1 ? 2 : 0;
    if (topicLen < p.length || topicEnd + idLen > end) return false;
    if (data.compare(p, 0, p.length, topicStart, topicStart + p.length) !== 0) return false;
    for (let k = topicStart + p.length; k < topicEnd; k++) {
      const b = data[k]!;
      if (b === SLASH || b === HASH || b === PLUS) return false;
    }
    const payload = data.subarray(topicEnd + idLen, end);
    const topic = (): string => data.toString('utf8', topicStart, topicEnd);
    c._parsingBatch++;
    handler.publish(client, payload, topic, qos === 1 ? ack((data[topicEnd]! << 8) | data[topicEnd + 1]!) : ackQos0);
    return true;
  }

  return client;
}

/** The internals attachFastPath and the broker's packet-size cap use that this client lacks (empty: all there). */
function missingInternals(c: Partial<AedesClientInternals>): string[] {
  const p = c._parser as Partial<Parser> | undefined;
  const checks: [string, boolean][] = [
    ['client._parser', typeof p === 'object' && p !== null],
    ['parser.parse()', typeof p?.parse === 'function'],
    ['parser._emitError()', typeof p?._emitError === 'function'],
    ['parser._parseLength()', typeof p?._parseLength === 'function'],
    ['parser._states[2] = _parsePayload', p?._states?.[2] === '_parsePayload'],
    ['parser._stateCounter', typeof p?._stateCounter === 'number'],
    ['parser._list', typeof p?._list?.length === 'number'],
    ['parser.packet', typeof p?.packet === 'object'],
    ['parser.error', p !== undefined && 'error' in p],
    ['client._parsingBatch', typeof c._parsingBatch === 'number'],
    ['client._nextBatch()', typeof c._nextBatch === 'function'],
    ['client._keepaliveInterval', typeof c._keepaliveInterval === 'number'],
    ['client._keepaliveTimer', '_keepaliveTimer' in c],
    ['client._disconnected', typeof c._disconnected === 'boolean'],
    ['client.connected', typeof c.connected === 'boolean'],
    ['client.closed', typeof c.closed === 'boolean'],
    ['client.version', 'version' in c],
    ['client.conn', typeof c.conn === 'object'],
  ];
  return checks.filter(([, ok]) => !ok).map(([what]) => what);
}

/** The installed version of a package (found from its entry point: aedes does not export its package.json). */
export function installedVersion(pkg: string): string {
  try {
    let dir = dirname(createRequire(import.meta.url).resolve(pkg));
    for (let i = 0; i < 5; i++, dir = dirname(dir)) {
      try {
        const p = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
        if (p.name === pkg && p.version) return p.version;
      } catch {
        // no package.json here; one folder up
      }
    }
  } catch {
    // not installed
  }
  return 'unknown';
}

function fastPathError(missing: string[]): EdgetwinError {
  const installed = { aedes: installedVersion('aedes'), 'mqtt-packet': installedVersion('mqtt-packet') };
  return new EdgetwinError(
    ErrorCodes.INTERNAL,
    `the MQTT telemetry fast path cannot engage: aedes ${installed.aedes} / mqtt-packet ${installed['mqtt-packet']} lack ${missing.join(', ')}. ` +
      `It is written for aedes ${FAST_PATH_PINS.aedes} and mqtt-packet ${FAST_PATH_PINS['mqtt-packet']} (pinned in package.json); ` +
      'reinstall those versions. The collector does not run without it rather than fall back silently.',
    { details: { installed, pinned: FAST_PATH_PINS, missing } },
  );
}

/**
 * Checks, at broker start, that aedes' clients still have every internal the fast path relies on:
 * a client is made on an in-memory stream, inspected, and closed. Throws (the collector refuses to
 * start) instead of letting the fast path fall back silently to the slow one.
 */
export function checkFastPath(aedes: Aedes): void {
  const probe = new Duplex({ read() {}, write: (_c, _e, cb) => cb() });
  const client = aedes.handle(probe) as unknown as Partial<AedesClientInternals>;
  const missing = missingInternals(client);
  probe.destroy();
  if (missing.length) throw fastPathError(missing);
}
