/**
 * Cloud-to-device contracts, shared by the cloud, the collector and the agent: IoT Hub's MQTT
 * topics for direct methods and device-bound (C2D) messages, IoT Hub's limits on them, and the
 * frames of the push channel between the cloud and a site's collector (a WebSocket the collector
 * opens, `GET /v1/sites/{site}/channel`). See docs/wire-contract.md, "Cloud to device".
 */
import { EdgetwinError, ErrorCodes, type ErrorCode } from '../errors.js';

/** Method names travel in a topic level: no `/`, `#`, `+`, `?` and nothing IoT Hub would refuse. */
export const METHOD_NAME_PATTERN = '^[A-Za-z0-9_.~-]{1,128}$';
const methodNameRe = new RegExp(METHOD_NAME_PATTERN);

/** IoT Hub's limits: method payloads (each way) and C2D message bodies. */
export const METHOD_MAX_PAYLOAD_BYTES = 128 * 1024;
export const MESSAGE_MAX_BODY_BYTES = 64 * 1024;
/** IoT Hub: responseTimeoutInSeconds 5–300 (default 30), connectTimeoutInSeconds 0–300 (default 0). */
export const METHOD_TIMEOUTS = { responseMinS: 5, responseMaxS: 300, responseDefaultS: 30, connectMaxS: 300, connectDefaultS: 0 } as const;
/** IoT Hub: a message lives at most 48 hours; 1 hour by default. */
export const MESSAGE_TTL = { minS: 1, maxS: 48 * 3600, defaultS: 3600 } as const;
/** Application properties of a message: names as IoT Hub's property bag allows, `$` is reserved for system properties. */
export const MESSAGE_PROPERTY_NAME_PATTERN = '^[A-Za-z0-9_.~-]{1,64}$';
export const MESSAGE_MAX_PROPERTIES = 32;
export const MESSAGE_PROPERTY_MAX_LENGTH = 256;

export const methodTopics = {
  prefix: '$iothub/methods/',
  /** What a device subscribes to for method requests (IoT Hub's SDKs use exactly this filter). */
  requests: '$iothub/methods/POST/#',
  request: (method: string, rid: string): string => `$iothub/methods/POST/${method}/?$rid=${rid}`,
  response: (status: number, rid: string): string => `$iothub/methods/res/${status}/?$rid=${rid}`,
} as const;

export type MethodTopic =
  | { kind: 'request'; method: string; rid: string | undefined }
  | { kind: 'response'; status: number; rid: string | undefined }
  | { kind: 'unknown' };

/** Classifies a `$iothub/methods/…` topic. */
export function parseMethodTopic(topic: string): MethodTopic {
  const q = topic.indexOf('?');
  const path = q < 0 ? topic : topic.slice(0, q);
  const rid = new URLSearchParams(q < 0 ? '' : topic.slice(q + 1)).get('$rid') || undefined;
  const parts = path.split('/').filter((p) => p.length > 0);
  if (parts[0] !== '$iothub' || parts[1] !== 'methods' || parts.length !== 4) return { kind: 'unknown' };
  if (parts[2] === 'POST') return { kind: 'request', method: parts[3]!, rid };
  if (parts[2] === 'res' && /^\d{1,3}$/.test(parts[3]!)) return { kind: 'response', status: Number(parts[3]), rid };
  return { kind: 'unknown' };
}

export function isMethodName(name: string): boolean {
  return methodNameRe.test(name);
}

export const messageTopics = {
  /** The topic a device-bound message is delivered on; the property bag follows the last slash. */
  prefix: (device: string): string => `devices/${device}/messages/devicebound/`,
  /** What a device subscribes to (Azure's SDK: QoS 1). */
  subscription: (device: string): string => `devices/${device}/messages/devicebound/#`,
} as const;

/**
 * The delivery topic of one message: IoT Hub's property bag, URL-encoded — system properties
 * `$.mid` (message id), `$.to`, `$.exp` (expiry, ISO 8601), `$.cid` (correlation id), then the
 * application properties. Azure's device SDK turns these into `message.messageId`, `.properties`….
 */
export function messageTopic(m: Pick<DeviceBoundMessage, 'id' | 'device' | 'expiresAt' | 'properties' | 'correlationId'>): string {
  const bag: [string, string][] = [
    ['$.mid', m.id],
    ['$.to', `/devices/${m.device}/messages/devicebound`],
    ['$.exp', new Date(m.expiresAt).toISOString()],
  ];
  if (m.correlationId !== undefined) bag.push(['$.cid', m.correlationId]);
  for (const [k, v] of Object.entries(m.properties)) bag.push([k, v]);
  return messageTopics.prefix(m.device) + bag.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
}

/** Reads a delivery topic's property bag back (system properties keep their `$.` names). */
export function parseMessageTopic(topic: string): Record<string, string> | undefined {
  const m = /^devices\/[^/]+\/messages\/devicebound\/(.*)$/.exec(topic);
  if (!m) return undefined;
  const out: Record<string, string> = {};
  for (const pair of m[1]!.split('&')) {
    if (pair.length === 0) continue;
    const eq = pair.indexOf('=');
    const k = decodeURIComponent(eq < 0 ? pair : pair.slice(0, eq));
    out[k] = eq < 0 ? '' : decodeURIComponent(pair.slice(eq + 1));
  }
  return out;
}

/** True when an MQTT subscription filter matches a topic (`+` one level, `#` the rest). */
export function filterMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/** A device-bound message as the cloud hands it to the collector and the collector keeps it. */
export interface DeviceBoundMessage {
  /** Message id (the cloud's; `$.mid` on the wire). */
  id: string;
  device: string;
  /** The body as text (UTF-8). */
  body: string;
  properties: Record<string, string>;
  correlationId?: string;
  /** ms since the Unix epoch. */
  enqueuedAt: number;
  expiresAt: number;
}

export const MESSAGE_OUTCOMES = ['delivered', 'expired', 'rejected'] as const;
export type MessageOutcome = (typeof MESSAGE_OUTCOMES)[number];

/** What became of one message at the collector (the message's final state). */
export interface MessageFeedback {
  id: string;
  device: string;
  outcome: MessageOutcome;
  /** ms since the Unix epoch. */
  at: number;
  /** Why a message was rejected (a stable code), e.g. EDGETWIN_ERR_DEVICE_QUEUE_FULL. */
  code?: string;
  reason?: string;
}

/** A direct method call on its way to a device through its site's collector. */
export interface MethodCall {
  id: string;
  device: string;
  method: string;
  payload: unknown;
  responseTimeoutMs: number;
  connectTimeoutMs: number;
}

/** Frames the cloud sends on a site's channel. */
export type CloudFrame =
  | ({ t: 'invoke' } & MethodCall)
  | { t: 'messages'; items: DeviceBoundMessage[] }
  /** The cloud has stored these feedback entries: the collector may forget them. */
  | { t: 'feedback-ack'; ids: string[] };

/** Frames the collector sends back. */
export type CollectorFrame =
  | { t: 'result'; id: string; status: number; payload: unknown }
  | { t: 'failed'; id: string; code: ErrorCode; message: string }
  /** These messages are in the collector's durable queue (or already have feedback). */
  | { t: 'queued'; ids: string[] }
  | { t: 'feedback'; items: MessageFeedback[] };

const FRAME_MAX_BYTES = 4 * 1024 * 1024;

function frameError(what: string): EdgetwinError {
  return new EdgetwinError(ErrorCodes.BAD_PAYLOAD, `channel frame: ${what}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

/** Parses one frame from the cloud; throws EDGETWIN_ERR_BAD_PAYLOAD on anything malformed. */
export function parseCloudFrame(text: string): CloudFrame {
  const f = parseObject(text);
  switch (f['t']) {
    case 'invoke':
      if (typeof f['id'] !== 'string' || typeof f['device'] !== 'string' || typeof f['method'] !== 'string') throw frameError('bad invoke');
      if (typeof f['responseTimeoutMs'] !== 'number' || typeof f['connectTimeoutMs'] !== 'number') throw frameError('bad invoke timeouts');
      return f as CloudFrame;
    case 'messages':
      if (!Array.isArray(f['items']) || !f['items'].every(isDeviceBoundMessage)) throw frameError('bad messages');
      return f as CloudFrame;
    case 'feedback-ack':
      if (!isStringArray(f['ids'])) throw frameError('bad feedback-ack');
      return f as CloudFrame;
    default:
      throw frameError(`unknown type ${JSON.stringify(f['t'])}`);
  }
}

/** Parses one frame from a collector; throws EDGETWIN_ERR_BAD_PAYLOAD on anything malformed. */
export function parseCollectorFrame(text: string): CollectorFrame {
  const f = parseObject(text);
  switch (f['t']) {
    case 'result':
      if (typeof f['id'] !== 'string' || !Number.isInteger(f['status'])) throw frameError('bad result');
      return f as CollectorFrame;
    case 'failed':
      if (typeof f['id'] !== 'string' || typeof f['code'] !== 'string' || typeof f['message'] !== 'string') throw frameError('bad failed');
      return f as CollectorFrame;
    case 'queued':
      if (!isStringArray(f['ids'])) throw frameError('bad queued');
      return f as CollectorFrame;
    case 'feedback':
      if (!Array.isArray(f['items']) || !f['items'].every(isFeedback)) throw frameError('bad feedback');
      return f as CollectorFrame;
    default:
      throw frameError(`unknown type ${JSON.stringify(f['t'])}`);
  }
}

function parseObject(text: string): Record<string, unknown> {
  if (text.length > FRAME_MAX_BYTES) throw frameError(`larger than ${FRAME_MAX_BYTES} bytes`);
  let f: unknown;
  try {
    f = JSON.parse(text);
  } catch (cause) {
    throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, 'channel frame is not JSON', { cause });
  }
  if (!isObject(f)) throw frameError('not an object');
  return f;
}

function isDeviceBoundMessage(v: unknown): v is DeviceBoundMessage {
  return (
    isObject(v) &&
    typeof v['id'] === 'string' &&
    typeof v['device'] === 'string' &&
    typeof v['body'] === 'string' &&
    isObject(v['properties']) &&
    Object.values(v['properties']).every((x) => typeof x === 'string') &&
    (v['correlationId'] === undefined || typeof v['correlationId'] === 'string') &&
    Number.isFinite(v['enqueuedAt']) &&
    Number.isFinite(v['expiresAt'])
  );
}

function isFeedback(v: unknown): v is MessageFeedback {
  return (
    isObject(v) &&
    typeof v['id'] === 'string' &&
    typeof v['device'] === 'string' &&
    MESSAGE_OUTCOMES.includes(v['outcome'] as MessageOutcome) &&
    Number.isFinite(v['at'])
  );
}

/** The method-answer body a device gets for a request it cannot serve (unknown method and the like). */
export function methodErrorBody(code: string, message: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { errorCode: code, message, ...extra };
}
