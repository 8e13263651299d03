/**
 * The wire contract between agent, collector and cloud (see docs/wire-contract.md).
 * One JSON Schema, compiled once, is the only validator used on every side.
 */
import { Ajv } from 'ajv';
import { EdgetwinError, ErrorCodes } from './errors.js';

export const WIRE_VERSION = 1;

/** Device ids follow Azure IoT Hub's rules so the same id works on both paths. */
export const DEVICE_ID_PATTERN = '^[A-Za-z0-9\\-.%_*?!(),:=@$\']{1,128}$';
export const METRIC_PATTERN = '^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$';

export interface Reading {
  /** Per-device sequence, strictly increasing across restarts. */
  seq: number;
  /** Sample time, milliseconds since the Unix epoch (UTC). */
  ts: number;
  metric: string;
  value: number;
  unit: string;
  /** Calibrated anomaly score in [0, 1], when a model scored the reading. */
  score?: number;
  /** Version of the model that produced `score`. */
  model?: string;
  /** True when the reading crossed its alert threshold (sent in the priority lane). */
  alert?: boolean;
}

export interface TelemetryBatch {
  v: typeof WIRE_VERSION;
  device: string;
  /** Boot epoch of the device: incremented durably at every start. */
  epoch: number;
  readings: Reading[];
}

export const readingSchema = {
  type: 'object',
  required: ['seq', 'ts', 'metric', 'value', 'unit'],
  additionalProperties: false,
  properties: {
    seq: { type: 'integer', minimum: 0 },
    ts: { type: 'integer', minimum: 0 },
    metric: { type: 'string', pattern: METRIC_PATTERN },
    value: { type: 'number' },
    unit: { type: 'string', maxLength: 32 },
    score: { type: 'number', minimum: 0, maximum: 1 },
    model: { type: 'string', maxLength: 64 },
    alert: { type: 'boolean' },
  },
} as const;

export const telemetryBatchSchema = {
  $id: 'https://edgetwin.dev/schema/telemetry-batch-v1.json',
  type: 'object',
  required: ['v', 'device', 'epoch', 'readings'],
  additionalProperties: false,
  properties: {
    v: { const: WIRE_VERSION },
    device: { type: 'string', pattern: DEVICE_ID_PATTERN },
    epoch: { type: 'integer', minimum: 0 },
    readings: { type: 'array', minItems: 1, maxItems: 100000, items: readingSchema },
  },
} as const;

/**
 * A device's reported-properties patch, carried from the collector to the cloud in the same ingest
 * envelope as telemetry (so it shares the spool, the retries and the ordering per device).
 */
export interface ReportedMessage {
  v: typeof WIRE_VERSION;
  kind: 'reported';
  device: string;
  /** When the collector received the patch, ms since the Unix epoch (UTC). */
  ts: number;
  /** The twin's reported $version the collector assigned, when it keeps one. */
  version?: number;
  patch: Record<string, unknown>;
}

export const reportedMessageSchema = {
  $id: 'https://edgetwin.dev/schema/reported-v1.json',
  type: 'object',
  required: ['v', 'kind', 'device', 'ts', 'patch'],
  additionalProperties: false,
  properties: {
    v: { const: WIRE_VERSION },
    kind: { const: 'reported' },
    device: { type: 'string', pattern: DEVICE_ID_PATTERN },
    ts: { type: 'integer', minimum: 0 },
    version: { type: 'integer', minimum: 0 },
    patch: { type: 'object' },
  },
} as const;

export type IngestMessage = { kind: 'telemetry'; batch: TelemetryBatch } | { kind: 'reported'; reported: ReportedMessage };

const ajv = new Ajv({ allErrors: false, strict: true });
const validateBatch = ajv.compile<TelemetryBatch>(telemetryBatchSchema);
const validateReported = ajv.compile<ReportedMessage>(reportedMessageSchema);
const validateReading = ajv.compile<Reading>(readingSchema);

/**
 * Checks one reading against the wire schema before it is committed, so a bad value (NaN from a
 * sensor register, an over-long unit) is refused alone instead of making the collector refuse the
 * whole batch it would travel in. Returns the problem, or undefined when the reading is valid.
 */
export function readingProblem(r: unknown): string | undefined {
  if (validateReading(r)) return undefined;
  const e = validateReading.errors?.[0];
  return `${e?.instancePath || '/'} ${e?.message ?? 'schema mismatch'}`;
}

function schemaError(what: string, errors: typeof validateBatch.errors): EdgetwinError {
  const e = errors?.[0];
  const where = e?.instancePath ? e.instancePath : '/';
  return new EdgetwinError(ErrorCodes.BAD_PAYLOAD, `invalid ${what} at ${where}: ${e?.message ?? 'schema mismatch'}`, {
    details: { path: where },
  });
}

/** Parses and validates one telemetry batch; throws EDGETWIN_ERR_BAD_PAYLOAD. */
export function decodeBatch(payload: Buffer | string): TelemetryBatch {
  let obj: unknown;
  try {
    obj = JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8'));
  } catch (cause) {
    throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, 'payload is not valid JSON', { cause });
  }
  return checkBatch(obj);
}

/** Validates an already-parsed batch object. */
export function checkBatch(obj: unknown): TelemetryBatch {
  if (!validateBatch(obj)) throw schemaError('telemetry batch', validateBatch.errors);
  return obj;
}

/** Classifies and validates one message of an ingest envelope: a telemetry batch or a reported patch. */
export function checkMessage(obj: unknown): IngestMessage {
  if (typeof obj === 'object' && obj !== null && (obj as { kind?: unknown }).kind === 'reported') {
    if (!validateReported(obj)) throw schemaError('reported message', validateReported.errors);
    return { kind: 'reported', reported: obj };
  }
  return { kind: 'telemetry', batch: checkBatch(obj) };
}

export function encodeBatch(batch: TelemetryBatch): string {
  return JSON.stringify(batch);
}

/** Encodes one reading on its own, so a store can keep it and splice it into a batch later. */
export function encodeReading(r: Reading): string {
  return JSON.stringify(r);
}

/**
 * Builds a batch from readings that are already JSON-encoded, without parsing them again:
 * the agent's outbox stores encoded readings and the uplink only concatenates.
 */
export function spliceBatch(device: string, epoch: number, encodedReadings: readonly string[]): string {
  return `{"v":${WIRE_VERSION},"device":${JSON.stringify(device)},"epoch":${epoch},"readings":[${encodedReadings.join(',')}]}`;
}

/**
 * Topics follow Azure IoT Hub's MQTT scheme, so the agent and devices that use Azure's own SDK
 * share one broker, one ACL and one set of rules.
 */
export const topics = {
  telemetry: (device: string): string => `devices/${device}/messages/events/`,
  /** Device-to-cloud telemetry may carry IoT Hub's property bag after the trailing slash. */
  telemetryPrefix: (device: string): string => `devices/${device}/messages/events/`,
  /** IoT Hub device-twin topics (shared by every device; replies go to one client only). */
  twinPrefix: '$iothub/twin/',
  twinResponses: '$iothub/twin/res/#',
  twinDesiredPatches: '$iothub/twin/PATCH/properties/desired/#',
  deviceOf(topic: string): string | undefined {
    const m = /^devices\/([^/]+)\//.exec(topic);
    return m?.[1];
  },
};
