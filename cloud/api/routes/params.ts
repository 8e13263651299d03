/**
 * Parameter schemas (TypeBox) and parsing shared by the API routes. Routes are registered on
 * `typed(app)`: with fastify's TypeBox type provider, `req.query`, `req.params` and `req.body` get
 * their types from the route's schema — no `req.query as …`.
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { EdgetwinError, ErrorCodes } from '../../../common/errors.js';
import { SITE_ID_PATTERN } from '../../../common/wire/ingest-envelope.js';
import { MODEL_ID_PATTERN } from '../../../common/wire/model-protocol.js';
import { DEVICE_ID_PATTERN } from '../../../common/wire/record.js';
import { parseTimestamp } from '../../../common/wire/storable.js';

/** The app with the TypeBox type provider: register routes on this. */
export const typed = (app: FastifyInstance) => app.withTypeProvider<TypeBoxTypeProvider>();

export const timeParam = (description: string) =>
  Type.Optional(Type.String({ minLength: 1, maxLength: 40, description: `${description}: ISO 8601 or ms since the Unix epoch` }));
export const siteParam = Type.String({ pattern: SITE_ID_PATTERN });
/** The wire's device id (IoT Hub's characters, never `.` or `..`): no route can name, or create, a twin ingest could not. */
export const deviceParam = Type.String({ pattern: DEVICE_ID_PATTERN });
/** Required in the schema, but never missing: ajv fills the default first (the OpenAPI document shows it optional). */
export const limitParam = (dflt: number, max: number) => Type.Integer({ minimum: 1, maximum: max, default: dflt });
/** `params` of a route on one device: `/…/:id`. */
export const deviceIdParams = Type.Object({ id: deviceParam });
/** `params` of a route on one model version: `/v1/models/:name/:version…`. */
const modelId = Type.String({ pattern: MODEL_ID_PATTERN });
export const modelVersionParams = Type.Object({ name: modelId, version: modelId });

/** ISO 8601 or epoch milliseconds → ms; 400 naming the parameter otherwise. */
export function parseTime(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  // Without an offset the time is UTC, as on every other path (never the host's zone).
  const ms = /^\d+$/.test(v) ? Number(v) : parseTimestamp(v);
  // ±8.64e15 ms is the range a JavaScript Date (and an ISO string) can represent.
  if (!Number.isFinite(ms) || Math.abs(ms) > 8.64e15)
    throw new EdgetwinError(ErrorCodes.BAD_REQUEST, `${name} must be ISO 8601 or ms since the Unix epoch, got "${v}"`);
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
