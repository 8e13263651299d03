/**
 * The wire contract between agent, collector and cloud (see docs/wire-contract.md).
 * One JSON Schema, compiled once, is the only validator used on every side.
 */
import { Ajv } from 'ajv';
import { EdgetwinError, ErrorCodes } from '../errors.js';
import { badValue, isWellFormed, jsonProblem, toWellFormed, unstorableBatch, unstorableReading } from './storable.js';
import type { Sample } from './sample.js';
import { TWIN_MAX_DEPTH } from './twin-protocol.js';

export const WIRE_VERSION = 1;

/** Device ids follow Azure IoT Hub's rules so the same id works on both paths. */
/** IoT Hub's device id rules, minus `.` and `..`: ids name files and folders (models, dead letters), never a parent. */
export const DEVICE_ID_PATTERN = "^(?!\\.{1,2}$)[A-Za-z0-9\\-.%_*?!(),:=@$']{1,128}$";
export const METRIC_PATTERN = '^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$';

export interface Reading extends Sample {
  /** Per-device sequence, strictly increasing across restarts. */
  seq: number;
  /** True when the reading crossed its alert threshold (sent in the priority lane). */
  alert?: boolean;
  /** Why an alert alerted (agent/scoring/explain.ts): only on readings with alert true. */
  explain?: AlertExplanation;
  /**
   * What the reading is (docs/wire-contract.md, "Predictions and drift"): absent, a measurement;
   * `prediction`, a failure model's remaining useful life of `asset` (value, in the model's step
   * unit, `model` its version, `alert` below its threshold); `drift`, one histogram of a model's
   * input, error or output over an interval (`drift`; value = how many values it counts).
   */
  kind?: 'prediction' | 'drift';
  /** The asset a prediction is about. */
  asset?: string;
  drift?: DriftHistogram;
}

/**
 * An alert's explanation: the part of the detector that drove it, the surprise it saw at the alert
 * and at the stream's baseline (a typical moment), and the top feature groups by |contribution|
 * (exact Shapley values: all groups' contributions sum to surprise − baseline).
 */
export interface AlertExplanation {
  detector: string;
  surprise: number;
  baseline: number;
  groups: Array<{ group: string; contribution: number }>;
}

export const EXPLAIN_GROUP_PATTERN = '^[a-z][a-z0-9_]{0,31}$';

/** Asset ids name a group of metrics on one device (and a metric `<asset>.rul`). */
export const ASSET_PATTERN = '^[A-Za-z_][A-Za-z0-9_.:-]{0,119}$';

/** One drift histogram on the wire: fixed bins (common/drift/histogram.ts), cells from `first`, trailing empty ones dropped. */
export interface DriftHistogram {
  /** The metric (anomaly model) or feature (failure model, `rul` for its output and error) the values belong to. */
  stream: string;
  quantity: 'input' | 'error' | 'output';
  /** Start of the interval, ms since the Unix epoch; the reading's ts is its end. */
  from: number;
  lo: number;
  hi: number;
  bins: number;
  first: number;
  counts: number[];
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
    explain: {
      type: 'object',
      required: ['detector', 'surprise', 'baseline', 'groups'],
      additionalProperties: false,
      properties: {
        detector: { type: 'string', pattern: EXPLAIN_GROUP_PATTERN },
        surprise: { type: 'number' },
        baseline: { type: 'number' },
        groups: {
          type: 'array',
          maxItems: 8,
          items: {
            type: 'object',
            required: ['group', 'contribution'],
            additionalProperties: false,
            properties: { group: { type: 'string', pattern: EXPLAIN_GROUP_PATTERN }, contribution: { type: 'number' } },
          },
        },
      },
    },
    kind: { enum: ['prediction', 'drift'] },
    asset: { type: 'string', pattern: ASSET_PATTERN },
    drift: {
      type: 'object',
      required: ['stream', 'quantity', 'from', 'lo', 'hi', 'bins', 'first', 'counts'],
      additionalProperties: false,
      properties: {
        stream: { type: 'string', pattern: METRIC_PATTERN },
        quantity: { enum: ['input', 'error', 'output'] },
        from: { type: 'integer', minimum: 0 },
        lo: { type: 'number' },
        hi: { type: 'number' },
        bins: { type: 'integer', minimum: 1, maximum: 256 },
        first: { type: 'integer', minimum: 0, maximum: 257 },
        counts: { type: 'array', maxItems: 258, items: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER } },
      },
    },
  },
  // A prediction names its asset and model; a drift reading carries its histogram and model; neither field appears elsewhere.
  allOf: [
    // An explanation belongs to an alert.
    {
      if: { type: 'object', required: ['explain'], properties: { explain: true } },
      then: { type: 'object', required: ['alert'], properties: { alert: { const: true } } },
    },
    {
      if: { type: 'object', required: ['kind'], properties: { kind: { const: 'prediction' } } },
      then: {
        type: 'object',
        required: ['asset', 'model'],
        properties: { asset: true, model: true },
        not: { type: 'object', required: ['drift'], properties: { drift: true } },
      },
    },
    {
      if: { type: 'object', required: ['kind'], properties: { kind: { const: 'drift' } } },
      then: {
        type: 'object',
        required: ['drift', 'model'],
        properties: { drift: true, model: true },
        not: { type: 'object', required: ['asset'], properties: { asset: true } },
      },
    },
    {
      if: { type: 'object', not: { type: 'object', required: ['kind'], properties: { kind: true } } },
      then: {
        type: 'object',
        not: {
          anyOf: [
            { type: 'object', required: ['asset'], properties: { asset: true } },
            { type: 'object', required: ['drift'], properties: { drift: true } },
          ],
        },
      },
    },
  ],
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

/**
 * A payload the collector could not read or would not store (not JSON, not UTF-8, a value the
 * lakehouse cannot hold, too large …), kept as the bytes the device sent, with the reason, and
 * delivered to the cloud's quarantine like telemetry: nothing a device publishes and the collector
 * acknowledges is silently dropped (IoT Hub keeps opaque payloads too). docs/wire-contract.md.
 */
export interface QuarantineMessage {
  v: typeof WIRE_VERSION;
  kind: 'quarantine';
  device: string;
  /** When the collector received it, ms since the Unix epoch (UTC). */
  ts: number;
  /** Why it was refused: an EDGETWIN_ERR_* code and the message. */
  code: string;
  reason: string;
  /** The payload as received, base64; only its first bytes when `truncated` (an oversize payload). */
  payload: string;
  /** Size of the payload as received, in bytes. */
  bytes: number;
  truncated?: boolean;
  /** The MQTT topic's property bag (`k=v&…` after `messages/events/`), when there was one. */
  properties?: string;
}

export const quarantineMessageSchema = {
  $id: 'https://edgetwin.dev/schema/quarantine-v1.json',
  type: 'object',
  required: ['v', 'kind', 'device', 'ts', 'code', 'reason', 'payload', 'bytes'],
  additionalProperties: false,
  properties: {
    v: { const: WIRE_VERSION },
    kind: { const: 'quarantine' },
    device: { type: 'string', pattern: DEVICE_ID_PATTERN },
    ts: { type: 'integer', minimum: 0 },
    code: { type: 'string', pattern: '^EDGETWIN_ERR_[A-Z_]{1,64}$' },
    reason: { type: 'string', maxLength: 1024 },
    payload: { type: 'string', maxLength: 48 * 1024 * 1024, pattern: '^[A-Za-z0-9+/]*={0,2}$' },
    bytes: { type: 'integer', minimum: 0 },
    truncated: { type: 'boolean' },
    properties: { type: 'string', maxLength: 65536 },
  },
} as const;

export type IngestMessage =
  | { kind: 'telemetry'; batch: TelemetryBatch }
  | { kind: 'reported'; reported: ReportedMessage }
  | { kind: 'quarantine'; quarantine: QuarantineMessage };

const ajv = new Ajv({ allErrors: false, strict: true });
const validateBatch = ajv.compile<TelemetryBatch>(telemetryBatchSchema);
const validateReported = ajv.compile<ReportedMessage>(reportedMessageSchema);
const validateReading = ajv.compile<Reading>(readingSchema);
const validateQuarantine = ajv.compile<QuarantineMessage>(quarantineMessageSchema);

/**
 * Checks one reading against the wire schema before it is committed, so a bad value (NaN from a
 * sensor register, an over-long unit) is refused alone instead of making the collector refuse the
 * whole batch it would travel in. Returns the problem, or undefined when the reading is valid.
 */
export function readingProblem(r: unknown): string | undefined {
  if (validateReading(r)) return unstorableReading(r);
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

/** Validates an already-parsed batch object: the wire schema, then what the lakehouse can store (EDGETWIN_ERR_BAD_VALUE). */
export function checkBatch(obj: unknown): TelemetryBatch {
  if (!validateBatch(obj)) throw schemaError('telemetry batch', validateBatch.errors);
  const p = unstorableBatch(obj);
  if (p) throw badValue(p.message, p.path);
  return obj;
}

/** Classifies and validates one message of an ingest envelope: a telemetry batch or a reported patch. */
export function checkMessage(obj: unknown): IngestMessage {
  const kind = typeof obj === 'object' && obj !== null ? (obj as { kind?: unknown }).kind : undefined;
  if (kind === 'reported') {
    if (!validateReported(obj)) throw schemaError('reported message', validateReported.errors);
    // A patch nested thousands deep must be refused here, with a code, not overflow a stack later.
    const p = jsonProblem(obj.patch, TWIN_MAX_DEPTH);
    if (p?.code === 'depth')
      throw new EdgetwinError(ErrorCodes.LIMIT_EXCEEDED, `reported patch ${p.message}`, { details: { path: '/patch' } });
    if (p) throw badValue(`reported patch: ${p.message}`, '/patch');
    return { kind: 'reported', reported: obj };
  }
  if (kind === 'quarantine') {
    if (!validateQuarantine(obj)) throw schemaError('quarantine message', validateQuarantine.errors);
    if (!isWellFormed(obj.reason)) throw badValue('quarantine reason is not well-formed Unicode', '/reason');
    return { kind: 'quarantine', quarantine: obj };
  }
  return { kind: 'telemetry', batch: checkBatch(obj) };
}

/** Bytes of a payload a quarantine message keeps when the payload is over the size limit (the rest is counted, not kept). */
export const QUARANTINE_HEAD_BYTES = 64 * 1024;

/**
 * The quarantine message for a payload the collector refuses: the device's bytes (base64; only the
 * first QUARANTINE_HEAD_BYTES when `whole` is false), the code and the reason (made storable).
 */
export function encodeQuarantine(q: {
  device: string;
  ts: number;
  code: string;
  reason: string;
  payload: Buffer;
  whole: boolean;
  properties?: string | undefined;
}): string {
  const kept = q.whole ? q.payload : q.payload.subarray(0, QUARANTINE_HEAD_BYTES);
  const m: QuarantineMessage = {
    v: WIRE_VERSION,
    kind: 'quarantine',
    device: q.device,
    ts: q.ts,
    code: q.code,
    reason: toWellFormed(q.reason).slice(0, 1000),
    payload: kept.toString('base64'),
    bytes: q.payload.length,
  };
  if (kept.length < q.payload.length) m.truncated = true;
  if (q.properties) m.properties = toWellFormed(q.properties).slice(0, 65536);
  return JSON.stringify(m);
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
