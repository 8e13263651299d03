/**
 * Inside the ingest transaction, after the identity ranges are loaded: each reading of the batch
 * is new (its seq not in its (device, epoch) ranges) or a duplicate, passes the quality rules or
 * goes to quarantine, and is a measurement (twin + silver) or a derived reading (predictions and
 * drift histograms, derived-readings.ts). What it finds per device is what the twin records.
 */
import { tooManyMetrics } from '../../common/wire/limits.js';
import type { Reading, TelemetryBatch } from '../../common/wire/record.js';
import type { LatestReading } from '../twins/twin-view.js';
import type { DerivedReadings } from './derived-readings.js';
import type { QualityRules, QuarantineRow } from './quality.js';
import type { SeqTxn } from './seq-index.js';

/** What one batch does to one device's twin. */
export interface DeviceTouch {
  stored: number;
  /** Whether any new reading arrived (duplicates only: the twin is not touched). */
  seen: boolean;
  /** Newest reading per metric, by (ts, epoch, seq). */
  latest: Map<string, LatestReading>;
  model: string | undefined;
  /** The batch's newest alert of this device (the twin keeps it as `anomaly.lastAlert`). */
  lastAlert?: Reading;
}

export interface AlertSeen {
  device: string;
  epoch: number;
  r: Reading;
}

export interface SortedReadings {
  devices: Map<string, DeviceTouch>;
  alerts: AlertSeen[];
  stored: number;
  duplicates: number;
  /** Readings the batch's accepted messages carried. */
  readings: number;
}

export interface ReadingSinks {
  seq: SeqTxn;
  quality: QualityRules;
  derived: DerivedReadings | undefined;
  /** Appended to: readings left out of silver, as [message index, reading index]. */
  drop: [number, number][];
  /** Appended to: readings that failed the quality rules. */
  quarantine: QuarantineRow[];
  /** Per device, metric names over `limits.metricsPerDevice` (twin-limits.ts MetricCap): their readings are quarantined (`limit`). */
  overCap?: { max: number; names: ReadonlyMap<string, ReadonlySet<string>> };
}

/**
 * Per device, the metric names of the measurements a batch may add (not known duplicates, not
 * derived readings), in order of appearance: what MetricCap decides on before sortReadings runs.
 */
export function newMetricNames(telemetry: readonly { batch: TelemetryBatch }[], seq: SeqTxn, derived: boolean): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const { batch } of telemetry) {
    const ranges = seq.get(batch.device, batch.epoch);
    for (const r of batch.readings) {
      if (ranges.has(r.seq) || (derived && r.kind !== undefined)) continue;
      let names = out.get(batch.device);
      if (!names) out.set(batch.device, (names = new Set()));
      names.add(r.metric);
    }
  }
  return out;
}

/** The device's twin has no room for this measurement's metric name. */
function overCap(s: ReadingSinks, device: string, r: Reading): { reason: 'limit'; detail: string } | undefined {
  if (r.kind !== undefined && s.derived) return undefined;
  if (!s.overCap?.names.get(device)?.has(r.metric)) return undefined;
  const e = tooManyMetrics(r.metric, s.overCap.max, 'in its twin');
  return { reason: 'limit', detail: `${e.code}: ${e.message}` };
}

const newer = (r: Reading, epoch: number, prev: LatestReading): boolean =>
  r.ts > prev.reading.ts || (r.ts === prev.reading.ts && (epoch > prev.epoch || (epoch === prev.epoch && r.seq > prev.reading.seq)));

export function sortReadings(
  telemetry: readonly { index: number; batch: TelemetryBatch }[],
  site: string,
  now: number,
  s: ReadingSinks,
): SortedReadings {
  const out: SortedReadings = { devices: new Map(), alerts: [], stored: 0, duplicates: 0, readings: 0 };
  for (const { index, batch } of telemetry) {
    const ranges = s.seq.get(batch.device, batch.epoch);
    let touch = out.devices.get(batch.device);
    if (!touch) out.devices.set(batch.device, (touch = { stored: 0, seen: false, latest: new Map(), model: undefined }));
    const rs = batch.readings;
    out.readings += rs.length;
    for (let j = 0; j < rs.length; j++) {
      const r = rs[j]!;
      if (ranges.has(r.seq)) {
        out.duplicates++;
        s.drop.push([index, j]);
        continue;
      }
      ranges.add(r.seq);
      touch.seen = true;
      const bad = s.quality.check(r, now) ?? overCap(s, batch.device, r);
      if (bad) {
        s.quarantine.push(s.quality.row(batch.device, batch.epoch, r, bad.reason, bad.detail));
        s.drop.push([index, j]);
        continue;
      }
      // Predictions and drift histograms go to their own tables, not the twin's metrics or anomaly events;
      // a drift histogram stays out of silver (bronze keeps it).
      if (r.kind !== undefined && s.derived) {
        const damaged = s.derived.tryTake(site, batch.device, batch.epoch, r);
        if (damaged) s.quarantine.push(s.quality.row(batch.device, batch.epoch, r, 'schema', damaged));
        else {
          out.stored++;
          touch.stored++;
        }
        if (damaged || r.kind === 'drift') s.drop.push([index, j]);
        continue;
      }
      out.stored++;
      touch.stored++;
      if (r.model !== undefined) touch.model = r.model;
      if (r.alert) {
        out.alerts.push({ device: batch.device, epoch: batch.epoch, r });
        if (!touch.lastAlert || r.ts >= touch.lastAlert.ts) touch.lastAlert = r;
      }
      const prev = touch.latest.get(r.metric);
      if (!prev || newer(r, batch.epoch, prev)) touch.latest.set(r.metric, { epoch: batch.epoch, reading: r });
    }
  }
  return out;
}
