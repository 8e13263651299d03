/**
 * What a twin looks like to API clients (TwinView) and how it is built from its rows in `twins`
 * and `twin_metrics`. Pure: no store access, no cache (those are TwinStore's); health depends on
 * the clock, so it is computed at every read from `last_seen`.
 */
import { isPlainObject, type JsonObject } from '../../common/config.js';
import type { AlertExplanation, Reading } from '../../common/wire/record.js';
import type { CloudTwinsConfig } from '../config.js';

export interface ReportedMetric {
  value: number;
  unit: string;
  ts: string;
  seq: number;
  epoch: number;
  score?: number;
  alert?: boolean;
  model?: string;
  /** Why the newest reading alerted (only on an alert). */
  explain?: AlertExplanation;
}

/** A device's newest alert, kept until a newer one (the current `anomaly` follows the newest readings). */
export interface LastAlert {
  metric: string;
  ts: string;
  value: number;
  score: number | null;
  model: string | null;
  explain: AlertExplanation | null;
}

export type Health = 'online' | 'stale' | 'offline';

export interface TwinView {
  deviceId: string;
  /** The site that owns the device (board decision D1): set when it was claimed, changed only by an admin. */
  site: string;
  /** When and how the site got the device: `ingest` (its first data), `admin:<name>` (set or moved), `migration`. */
  claimed: { at: string | null; by: string | null };
  deviceType: string | null;
  tags: Record<string, string>;
  firstSeen: string;
  lastSeen: string;
  readings: number;
  health: { status: Health; lastSeenAgeMs: number; reported?: unknown };
  model: string | null;
  anomaly: { anomalous: boolean; score: number | null; metric: string | null; ts: string | null; lastAlert: LastAlert | null };
  /**
   * What of this device's data went to quarantine (`GET /v1/quarantine?device=` lists it): how many
   * rows, the last one's reason (schema, null, range, timestamp, value, limit, refused, lake) and when.
   */
  quarantine: { count: number; lastReason: string | null; lastAt: string | null };
  /** Newest reading per metric (telemetry). */
  reported: Record<string, ReportedMetric>;
  /** Reported properties (device twin), IoT Hub style. */
  reportedProperties: JsonObject & { $version: number; $lastUpdated: string | null };
  desired: JsonObject & { $version: number; $lastUpdated: string | null };
  applied: { version: number; at: string | null; inSync: boolean } | null;
  /** Version of the operator-side twin (desired, tags, type); the ETag is `"<$version>"`. */
  $version: number;
  etag: string;
}

export interface TwinFilter {
  /** One device only (a point read inside a transaction). */
  device?: string | undefined;
  site?: string | undefined;
  type?: string | undefined;
  /** `key` (tag present) or `key:value`. */
  tags?: string[] | undefined;
  anomalous?: boolean | undefined;
  lastSeenBefore?: number | undefined;
  lastSeenAfter?: number | undefined;
  /** Device ids after this one (cursor pagination, ordered by device id). */
  after?: string | undefined;
  limit: number;
}

export interface SiteSummary {
  site: string;
  devices: number;
  anomalous: number;
  readings: number;
  lastSeen: string;
}

/** The newest reading of one metric in a batch, as ingest hands it over. */
export interface LatestReading {
  epoch: number;
  reading: Reading;
}

/** A row of `twins`. */
export interface TwinRow {
  device: string;
  site: string;
  first_seen: number;
  last_seen: number;
  readings: number;
  device_type: string | null;
  tags: string;
  version: number;
  desired: string;
  desired_version: number;
  desired_cursor: number;
  desired_at: number | null;
  reported: string;
  reported_version: number;
  reported_at: number | null;
  applied_version: number | null;
  applied_at: number | null;
  anomalous: number;
  anomaly_score: number | null;
  anomaly_metric: string | null;
  anomaly_ts: number | null;
  last_alert: string | null;
  model: string | null;
  claimed_at: number | null;
  claimed_by: string | null;
  quarantined: number;
  quarantine_reason: string | null;
  quarantine_at: number | null;
}

/** A row of `twin_metrics`: the newest reading of one metric of one device. */
export interface MetricRow {
  device: string;
  metric: string;
  value: number;
  unit: string;
  ts: number;
  epoch: number;
  seq: number;
  score: number | null;
  alert: number;
  model: string | null;
  explanation: string | null;
}

/** Every column of MetricRow (as a Record, so the compiler names one that is missing). */
export const METRIC_COLUMNS: readonly string[] = Object.keys({
  device: 1,
  metric: 1,
  value: 1,
  unit: 1,
  ts: 1,
  epoch: 1,
  seq: 1,
  score: 1,
  alert: 1,
  model: 1,
  explanation: 1,
} satisfies Record<keyof MetricRow, 1>);

export const TAG_KEY = /^[A-Za-z0-9_-]{1,64}$/;

const iso = (ms: number): string => new Date(ms).toISOString();
const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms));

function lastAlertView(text: string | null): LastAlert | null {
  if (!text) return null;
  const a = JSON.parse(text) as Omit<LastAlert, 'ts'> & { ts: number };
  return { ...a, ts: iso(a.ts) };
}

/** online / stale / offline by the age of the last data (`twins.staleAfterMs`, `offlineAfterMs`), plus what the device reported. */
export function twinHealth(cfg: CloudTwinsConfig, lastSeen: number, reported: unknown, now: number): TwinView['health'] {
  const age = now - lastSeen;
  const status: Health = age > cfg.offlineAfterMs ? 'offline' : age > cfg.staleAfterMs ? 'stale' : 'online';
  return { status, lastSeenAgeMs: age, ...(reported === undefined ? {} : { reported }) };
}

/** The API view of one twin from its row and its metric rows. */
export function twinView(cfg: CloudTwinsConfig, t: TwinRow, metrics: MetricRow[], now = Date.now()): TwinView {
  const reported: Record<string, ReportedMetric> = {};
  for (const m of metrics) {
    const r: ReportedMetric = { value: m.value, unit: m.unit, ts: iso(m.ts), seq: m.seq, epoch: m.epoch };
    if (m.score !== null) r.score = m.score;
    if (m.alert) r.alert = true;
    if (m.model !== null) r.model = m.model;
    if (m.explanation) r.explain = JSON.parse(m.explanation) as AlertExplanation;
    reported[m.metric] = r;
  }
  const props = JSON.parse(t.reported) as JsonObject;
  const desired = JSON.parse(t.desired) as JsonObject;
  const versions = isPlainObject(props['versions']) ? props['versions'] : {};
  const reportedType = typeof props['deviceType'] === 'string' ? props['deviceType'] : null;
  return {
    deviceId: t.device,
    site: t.site,
    claimed: { at: isoOrNull(t.claimed_at), by: t.claimed_by },
    deviceType: t.device_type ?? reportedType,
    tags: JSON.parse(t.tags) as Record<string, string>,
    firstSeen: iso(t.first_seen),
    lastSeen: iso(t.last_seen),
    readings: t.readings,
    health: twinHealth(cfg, t.last_seen, props['health'], now),
    model: t.model ?? (typeof versions['model'] === 'string' ? versions['model'] : null),
    anomaly: {
      anomalous: t.anomalous === 1,
      score: t.anomaly_score,
      metric: t.anomaly_metric,
      ts: isoOrNull(t.anomaly_ts),
      lastAlert: lastAlertView(t.last_alert),
    },
    quarantine: { count: t.quarantined, lastReason: t.quarantine_reason, lastAt: isoOrNull(t.quarantine_at) },
    reported,
    reportedProperties: { ...props, $version: t.reported_version, $lastUpdated: isoOrNull(t.reported_at) },
    desired: { ...desired, $version: t.desired_version, $lastUpdated: isoOrNull(t.desired_at) },
    applied:
      t.applied_version === null
        ? null
        : { version: t.applied_version, at: isoOrNull(t.applied_at), inSync: t.applied_version >= t.desired_version },
    $version: t.version,
    etag: `"${t.version}"`,
  };
}
