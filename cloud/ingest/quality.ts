/**
 * Data-quality expectations on readings before they enter silver. A reading that fails one goes to
 * the quarantine table with its reason, never silently away: schema (the message failed the wire
 * schema), null (a required field missing or null), range (outside the metric's configured
 * [min, max]), timestamp (sample time outside the sane window around receipt).
 */
import { Ajv } from 'ajv';
import { isPlainObject } from '../../common/config.js';
import { readingSchema, type Reading } from '../../common/record.js';
import type { CloudQualityConfig, QualityRange } from '../config.js';

export type QuarantineReason = 'schema' | 'null' | 'range' | 'timestamp';

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
  /** The offending reading or message as JSON, cut to RAW_MAX characters. */
  raw: string;
}

const RAW_MAX = 16 * 1024;
const REQUIRED = readingSchema.required;
const validateReading = new Ajv({ strict: true }).compile<Reading>(readingSchema);

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const int = (v: unknown): number | null => (Number.isSafeInteger(v) ? (v as number) : null);

function rawOf(v: unknown): string {
  const s = JSON.stringify(v) ?? 'null';
  return s.length > RAW_MAX ? s.slice(0, RAW_MAX) : s;
}

export class QualityRules {
  private readonly ranges: Map<string, QualityRange>;
  private readonly notBefore: number;

  constructor(private readonly cfg: CloudQualityConfig) {
    this.ranges = new Map(Object.entries(cfg.ranges));
    this.notBefore = Date.parse(cfg.notBefore);
  }

  /** Why a schema-valid reading fails an expectation, or undefined when it passes. */
  check(r: Reading, received: number): { reason: QuarantineReason; detail: string } | undefined {
    const floor = this.cfg.maxPastMs > 0 ? Math.max(this.notBefore, received - this.cfg.maxPastMs) : this.notBefore;
    if (r.ts < floor || r.ts > received + this.cfg.maxFutureMs) {
      return { reason: 'timestamp', detail: `ts ${r.ts} outside the sane window [${new Date(floor).toISOString()}, receipt + ${this.cfg.maxFutureMs} ms]` };
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

  /**
   * The rows of a message that failed the wire schema: one per reading where the message still has
   * a readings array (each with its own reason), else one for the whole message.
   */
  salvage(msg: unknown, error: string): QuarantineRow[] {
    const m = isPlainObject(msg) ? msg : {};
    const device = str(m['device']);
    const epoch = int(m['epoch']);
    const readings = m['readings'];
    if (!Array.isArray(readings) || readings.length === 0) {
      return [{ device, epoch, seq: null, ts: null, metric: null, value: null, unit: null, reason: 'schema', detail: error, raw: rawOf(msg) }];
    }
    return readings.map((r: unknown) => {
      const o = isPlainObject(r) ? r : {};
      const missing = REQUIRED.find((k) => o[k] === undefined || o[k] === null);
      let reason: QuarantineReason = 'schema';
      let detail = error;
      if (missing) {
        reason = 'null';
        detail = `required field ${missing} is missing or null`;
      } else if (!validateReading(r)) {
        const e = validateReading.errors?.[0];
        detail = `reading ${e?.instancePath || '/'} ${e?.message ?? 'invalid'}`;
      }
      return { device, epoch, seq: int(o['seq']), ts: int(o['ts']), metric: str(o['metric']), value: num(o['value']), unit: str(o['unit']), reason, detail, raw: rawOf(r) };
    });
  }
}

/** Share of a batch's new rows that passed into silver; null when the batch brought nothing new. */
export function qualityScore(passed: number, failed: number): number | null {
  const total = passed + failed;
  return total === 0 ? null : Math.round((passed / total) * 10_000) / 10_000;
}
