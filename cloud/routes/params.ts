/** Query-parameter schemas and parsing shared by the API routes. */
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';

export const timeParam = (description: string) => ({ type: 'string', minLength: 1, maxLength: 40, description: `${description}: ISO 8601 or ms since the Unix epoch` });
export const siteParam = { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' };
export const deviceParam = { type: 'string', minLength: 1, maxLength: 128 };
export const limitParam = (dflt: number, max: number) => ({ type: 'integer', minimum: 1, maximum: max, default: dflt });

/** ISO 8601 or epoch milliseconds → ms; 400 naming the parameter otherwise. */
export function parseTime(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const ms = /^\d+$/.test(v) ? Number(v) : Date.parse(v);
  // ±8.64e15 ms is the range a JavaScript Date (and an ISO string) can represent.
  if (!Number.isFinite(ms) || Math.abs(ms) > 8.64e15) throw new EdgetwinError(ErrorCodes.BAD_REQUEST, `${name} must be ISO 8601 or ms since the Unix epoch, got "${v}"`);
  return ms;
}

/** `from`/`to` with defaults; 400 when from is not before to or the span is too long. */
export function timeRange(q: { from?: string; to?: string }, defaultSpanMs: number, maxSpanMs: number): { from: number; to: number } {
  const to = parseTime(q.to, 'to') ?? Date.now();
  const from = parseTime(q.from, 'from') ?? to - defaultSpanMs;
  if (from >= to) throw new EdgetwinError(ErrorCodes.BAD_REQUEST, 'from must be before to');
  if (to - from > maxSpanMs) throw new EdgetwinError(ErrorCodes.BAD_REQUEST, `the range may span at most ${maxSpanMs / 86_400_000} days`);
  return { from, to };
}

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `raw` or `<n><s|m|h|d>` (e.g. 10s, 1m, 15m, 1h, 1d) → bucket width in ms, undefined for raw. */
export function parseBucket(v: string | undefined): number | undefined {
  if (v === undefined || v === 'raw') return undefined;
  const m = /^(\d{1,6})([smhd])$/.exec(v);
  const ms = m ? Number(m[1]) * UNITS[m[2]!]! : NaN;
  if (!(ms >= 1000)) throw new EdgetwinError(ErrorCodes.BAD_REQUEST, `bucket must be raw or <n><s|m|h|d> of at least 1s, got "${v}"`);
  return ms;
}
