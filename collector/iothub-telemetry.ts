/**
 * Telemetry from devices that use Azure's IoT Hub device SDK: they publish whatever body their
 * application chose on `devices/{id}/messages/events/{property bag}`. The collector accepts two
 * bodies (docs/wire-contract.md, "Devices on Azure's device SDK"):
 * - an edgetwin telemetry batch (`{"v":1,…}`): stored as sent, like the agent's;
 * - a flat JSON object of metrics, `{"temperature": 21.5, "pressure": {"value": 101.2, "unit": "kPa"}}`:
 *   mapped to readings (a bare number gets unit `1`); the collector gives them their identity
 *   (epoch, seq) when it spools them.
 * Anything else is refused with EDGETWIN_ERR_BAD_PAYLOAD (acknowledged, counted, not stored).
 */
import { EdgetwinError, ErrorCodes } from '../common/errors.js';
import { checkBatch, METRIC_PATTERN, type Reading } from '../common/record.js';
import { scanBatch } from './batch-scan.js';

/** A reading waiting for the seq the spool transaction will give it. */
export type UnsequencedReading = Omit<Reading, 'seq'>;

export type DeviceMessage =
  | { kind: 'batch'; readings: number }
  | { kind: 'metrics'; readings: UnsequencedReading[]; skipped: number };

const metricRe = new RegExp(METRIC_PATTERN);
const MAX_UNIT = 32;
/** UCUM's unity: what a bare number gets, since the cloud refuses readings without a unit. */
export const NO_UNIT = '1';

/** The property bag IoT Hub devices append to the events topic (URL-encoded `k=v&k=v`). */
export function propertyBag(topic: string, prefix: string): URLSearchParams {
  return new URLSearchParams(topic.slice(prefix.length));
}

function timestamp(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
  if (typeof v === 'string') {
    const t = Date.parse(v);
    if (Number.isFinite(t) && t >= 0) return t;
  }
  return undefined;
}

/**
 * Classifies one events payload of `device`. `bag` gives the topic's property bag (IoT Hub's
 * `$.ctime` creation time is used as the sample time when the body has no `ts`), parsed only then.
 */
export function parseDeviceMessage(device: string, payload: Buffer, bag: () => URLSearchParams, nowMs: number): DeviceMessage {
  // The agent's batches, nearly all traffic, are checked without building an object tree.
  const n = scanBatch(payload, device);
  if (n > 0) return { kind: 'batch', readings: n };
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
    if (batch.device !== device) throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, `payload names device ${batch.device}, connection is ${device}`);
    return { kind: 'batch', readings: batch.readings.length };
  }
  const ts = timestamp(rec['ts']) ?? timestamp(bag().get('$.ctime')) ?? nowMs;
  const readings: UnsequencedReading[] = [];
  let skipped = 0;
  for (const [metric, v] of Object.entries(rec)) {
    if (metric === 'ts') continue;
    if (!metricRe.test(metric)) {
      skipped++;
      continue;
    }
    if (typeof v === 'number' && Number.isFinite(v)) {
      readings.push({ ts, metric, value: v, unit: NO_UNIT });
    } else if (typeof v === 'object' && v !== null && typeof (v as { value?: unknown }).value === 'number' && Number.isFinite((v as { value: number }).value)) {
      const unit = (v as { unit?: unknown }).unit;
      readings.push({ ts, metric, value: (v as { value: number }).value, unit: typeof unit === 'string' && unit.trim() !== '' ? unit.slice(0, MAX_UNIT) : NO_UNIT });
    } else {
      skipped++;
    }
  }
  if (readings.length === 0) throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, 'payload holds no numeric metric');
  if (readings.length > 100_000) throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, 'more than 100000 metrics in one message');
  return { kind: 'metrics', readings, skipped };
}
