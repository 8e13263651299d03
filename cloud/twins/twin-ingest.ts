/**
 * The twin writes ingest makes, inside the ingest transaction: counts and last seen, the newest
 * reading per metric, the anomaly state and the device's reported properties. TwinStore calls
 * these after dropping the device's cached view (TwinStore.touch).
 */
import { isPlainObject, type JsonObject } from '../../common/config.js';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import { mergePatch } from '../../common/merge-patch.js';
import type { Reading, ReportedMessage } from '../../common/wire/record.js';
import type { Dialect } from '../store/dialect.js';
import type { Tx } from '../store/store.js';
import type { LatestReading, TwinRow } from './twin-view.js';

export class TwinIngestWrites {
  private readonly sqlUpTwin: string;
  // Reported state is the newest reading per metric by sample time, then by identity; a late
  // backlog batch never overwrites a fresher value.
  private readonly sqlUpMetric = `INSERT INTO twin_metrics (device, metric, value, unit, ts, epoch, seq, score, alert, model, explanation) VALUES (?,?,?,?,?,?,?,?,?,?,?)
      ON CONFLICT (device, metric) DO UPDATE SET value = excluded.value, unit = excluded.unit, ts = excluded.ts,
        epoch = excluded.epoch, seq = excluded.seq, score = excluded.score, alert = excluded.alert, model = excluded.model,
        explanation = excluded.explanation
      WHERE (excluded.ts, excluded.epoch, excluded.seq) > (twin_metrics.ts, twin_metrics.epoch, twin_metrics.seq)`;
  // "Anomalous now": the newest reading of some metric carries an alert; the score is the highest
  // current score over the device's metrics.
  private readonly sqlUpAnomaly = `UPDATE twins SET
        anomalous = coalesce((SELECT max(alert) FROM twin_metrics WHERE device = ?), 0),
        anomaly_score = (SELECT max(score) FROM twin_metrics WHERE device = ?),
        anomaly_metric = (SELECT metric FROM twin_metrics WHERE device = ? AND score IS NOT NULL ORDER BY score DESC, metric LIMIT 1),
        anomaly_ts = (SELECT ts FROM twin_metrics WHERE device = ? AND score IS NOT NULL ORDER BY score DESC, metric LIMIT 1),
        model = coalesce(?, model)
      WHERE device = ?`;

  constructor(dialect: Dialect) {
    // The owning site is set once, when the row is made (the claim, cloud/twins/ownership.ts), and
    // never by ingest (board decision D1): a conflict updates counts and times only.
    this.sqlUpTwin = `INSERT INTO twins (device, site, first_seen, last_seen, readings) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (device) DO UPDATE SET last_seen = ${dialect.greatest('twins.last_seen', 'excluded.last_seen')},
        readings = twins.readings + excluded.readings`;
  }

  /** Records new telemetry of one device: counts, last seen, newest value per metric, anomaly state, newest alert. */
  async telemetry(
    tx: Tx,
    device: string,
    site: string,
    now: number,
    stored: number,
    latest: Iterable<LatestReading>,
    model: string | undefined,
    lastAlert?: Reading,
  ): Promise<void> {
    await tx.run(this.sqlUpTwin, [device, site, now, now, stored]);
    for (const { epoch, reading: r } of latest) {
      const explain = r.explain ? JSON.stringify(r.explain) : null;
      await tx.run(this.sqlUpMetric, [
        device,
        r.metric,
        r.value,
        r.unit,
        r.ts,
        epoch,
        r.seq,
        r.score ?? null,
        r.alert ? 1 : 0,
        r.model ?? null,
        explain,
      ]);
    }
    await tx.run(this.sqlUpAnomaly, [device, device, device, device, model ?? null, device]);
    if (lastAlert) {
      const a = lastAlert;
      const doc = {
        metric: a.metric,
        ts: a.ts,
        value: a.value,
        score: a.score ?? null,
        model: a.model ?? null,
        explain: a.explain ?? null,
      };
      await tx.run(
        'UPDATE twins SET last_alert = ?, last_alert_ts = ? WHERE device = ? AND (last_alert_ts IS NULL OR last_alert_ts <= ?)',
        [JSON.stringify(doc), a.ts, device, a.ts],
      );
    }
  }

  /**
   * Merges a reported-properties patch. A patch the twin already has (same or older collector
   * version, not newer in time: a retried batch) is skipped. Returns whether the twin changed, or
   * the refusal of a patch that would make the document larger than `maxBytes` (IoT Hub's limit is
   * on the document, not each patch: many small patches with new keys must not grow it without end).
   */
  async reported(tx: Tx, site: string, m: ReportedMessage, now: number, maxBytes: number): Promise<boolean | EdgetwinError> {
    await tx.run(this.sqlUpTwin, [m.device, site, now, now, 0]);
    const row = (await tx.get<TwinRow>(`SELECT * FROM twins WHERE device = ?${tx.dialect.forUpdate}`, [m.device]))!;
    if (m.version !== undefined && m.version <= row.reported_version && row.reported_at !== null && m.ts <= row.reported_at) return false;
    const doc = mergePatch(JSON.parse(row.reported) as JsonObject, m.patch) as JsonObject;
    const text = JSON.stringify(doc);
    const bytes = Buffer.byteLength(text);
    // A document already over the limit (made before it held, or under a larger one) may still shrink.
    if (bytes > maxBytes && bytes > Buffer.byteLength(row.reported))
      return new EdgetwinError(
        ErrorCodes.LIMIT_EXCEEDED,
        `the reported document would be ${bytes} bytes, over twins.reportedMaxBytes (${maxBytes}): remove keys (null) before adding more`,
        { details: { bytes, max: maxBytes } },
      );
    const applied = isPlainObject(doc['applied']) ? doc['applied'] : undefined;
    const appliedVersion = applied ? (applied['desiredVersion'] ?? applied['version']) : undefined;
    const newApplied = Number.isSafeInteger(appliedVersion) && appliedVersion !== row.applied_version;
    await tx.run(
      `UPDATE twins SET reported = ?, reported_version = ?, reported_at = ?,
        applied_version = CASE WHEN ? = 1 THEN ? ELSE applied_version END, applied_at = CASE WHEN ? = 1 THEN ? ELSE applied_at END
      WHERE device = ?`,
      [
        text,
        m.version ?? row.reported_version + 1,
        m.ts,
        newApplied ? 1 : 0,
        newApplied ? (appliedVersion as number) : null,
        newApplied ? 1 : 0,
        m.ts,
        m.device,
      ],
    );
    return true;
  }
}
