/**
 * A single-pass check of the common telemetry batch shape, straight from the payload bytes: what
 * an agent sends (`{"v":1,"device":…,"epoch":…,"readings":[{…},…]}`, ASCII, plain numbers). It
 * answers only "valid, n readings" or "not sure"; "not sure" sends the payload to the full path
 * (JSON.parse plus the wire schema, common/wire/record.ts), which decides and words the error. So it
 * only ever accepts a strict subset of what that path accepts:
 * - strings of printable ASCII without escapes; numbers without exponents, integers of at most
 *   15 digits (always finite and exact), no leading zeros (JSON forbids them);
 * - each key at most once, no keys but the schema's, every required key present;
 * - the device equal to the connection's device;
 * - every `ts` inside the collector's sample-time window (common/wire/storable.ts). What this
 *   accepts is therefore storable by construction: printable ASCII is well-formed Unicode, 15-digit
 *   integers are safe, and numbers without exponent are finite.
 * Per message this avoids building the object tree JSON.parse makes and the schema walks.
 */
import { DEVICE_ID_PATTERN, WIRE_VERSION } from '../../common/wire/record.js';

const deviceIdRe = new RegExp(DEVICE_ID_PATTERN);
const MAX_READINGS = 100_000;
const MAX_UNIT = 32;
const MAX_MODEL = 64;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const MINUS = 0x2d;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;

/** Reading keys, as bits: seen-once and required checks are one mask each. */
const R_SEQ = 1;
const R_TS = 2;
const R_METRIC = 4;
const R_VALUE = 8;
const R_UNIT = 16;
const R_SCORE = 32;
const R_MODEL = 64;
const R_ALERT = 128;
const R_REQUIRED = R_SEQ | R_TS | R_METRIC | R_VALUE | R_UNIT;
const B_V = 1;
const B_DEVICE = 2;
const B_EPOCH = 4;
const B_READINGS = 8;
const B_REQUIRED = B_V | B_DEVICE | B_EPOCH | B_READINGS;

/** Keys by length, as bytes, with their bit: matched in place, no string is made per key. */
type KeyTable = [Buffer, number][][];
function keyTable(keys: [string, number][]): KeyTable {
  const t: KeyTable = [];
  for (const [k, bit] of keys) (t[k.length] ??= []).push([Buffer.from(k), bit]);
  return t;
}
const READING_KEYS = keyTable([
  ['seq', R_SEQ],
  ['ts', R_TS],
  ['metric', R_METRIC],
  ['value', R_VALUE],
  ['unit', R_UNIT],
  ['score', R_SCORE],
  ['model', R_MODEL],
  ['alert', R_ALERT],
]);
const BATCH_KEYS = keyTable([
  ['v', B_V],
  ['device', B_DEVICE],
  ['epoch', B_EPOCH],
  ['readings', B_READINGS],
]);

/** METRIC_PATTERN, byte by byte: `[A-Za-z_][A-Za-z0-9_.:-]{0,127}`. */
function metricByte(c: number, first: boolean): boolean {
  const l = c | 0x20;
  if ((l >= 0x61 && l <= 0x7a) || c === 0x5f) return true;
  if (first) return false;
  return (c >= ZERO && c <= NINE) || c === DOT || c === COLON || c === MINUS;
}

class Unsure extends Error {}
const UNSURE = new Unsure();

class Scanner {
  pos = 0;
  constructor(
    readonly b: Buffer,
    /** Sample times outside [tsLo, tsHi] are "not sure": the full path refuses them with a code. */
    readonly tsLo: number,
    readonly tsHi: number,
  ) {}

  ws(): void {
    const b = this.b;
    let p = this.pos;
    while (p < b.length) {
      const c = b[p]!;
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      p++;
    }
    this.pos = p;
  }

  /** Skips whitespace, then expects byte `c`. */
  expect(c: number): void {
    this.ws();
    if (this.b[this.pos] !== c) throw UNSURE;
    this.pos++;
  }

  /** Skips whitespace; consumes `c` if it comes next. */
  maybe(c: number): boolean {
    this.ws();
    if (this.b[this.pos] !== c) return false;
    this.pos++;
    return true;
  }

  /** A string of printable ASCII, no escapes, at most maxLen long; returns where it starts (it ends at pos - 1). */
  str(maxLen: number): number {
    this.expect(QUOTE);
    const b = this.b;
    const start = this.pos;
    let p = start;
    for (;;) {
      if (p >= b.length) throw UNSURE;
      const c = b[p]!;
      if (c === QUOTE) break;
      if (c < 0x20 || c > 0x7e || c === BACKSLASH) throw UNSURE;
      p++;
    }
    if (p - start > maxLen) throw UNSURE;
    this.pos = p + 1;
    return start;
  }

  /** A key of `table`, then the colon; returns its bit. */
  key(table: KeyTable): number {
    const start = this.str(8);
    const len = this.pos - 1 - start;
    const cands = table[len];
    if (cands === undefined) throw UNSURE;
    const b = this.b;
    let bit = 0;
    for (const [k, kb] of cands) {
      let i = 0;
      while (i < len && b[start + i] === k[i]) i++;
      if (i === len) {
        bit = kb;
        break;
      }
    }
    if (bit === 0) throw UNSURE;
    this.expect(COLON);
    return bit;
  }

  metric(): void {
    const start = this.str(128);
    const end = this.pos - 1;
    if (end === start) throw UNSURE;
    const b = this.b;
    for (let p = start; p < end; p++) if (!metricByte(b[p]!, p === start)) throw UNSURE;
  }

  /** A string equal to `want` (ASCII). */
  equals(want: string): boolean {
    const start = this.str(128);
    const len = this.pos - 1 - start;
    if (len !== want.length) return false;
    const b = this.b;
    for (let i = 0; i < len; i++) if (b[start + i] !== want.charCodeAt(i)) return false;
    return true;
  }

  /** A non-negative integer: 1-15 digits, no sign, fraction, exponent or leading zero. */
  uint(): number {
    this.ws();
    const b = this.b;
    const start = this.pos;
    let p = start;
    let n = 0;
    while (p < b.length && b[p]! >= ZERO && b[p]! <= NINE) n = n * 10 + (b[p++]! - ZERO);
    const digits = p - start;
    if (digits === 0 || digits > 15 || (digits > 1 && b[start] === ZERO)) throw UNSURE;
    if (p < b.length && (b[p] === DOT || (b[p]! | 0x20) === 0x65)) throw UNSURE;
    this.pos = p;
    return n;
  }

  /** A JSON number without exponent, at most 15 integer digits (finite); returns it when `want`, else 0. */
  num(want: boolean): number {
    this.ws();
    const b = this.b;
    const start = this.pos;
    let p = start;
    if (b[p] === MINUS) p++;
    const intStart = p;
    while (p < b.length && b[p]! >= ZERO && b[p]! <= NINE) p++;
    const digits = p - intStart;
    if (digits === 0 || digits > 15 || (digits > 1 && b[intStart] === ZERO)) throw UNSURE;
    if (b[p] === DOT) {
      p++;
      const fracStart = p;
      while (p < b.length && b[p]! >= ZERO && b[p]! <= NINE) p++;
      if (p === fracStart || p - fracStart > 30) throw UNSURE;
    }
    if (p < b.length && (b[p]! | 0x20) === 0x65) throw UNSURE;
    this.pos = p;
    return want ? Number(b.toString('latin1', start, p)) : 0;
  }

  /** `true` or `false`. */
  bool(): void {
    this.ws();
    const b = this.b;
    const p = this.pos;
    if (b[p] === 0x74 && b[p + 1] === 0x72 && b[p + 2] === 0x75 && b[p + 3] === 0x65) this.pos = p + 4;
    else if (b[p] === 0x66 && b[p + 1] === 0x61 && b[p + 2] === 0x6c && b[p + 3] === 0x73 && b[p + 4] === 0x65) this.pos = p + 5;
    else throw UNSURE;
  }

  reading(): void {
    this.expect(LBRACE);
    let seen = 0;
    do {
      const bit = this.key(READING_KEYS);
      if (seen & bit) throw UNSURE;
      seen |= bit;
      switch (bit) {
        case R_SEQ:
          this.uint();
          break;
        case R_TS: {
          const ts = this.uint();
          if (ts < this.tsLo || ts > this.tsHi) throw UNSURE;
          break;
        }
        case R_METRIC:
          this.metric();
          break;
        case R_VALUE:
          this.num(false);
          break;
        case R_UNIT:
          this.str(MAX_UNIT);
          break;
        case R_SCORE: {
          const s = this.num(true);
          if (!(s >= 0 && s <= 1)) throw UNSURE;
          break;
        }
        case R_MODEL:
          this.str(MAX_MODEL);
          break;
        default:
          this.bool();
      }
    } while (this.maybe(COMMA));
    this.expect(RBRACE);
    if ((seen & R_REQUIRED) !== R_REQUIRED) throw UNSURE;
  }
}

/**
 * Returns the number of readings when `payload` is certainly a valid telemetry batch of `device`
 * whose sample times lie in [tsLo, tsHi], 0 when not sure (the caller then runs the full check).
 */
export function scanBatch(payload: Buffer, device: string, tsLo = 0, tsHi = Number.MAX_SAFE_INTEGER): number {
  const s = new Scanner(payload, tsLo, tsHi);
  try {
    s.expect(LBRACE);
    let seen = 0;
    let readings = 0;
    do {
      const bit = s.key(BATCH_KEYS);
      if (seen & bit) return 0;
      seen |= bit;
      if (bit === B_V) {
        if (s.uint() !== WIRE_VERSION) return 0;
      } else if (bit === B_DEVICE) {
        if (!s.equals(device) || !deviceIdRe.test(device)) return 0;
      } else if (bit === B_EPOCH) {
        s.uint();
      } else {
        s.expect(LBRACKET);
        do {
          s.reading();
          if (++readings > MAX_READINGS) return 0;
        } while (s.maybe(COMMA));
        s.expect(RBRACKET);
      }
    } while (s.maybe(COMMA));
    s.expect(RBRACE);
    s.ws();
    if (s.pos !== payload.length || (seen & B_REQUIRED) !== B_REQUIRED) return 0;
    return readings;
  } catch (err) {
    if (err === UNSURE) return 0;
    throw err;
  }
}
