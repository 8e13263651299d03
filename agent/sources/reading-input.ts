/**
 * Readings handed to the agent by other programs (JSON lines on stdin, HTTP POST /v1/readings):
 * one reading, an array of readings, or `{"readings": [...]}`. Checked against one schema; a bad
 * one is refused with EDGETWIN_ERR_BAD_READING and a message that says where.
 */
import { Ajv } from 'ajv';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import { METRIC_PATTERN } from '../../common/wire/record.js';
import { parseTimestamp, unstorableReading, type TimestampWindow } from '../../common/wire/storable.js';
import type { SourceReading } from '../types.js';

/** Most readings one line or request may carry (the wire batch limit). */
export const MAX_READINGS_PER_INPUT = 100_000;

export const inputReadingSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['metric', 'value', 'unit'],
  properties: {
    /** ms since the Unix epoch, or an ISO 8601 string (UTC when it has no offset); the agent's clock when absent. */
    ts: {
      anyOf: [
        { type: 'integer', minimum: 0 },
        { type: 'string', minLength: 1, maxLength: 64 },
      ],
    },
    metric: { type: 'string', pattern: METRIC_PATTERN },
    value: { type: 'number' },
    unit: { type: 'string', maxLength: 32 },
    /** Sends the reading in the priority lane. */
    alert: { type: 'boolean' },
  },
} as const;

interface InputReading {
  ts?: number | string;
  metric: string;
  value: number;
  unit: string;
  alert?: boolean;
}

const ajv = new Ajv({ allErrors: false, strict: true });
const validate = ajv.compile<InputReading>(inputReadingSchema);

function bad(message: string, details?: Record<string, unknown>): EdgetwinError {
  return new EdgetwinError(ErrorCodes.BAD_READING, message, details ? { details } : {});
}

/** The readings of one input, before validation of each, with the name each has in messages. */
export function inputItems(obj: unknown): { items: unknown[]; where: (i: number) => string } {
  const batch = typeof obj === 'object' && obj !== null && !Array.isArray(obj) && 'readings' in obj;
  const items = Array.isArray(obj) ? obj : batch ? (obj as { readings: unknown }).readings : [obj];
  if (!Array.isArray(items)) throw bad('"readings" must be an array');
  if (items.length === 0) throw bad('no readings');
  if (items.length > MAX_READINGS_PER_INPUT) throw bad(`more than ${MAX_READINGS_PER_INPUT} readings`);
  const single = !Array.isArray(obj) && !batch;
  return { items, where: (i) => (single ? 'reading' : `readings[${i}]`) };
}

/**
 * Validates one reading; `where` prefixes the message (e.g. `readings[3]`). A value the lakehouse
 * cannot store (a lone surrogate, a sample time outside `window`) is EDGETWIN_ERR_BAD_VALUE.
 */
export function toReading(item: unknown, now: number, where = 'reading', window?: TimestampWindow): SourceReading {
  if (!validate(item)) {
    const e = validate.errors![0]!;
    const path = e.instancePath ? `${where}${e.instancePath.replace(/\//g, '.')}` : where;
    const extra =
      e.keyword === 'additionalProperties' ? ` "${String((e.params as { additionalProperty: string }).additionalProperty)}"` : '';
    throw bad(`${path} ${e.message ?? 'is invalid'}${extra}`, { path });
  }
  let ts = now;
  if (typeof item.ts === 'number') ts = item.ts;
  else if (typeof item.ts === 'string') {
    ts = parseTimestamp(item.ts);
    if (!Number.isFinite(ts) || ts < 0) throw bad(`${where}.ts is not an ISO 8601 timestamp: "${item.ts}"`, { path: `${where}.ts` });
  }
  const r: SourceReading = { ts, metric: item.metric, value: item.value, unit: item.unit };
  const p = unstorableReading(r, window, now);
  if (p) {
    const field = p.slice(0, p.indexOf(':'));
    throw new EdgetwinError(ErrorCodes.BAD_VALUE, `${where}.${p}`, { details: { path: `${where}.${field}` } });
  }
  if (item.alert) r.alert = true;
  return r;
}

/** All readings of one input, or the first problem (the input is taken or refused whole). */
export function parseReadings(obj: unknown, now: number, window?: TimestampWindow): SourceReading[] {
  const { items, where } = inputItems(obj);
  return items.map((it, i) => toReading(it, now, where(i), window));
}
