/**
 * How many metric names one device may have: the one definition of the `limits` config section the
 * agent, the collector and the cloud share. A twin keeps the newest reading of every metric of its
 * device, and every twin read (and each page of `GET /v1/twins`) returns them, so a device that
 * invents names without end (10 messages × 10k names made a 10 MB twin) must meet a cap:
 * - the agent refuses a reading whose metric would be its device's name number cap + 1, before it is
 *   committed (EDGETWIN_ERR_LIMIT_EXCEEDED, counted per source); the names it has are kept in its outbox;
 * - the collector refuses (acknowledges and keeps in quarantine) a single message naming more
 *   distinct metrics than the cap — it keeps no per-device state for this;
 * - the cloud, which holds the twin, enforces the cap per device across every collector and Event
 *   Hubs: readings of metrics beyond it are quarantined (reason `limit`), the rest is stored.
 */
import Type, { type Static } from 'typebox';
import { Section } from '../config.js';
import { EdgetwinError, ErrorCodes } from '../errors.js';

export const DEFAULT_METRICS_PER_DEVICE = 500;

export const deviceLimitsSchema = Section({
  /** Distinct metric names one device may have (twin size: each is one entry of the twin's `reported`). */
  metricsPerDevice: Type.Integer({ minimum: 1, maximum: 100_000, default: DEFAULT_METRICS_PER_DEVICE }),
});
export type DeviceLimitsConfig = Static<typeof deviceLimitsSchema>;

/** EDGETWIN_ERR_LIMIT_EXCEEDED for a metric that would be one too many. */
export function tooManyMetrics(metric: string, max: number, where: string): EdgetwinError {
  return new EdgetwinError(
    ErrorCodes.LIMIT_EXCEEDED,
    `metric "${metric}" would be more than ${max} distinct metrics for one device (limits.metricsPerDevice)${where ? ` ${where}` : ''}`,
    { details: { metric, max } },
  );
}

/** Whether `readings` name more than `max` distinct metrics. Cheap for the usual message: fewer readings than the cap cannot. */
export function namesTooManyMetrics(readings: readonly { metric: string }[], max: number): boolean {
  if (readings.length <= max) return false;
  const names = new Set<string>();
  for (const r of readings) {
    names.add(r.metric);
    if (names.size > max) return true;
  }
  return false;
}
