/**
 * Data-quality expectations on readings before they enter silver. A reading that fails one goes to
 * the quarantine table with its reason, never silently away: schema (the message failed the wire
 * schema), null (a required field missing or null), range (outside the metric's configured
 * [min, max]), timestamp (sample time outside the sane window around receipt), value (a value the
 * lakehouse cannot store, common/wire/storable.ts), limit (over a configured limit: metrics per
 * device, reported size or depth), refused (a payload the collector could not read or would not
 * store, kept as the device's bytes), lake (the lakehouse writer itself could not write it).
 */
import { Ajv } from 'ajv';
import { isPlainObject } from '../../common/config.js';
import { ErrorCodes } from '../../common/errors.js';
import { readingSchema, type QuarantineMessage, type Reading } from '../../common/wire/record.js';
import { parseTimestamp, toWellFormed } from '../../common/wire/storable.js';
import type { CloudQualityConfig, QualityRange } from '../config.js';

export type QuarantineReason = 'schema' | 'null' | 'range' | 'timestamp' | 'value' | 'limit' | 'refused' | 'lake';

/** One quarantined row; fields are null where the input did not carry a usable value. */
export interface QuarantineRow {
  device: string | null;
  epoch: number | null;
  seq: number | null;
  ts: number | null;
  metric: string | null;
  value: number | null;
  unit: string | null;
  reason: QuarantineReason;
  detail: string;
  /** The offending reading or message as JSON, cut to RAW_MAX characters (a `refused` message whole: it holds the device's bytes). */
  raw: string;
}

const RAW_MAX = 16 * 1024;
const REQUIRED = readingSchema.required;
const validateReading = new Ajv({ strict: true }).compile<Reading>(readingSchema);

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
// Quarantine rows hold what failed, so they must themselves be storable: no lone surrogates.
const str = (v: unknown): string | null => (typeof v === 'string' ? toWellFormed(v) : null);
const int = (v: unknown): number | null => (Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) : null);

/** JSON.stringify escapes lone surrogates (`\ud800` as six ASCII characters), so this text is always storable. */
function rawOf(v: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? 'null';
  } catch {
    s = '"(not serialisable)"';
  }
  return s.length > RAW_MAX ? s.slice(0, RAW_MAX) : s;
}

/** The quarantine reason for a message refused with `code`. */
function reasonOf(code: string | undefined): QuarantineReason {
  return code === ErrorCodes.BAD_VALUE ? 'value' : code === ErrorCodes.LIMIT_EXCEEDED ? 'limit' : 'schema';
}

export class QualityRules {
  private readonly ranges: Map<string, QualityRange>;
  private readonly notBefore: number;

  constructor(private readonly cfg: CloudQualityConfig) {
    this.ranges = new Map(Object.entries(cfg.ranges));
    this.notBefore = parseTimestamp(cfg.notBefore);
  }

  /** Why a schema-valid reading fails an expectation, or undefined when it passes. */
  check(r: Reading, received: number): { reason: QuarantineReason; detail: string } | undefined {
    const floor = this.cfg.maxPastMs > 0 ? Math.max(this.notBefore, received - this.cfg.maxPastMs) : this.notBefore;
    if (r.ts < floor || r.ts > received + this.cfg.maxFutureMs) {
      return {
        reason: 'timestamp',
        detail: `ts ${r.ts} outside the sane window [${new Date(floor).toISOString()}, receipt + ${this.cfg.maxFutureMs} ms]`,
      };
    }
    if (r.unit.trim() === '') return { reason: 'null', detail: 'unit is empty' };
    if (this.ranges.size > 0) {
      const range = this.ranges.get(r.metric);
      if (range && ((range.min !== undefined && r.value < range.min) || (range.max !== undefined && r.value > range.max))) {
        return { reason: 'range', detail: `value ${r.value} outside [${range.min ?? '-inf'}, ${range.max ?? 'inf'}] for ${r.metric}` };
      }
    }
    return undefined;
  }

  /** A quarantine row for a schema-valid reading that failed check(). */
  row(device: string, epoch: number, r: Reading, reason: QuarantineReason, detail: string): QuarantineRow {
    return { device, epoch, seq: r.seq, ts: r.ts, metric: r.metric, value: r.value, unit: r.unit, reason, detail, raw: rawOf(r) };
  }

  /** The row of a payload the collector refused: the whole message (with the device's bytes), uncut. */
  refused(q: QuarantineMessage): QuarantineRow {
    const detail = `${q.code}: ${q.reason}${q.truncated ? ` (payload truncated, ${q.bytes} bytes received)` : ''}`;
    const raw = JSON.stringify(q);
    return { device: q.device, epoch: null, seq: null, ts: q.ts, metric: null, value: null, unit: null, reason: 'refused', detail, raw };
  }

  /**
   * The rows of a message that failed the wire schema: one per reading where the message still has
   * a readings array (each with its own reason), else one for the whole message. `code` is the
   * refusal's (a BAD_VALUE message is quarantined as `value`, LIMIT_EXCEEDED as `limit`).
   */
  salvage(msg: unknown, error: string, code?: string): QuarantineRow[] {
    const m = isPlainObject(msg) ? msg : {};
    const device = str(m['device']);
    const epoch = int(m['epoch']);
    const readings = m['readings'];
    const why = reasonOf(code);
    error = toWellFormed(error);
    if (!Array.isArray(readings) || readings.length === 0) {
      return [{ device, epoch, seq: null, ts: null, metric: null, value: null, unit: null, reason: why, detail: error, raw: rawOf(msg) }];
    }
    return readings.map((r: unknown) => {
      const o = isPlainObject(r) ? r : {};
      const missing = REQUIRED.find((k) => o[k] === undefined || o[k] === null);
      if (missing) return looseRow(device, epoch, r, 'null', `required field ${missing} is missing or null`);
      if (!validateReading(r)) {
        const e = validateReading.errors?.[0];
        return looseRow(device, epoch, r, why, `reading ${e?.instancePath || '/'} ${e?.message ?? 'invalid'}`);
      }
      return looseRow(device, epoch, r, why, error);
    });
  }
}

/**
 * A quarantine row for a reading of unknown shape, every field taken only when usable and strings
 * made storable; the reading itself goes in `raw`. Also used by the lakehouse writer for rows it
 * could not write (reason `lake`).
 */
export function looseRow(device: string | null, epoch: number | null, r: unknown, reason: QuarantineReason, detail: string): QuarantineRow {
  const o = isPlainObject(r) ? r : {};
  return {
    device: device === null ? null : toWellFormed(device),
    epoch,
    seq: int(o['seq']),
    ts: int(o['ts']),
    metric: str(o['metric']),
    value: num(o['value']),
    unit: str(o['unit']),
    reason,
    detail: toWellFormed(detail),
    raw: rawOf(r),
  };
}

/** Share of a batch's new rows that passed into silver; null when the batch brought nothing new. */
export function qualityScore(passed: number, failed: number): number | null {
  const total = passed + failed;
  return total === 0 ? null : Math.round((passed / total) * 10_000) / 10_000;
}
