/**
 * What the lakehouse can store: the one definition every boundary applies — the agent before it
 * commits a reading (whatever its source), the collector on its MQTT path, the cloud's ingest over
 * HTTP and Event Hubs — so that a value Parquet and DuckDB cannot hold is refused where it enters,
 * with EDGETWIN_ERR_BAD_VALUE, instead of failing a lakehouse micro-batch for every site later:
 * - strings are well-formed Unicode: a lone UTF-16 surrogate (`"\ud800"` in JSON) makes DuckDB's
 *   JSON reader refuse the whole document it sits in;
 * - integers (seq, epoch, ts) are safe integers >= 0: exact in JavaScript and inside Parquet's INT64
 *   (DuckDB turned a larger one into NULL without a word: a reading without identity);
 * - floats are finite (JSON has no NaN; `1e400` parses as Infinity);
 * - sample times lie inside a configured window, [notBefore, now + maxFutureMs];
 * - free-form JSON (reported patches) is at most `maxDepth` deep, walked without recursion so a
 *   hostile nesting cannot overflow the stack.
 * Timestamps written as text go through parseTimestamp(): ISO 8601, and without an offset they are
 * UTC — everywhere alike (never the host's local time zone).
 */
import Type, { type Static } from 'typebox';
import { Section } from '../config.js';
import { EdgetwinError, ErrorCodes } from '../errors.js';
import type { Sample } from './sample.js';

/** The sample-time window, as configured (`timestamps` in the agent's and the collector's config). */
export const timestampWindowSchema = Section({
  /** Sample times before this instant (ISO 8601) are refused: a device clock that was never set. */
  notBefore: Type.String({ minLength: 10, default: '2000-01-01T00:00:00Z' }),
  /** … and those further than this ahead of the receiver's clock. */
  maxFutureMs: Type.Integer({ minimum: 0, default: 24 * 3600_000 }),
});
export type TimestampWindowConfig = Static<typeof timestampWindowSchema>;

/** A window ready to check against: both ends in ms since the epoch, the upper one relative to `now`. */
export interface TimestampWindow {
  notBeforeMs: number;
  maxFutureMs: number;
}

export function timestampWindow(cfg: TimestampWindowConfig): TimestampWindow {
  const notBeforeMs = parseTimestamp(cfg.notBefore);
  if (!Number.isFinite(notBeforeMs)) throw new EdgetwinError(ErrorCodes.CONFIG, `notBefore "${cfg.notBefore}" is not an ISO 8601 instant`);
  return { notBeforeMs, maxFutureMs: cfg.maxFutureMs };
}

/** Why `ts` is outside the window, or undefined. */
export function timestampProblem(ts: number, w: TimestampWindow, now: number): string | undefined {
  if (ts < w.notBeforeMs) return `ts ${ts} is before ${new Date(w.notBeforeMs).toISOString()} (limits.timestamps.notBefore)`;
  if (ts > now + w.maxFutureMs)
    return `ts ${ts} is more than ${w.maxFutureMs} ms ahead of the receiver's clock (limits.timestamps.maxFutureMs)`;
  return undefined;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** True when `s` has no lone surrogate (String.prototype.isWellFormed, which ES2023 typings lack). */
export function isWellFormed(s: string): boolean {
  return !LONE_SURROGATE.test(s);
}

/** `s` with every lone surrogate replaced by U+FFFD: for error texts that quote what was refused. */
export function toWellFormed(s: string): string {
  return isWellFormed(s) ? s : s.replace(new RegExp(LONE_SURROGATE.source, 'g'), '\uFFFD');
}

const safeUint = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;

/**
 * The reading fields the lake keeps, as any boundary sees them: the sample, seq absent before the
 * agent gives it, and of an explanation only the numbers checked here.
 */
export type StorableReading = Sample & {
  seq?: number;
  explain?: { surprise: number; baseline: number; groups: ReadonlyArray<{ contribution: number }> };
};

/**
 * Why the lake could not store this reading, as `field: problem`, or undefined. With a window, the
 * sample time must also lie inside it (as seen at `now`).
 */
export function unstorableReading(r: StorableReading, window?: TimestampWindow, now = Date.now()): string | undefined {
  if (r.seq !== undefined && !safeUint(r.seq)) return `seq: ${String(r.seq)} is not an integer in [0, 2^53)`;
  if (!safeUint(r.ts)) return `ts: ${String(r.ts)} is not an integer in [0, 2^53)`;
  if (typeof r.value !== 'number' || !Number.isFinite(r.value)) return `value: ${String(r.value)} is not a finite number`;
  if (r.score !== undefined && !Number.isFinite(r.score)) return `score: ${String(r.score)} is not a finite number`;
  const e = r.explain;
  if (e && !(Number.isFinite(e.surprise) && Number.isFinite(e.baseline) && e.groups.every((g) => Number.isFinite(g.contribution))))
    return 'explain: surprise, baseline and contributions must be finite numbers';
  if (!isWellFormed(r.metric)) return 'metric: not well-formed Unicode (lone surrogate)';
  if (!isWellFormed(r.unit)) return 'unit: not well-formed Unicode (lone surrogate)';
  if (r.model !== undefined && !isWellFormed(r.model)) return 'model: not well-formed Unicode (lone surrogate)';
  if (window) {
    const t = timestampProblem(r.ts, window, now);
    if (t) return `ts: ${t}`;
  }
  return undefined;
}

/** A telemetry batch's first unstorable field, with its JSON path; undefined when the lake can keep all of it. */
export function unstorableBatch(
  b: { device: string; epoch: number; readings: readonly StorableReading[] },
  window?: TimestampWindow,
  now = Date.now(),
): { path: string; message: string } | undefined {
  if (!isWellFormed(b.device)) return { path: '/device', message: 'device: not well-formed Unicode' };
  if (!safeUint(b.epoch)) return { path: '/epoch', message: `epoch: ${String(b.epoch)} is not an integer in [0, 2^53)` };
  for (let i = 0; i < b.readings.length; i++) {
    const p = unstorableReading(b.readings[i]!, window, now);
    if (p) return { path: `/readings/${i}/${p.slice(0, p.indexOf(':'))}`, message: `readings[${i}].${p}` };
  }
  return undefined;
}

/** EDGETWIN_ERR_BAD_VALUE for a problem found above. */
export function badValue(message: string, path?: string): EdgetwinError {
  return new EdgetwinError(ErrorCodes.BAD_VALUE, `value the lakehouse cannot store: ${message}`, path ? { details: { path } } : {});
}

/**
 * Why a free-form JSON value (a reported patch) cannot be kept: deeper than `maxDepth`, a string or
 * key that is not well-formed Unicode, or a number that is not finite. Iterative: a value nested
 * thousands deep is answered, never a stack overflow.
 */
export function jsonProblem(root: unknown, maxDepth: number): { code: 'depth' | 'value'; message: string } | undefined {
  const stack: [unknown, number][] = [[root, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v === 'string') {
      if (!isWellFormed(v)) return { code: 'value', message: 'a string is not well-formed Unicode (lone surrogate)' };
    } else if (typeof v === 'number') {
      if (!Number.isFinite(v)) return { code: 'value', message: `${v} is not a finite number` };
    } else if (v !== null && typeof v === 'object') {
      if (depth + 1 > maxDepth) return { code: 'depth', message: `nested deeper than ${maxDepth} levels` };
      if (Array.isArray(v)) for (const x of v) stack.push([x, depth + 1]);
      else
        for (const [k, x] of Object.entries(v)) {
          if (!isWellFormed(k)) return { code: 'value', message: 'a property name is not well-formed Unicode (lone surrogate)' };
          stack.push([x, depth + 1]);
        }
    }
  }
  return undefined;
}

const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$/;

/**
 * An ISO 8601 / RFC 3339 instant as ms since the epoch, NaN when `s` is not one. `T` or a space
 * between date and time; without an offset the time is UTC (NAB's `2014-02-14 14:27:00`, a device
 * that sends local time without saying so is off by its zone — on every path alike, never by the
 * host's). Out-of-range fields (month 13, 25:00) are refused rather than rolled over.
 */
export function parseTimestamp(s: string): number {
  const m = ISO.exec(s.trim());
  if (!m) return NaN;
  const [, y, mo, d, h = '0', mi = '0', sec = '0', frac = '', off] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(h);
  const minute = Number(mi);
  const second = Number(sec);
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return NaN;
  let t = Date.UTC(year, month - 1, day, hour, minute, second, Number(frac.padEnd(3, '0').slice(0, 3)));
  if (new Date(t).getUTCDate() !== day) return NaN;
  if (off && off !== 'Z' && off !== 'z') {
    const sign = off[0] === '-' ? -1 : 1;
    const digits = off.slice(1).replace(':', '');
    const oh = Number(digits.slice(0, 2));
    const om = Number(digits.slice(2) || '0');
    if (oh > 23 || om > 59) return NaN;
    t -= sign * (oh * 60 + om) * 60_000;
  }
  return t;
}
