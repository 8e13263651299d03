/**
 * Telemetry from devices that use Azure's IoT Hub device SDK: they publish whatever body their
 * application chose on `devices/{id}/messages/events/{property bag}`. The collector accepts two
 * bodies (docs/wire-contract.md, "Devices on Azure's device SDK"):
 * - an edgetwin telemetry batch (`{"v":1,…}`): stored as sent, like the agent's;
 * - a flat JSON object of metrics, `{"temperature": 21.5, "pressure": {"value": 101.2, "unit": "kPa"}}`:
 *   mapped to readings (a bare number gets unit `1`); the collector gives them their identity
 *   (epoch, seq) when it spools them.
 * Anything else is refused with EDGETWIN_ERR_BAD_PAYLOAD, and a value the lakehouse cannot store
 * (common/wire/storable.ts, sample time outside `timestamps` included) with EDGETWIN_ERR_BAD_VALUE:
 * acknowledged, counted, and kept as the device's bytes in a quarantine message (broker.ts). So is a
 * message naming more distinct metrics than `limits.metricsPerDevice` (EDGETWIN_ERR_LIMIT_EXCEEDED):
 * the cloud holds the cap per device across messages (common/wire/limits.ts).
 */
import { isUtf8 } from 'node:buffer';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import { namesTooManyMetrics } from '../../common/wire/limits.js';
import { checkBatch, METRIC_PATTERN, type Reading } from '../../common/wire/record.js';
import { badValue, parseTimestamp, timestampProblem, unstorableReading, type TimestampWindow } from '../../common/wire/storable.js';
import { scanBatch } from './batch-scan.js';

/** A reading waiting for the seq the spool transaction will give it. */
export type UnsequencedReading = Omit<Reading, 'seq'>;

/** `skipped`: fields of a metric map that are not numeric metrics (the first SKIPPED_NAMES names); the broker keeps the message in quarantine too. */
export type DeviceMessage =
  { kind: 'batch'; readings: number } | { kind: 'metrics'; readings: UnsequencedReading[]; skipped: number; skippedNames: string[] };

const SKIPPED_NAMES = 10;

const metricRe = new RegExp(METRIC_PATTERN);
const MAX_UNIT = 32;
/** UCUM's unity: what a bare number gets, since the cloud refuses readings without a unit. */
export const NO_UNIT = '1';

/** The first `max` UTF-16 units of `s`, never ending in half a surrogate pair (which the lake could not store). */
function cut(s: string, max: number): string {
  if (s.length <= max) return s;
  const c = s.charCodeAt(max - 1);
  return s.slice(0, c >= 0xd800 && c <= 0xdbff ? max - 1 : max);
}

/** The property bag IoT Hub devices append to the events topic (URL-encoded `k=v&k=v`). */
export function propertyBag(topic: string, prefix: string): URLSearchParams {
  return new URLSearchParams(topic.slice(prefix.length));
}

/** ms since the epoch, or ISO 8601 text (UTC when it has no offset: common/wire/storable.ts). */
function timestamp(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  if (typeof v === 'string') {
    const t = parseTimestamp(v);
    if (Number.isFinite(t) && t >= 0) return t;
  }
  return undefined;
}

/**
 * Classifies one events payload of `device`. `bag` gives the topic's property bag (IoT Hub's
 * `$.ctime` creation time is used as the sample time when the body has no `ts`), parsed only then.
 * `maxMetrics`: most distinct metric names one message may carry (`limits.metricsPerDevice`).
 */
export function parseDeviceMessage(
  device: string,
  payload: Buffer,
  bag: () => URLSearchParams,
  nowMs: number,
  window?: TimestampWindow,
  maxMetrics = Infinity,
): DeviceMessage {
  // The agent's batches, nearly all traffic, are checked without building an object tree. The scan
  // does not collect names: a batch of more readings than the cap takes the full path, which counts them.
  const n = window ? scanBatch(payload, device, window.notBeforeMs, nowMs + window.maxFutureMs) : scanBatch(payload, device);
  if (n > 0 && n <= maxMetrics) return { kind: 'batch', readings: n };
  // JSON.parse would silently turn bad bytes into U+FFFD: the stored copy would not be what was sent.
  if (!isUtf8(payload)) throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, 'payload is not valid UTF-8');
  let obj: unknown;
  try {
    obj = JSON.parse(payload.toString('utf8'));
  } catch (cause) {
    throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, 'payload is not valid JSON', { cause });
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, 'payload must be a JSON object (a telemetry batch or a map of metrics)');
  }
  const rec = obj as Record<string, unknown>;
  if ('v' in rec && 'readings' in rec) {
    const batch = checkBatch(obj);
    if (batch.device !== device)
      throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, `payload names device ${batch.device}, connection is ${device}`);
    if (window) {
      for (let i = 0; i < batch.readings.length; i++) {
        const p = timestampProblem(batch.readings[i]!.ts, window, nowMs);
        if (p) throw badValue(`readings[${i}].ts: ${p}`, `/readings/${i}/ts`);
      }
    }
    if (namesTooManyMetrics(batch.readings, maxMetrics)) throw tooManyNames(maxMetrics);
    return { kind: 'batch', readings: batch.readings.length };
  }
  const ts = timestamp(rec['ts']) ?? timestamp(bag().get('$.ctime')) ?? nowMs;
  const readings: UnsequencedReading[] = [];
  let skipped = 0;
  const skippedNames: string[] = [];
  for (const [metric, v] of Object.entries(rec)) {
    if (metric === 'ts') continue;
    if (!metricRe.test(metric)) {
      if (skipped++ < SKIPPED_NAMES) skippedNames.push(metric);
      continue;
    }
    if (typeof v === 'number' && Number.isFinite(v)) {
      readings.push({ ts, metric, value: v, unit: NO_UNIT });
    } else if (
      typeof v === 'object' &&
      v !== null &&
      typeof (v as { value?: unknown }).value === 'number' &&
      Number.isFinite((v as { value: number }).value)
    ) {
      const unit = (v as { unit?: unknown }).unit;
      readings.push({
        ts,
        metric,
        value: (v as { value: number }).value,
        unit: typeof unit === 'string' && unit.trim() !== '' ? cut(unit, MAX_UNIT) : NO_UNIT,
      });
    } else if (skipped++ < SKIPPED_NAMES) skippedNames.push(metric);
  }
  if (readings.length === 0) throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, 'payload holds no numeric metric');
  for (const r of readings) {
    const p = unstorableReading(r, window, nowMs);
    if (p) throw badValue(`${r.metric}.${p}`, `/${r.metric}`);
  }
  if (readings.length > 100_000) throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, 'more than 100000 metrics in one message');
  if (readings.length > maxMetrics) throw tooManyNames(maxMetrics);
  return { kind: 'metrics', readings, skipped, skippedNames };
}

function tooManyNames(max: number): EdgetwinError {
  return new EdgetwinError(
    ErrorCodes.LIMIT_EXCEEDED,
    `message names more than ${max} distinct metrics, the most one device may have (limits.metricsPerDevice)`,
    { details: { max } },
  );
}
