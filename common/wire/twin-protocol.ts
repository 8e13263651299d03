/**
 * Azure IoT Hub's device-twin protocol over MQTT, as both the collector (which answers it) and the
 * agent (which speaks it) use it: topic builders, the topic parser, and IoT Hub's rules for twin
 * documents. See docs/wire-contract.md, "Device twin".
 */
import { isPlainObject } from '../config.js';
import { EdgetwinError, ErrorCodes } from '../errors.js';
import { jsonProblem } from './storable.js';

export const twinTopics = {
  get: (rid: string): string => `$iothub/twin/GET/?$rid=${rid}`,
  patchReported: (rid: string): string => `$iothub/twin/PATCH/properties/reported/?$rid=${rid}`,
  response: (status: number, rid: string, version?: number): string =>
    `$iothub/twin/res/${status}/?$rid=${rid}${version === undefined ? '' : `&$version=${version}`}`,
  desiredPatch: (version: number): string => `$iothub/twin/PATCH/properties/desired/?$version=${version}`,
  /** What a device subscribes to (the filters the broker allows). */
  responses: '$iothub/twin/res/#',
  desiredPatches: '$iothub/twin/PATCH/properties/desired/#',
} as const;

export type TwinTopic =
  | { kind: 'get'; rid: string | undefined }
  | { kind: 'reported'; rid: string | undefined }
  | { kind: 'response'; status: number; rid: string | undefined; version: number | undefined }
  | { kind: 'desired'; version: number | undefined }
  | { kind: 'unknown'; rid: string | undefined };

function intOrUndefined(s: string | null): number | undefined {
  if (s === null || !/^\d+$/.test(s)) return undefined;
  return Number(s);
}

/** Classifies a `$iothub/twin/…` topic. The method segment is matched case-insensitively, as IoT Hub does. */
export function parseTwinTopic(topic: string): TwinTopic {
  const q = topic.indexOf('?');
  const path = q < 0 ? topic : topic.slice(0, q);
  const query = new URLSearchParams(q < 0 ? '' : topic.slice(q + 1));
  const rid = query.get('$rid') || undefined;
  const version = intOrUndefined(query.get('$version'));
  const parts = path.split('/').filter((p) => p.length > 0);
  if (parts[0] !== '$iothub' || parts[1] !== 'twin') return { kind: 'unknown', rid };
  const method = parts[2]?.toUpperCase();
  if (method === 'RES') return { kind: 'response', status: intOrUndefined(parts[3] ?? null) ?? 0, rid, version };
  if (method === 'GET' && parts.length === 3) return { kind: 'get', rid };
  if (method === 'PATCH' && parts[3] === 'properties' && parts.length === 5) {
    if (parts[4] === 'reported') return { kind: 'reported', rid };
    if (parts[4] === 'desired') return { kind: 'desired', version };
  }
  return { kind: 'unknown', rid };
}

/** IoT Hub's limits on twin property documents. */
export const TWIN_MAX_DEPTH = 10;
export const TWIN_MAX_KEY_LENGTH = 1024;
// IoT Hub refuses '.', '$' and spaces in property names, and control characters.
const BAD_KEY = /[.$ \u0000-\u001f\u007f-\u009f]/;

/**
 * Checks a twin patch or document against IoT Hub's rules: an object, property names without '.',
 * '$', spaces or control characters, at most TWIN_MAX_DEPTH deep and maxBytes long as JSON.
 * Throws EDGETWIN_ERR_BAD_PAYLOAD, EDGETWIN_ERR_PAYLOAD_TOO_LARGE, EDGETWIN_ERR_LIMIT_EXCEEDED (depth) or
 * EDGETWIN_ERR_BAD_VALUE (a lone surrogate, a non-finite number).
 */
export function checkTwinDocument(doc: unknown, maxBytes: number, what = 'twin patch'): asserts doc is Record<string, unknown> {
  if (!isPlainObject(doc)) throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, `${what} must be a JSON object`);
  const bytes = Buffer.byteLength(JSON.stringify(doc));
  if (bytes > maxBytes) {
    throw new EdgetwinError(ErrorCodes.PAYLOAD_TOO_LARGE, `${what} is ${bytes} bytes, over the ${maxBytes}-byte limit`, {
      details: { bytes, maxBytes },
    });
  }
  // Walked without recursion: a document nested thousands deep is answered, not a stack overflow.
  const p = jsonProblem(doc, TWIN_MAX_DEPTH);
  if (p?.code === 'depth') throw new EdgetwinError(ErrorCodes.LIMIT_EXCEEDED, `${what} is ${p.message}`);
  if (p) throw new EdgetwinError(ErrorCodes.BAD_VALUE, `${what}: ${p.message}`);
  const bad = findBadKey(doc);
  if (bad !== undefined)
    throw new EdgetwinError(
      ErrorCodes.BAD_PAYLOAD,
      `${what}: property name ${JSON.stringify(bad)} is not allowed (no '.', '$', spaces or control characters, 1 to ${TWIN_MAX_KEY_LENGTH} characters)`,
    );
}

function findBadKey(v: unknown): string | undefined {
  if (Array.isArray(v)) {
    for (const x of v) {
      const bad = findBadKey(x);
      if (bad !== undefined) return bad;
    }
  } else if (isPlainObject(v)) {
    for (const [k, x] of Object.entries(v)) {
      if (k.length === 0 || k.length > TWIN_MAX_KEY_LENGTH || BAD_KEY.test(k)) return k;
      const bad = findBadKey(x);
      if (bad !== undefined) return bad;
    }
  }
  return undefined;
}

/** Replaces characters IoT Hub does not allow in property names, for keys built from free text (source names). */
export function twinKey(text: string): string {
  const k = text.replace(new RegExp(BAD_KEY.source, 'g'), '_').slice(0, TWIN_MAX_KEY_LENGTH);
  return k.length > 0 ? k : '_';
}

/** The body of an error response: the Azure SDK treats a response with `errorCode` as a failure. */
export function twinErrorBody(code: string, message: string): string {
  return JSON.stringify({ errorCode: code, message });
}
