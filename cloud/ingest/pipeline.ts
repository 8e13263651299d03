/**
 * IngestPipeline: one path for every way data reaches the cloud (HTTP ingest, Event Hubs). It
 * validates the envelope (400 when it is bad: nothing is stored), validates each message on its own
 * (a bad one is rejected and quarantined, the others go on), removes what is already stored by
 * batch id and by reading identity, applies the quality expectations, and lands the batch durably —
 * staging row, identity index, twin state and batch quality in one fsynced SQLite transaction —
 * before it returns. Parquet is written later from staging by the LakehouseWriter.
 */
import { isUtf8 } from 'node:buffer';
import { checkEnvelope } from '../../common/ingest-envelope.js';
import { EdgetwinError, ErrorCodes, isEdgetwinError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { counter, type Registry } from '../../common/metrics.js';
import { checkMessage, type ReportedMessage, type TelemetryBatch } from '../../common/record.js';
import type { SqliteDb } from '../../common/sqlite.js';
import { requireSite } from '../auth/authenticator.js';
import type { Principal } from '../auth/tokens.js';
import type { CloudEvents } from '../events.js';
import type { StagingExtra, StagingStore } from '../lakehouse/staging.js';
import type { LatestReading, TwinStore } from '../twin-store.js';
import { qualityScore, type QualityRules, type QuarantineRow } from './quality.js';
import type { SeqIndex } from './seq-index.js';

export interface IngestInput {
  /** The envelope JSON as received (decompressed). */
  raw: Buffer;
  /** The parsed body, when the caller already parsed it. */
  body?: unknown;
  /** The body as it arrived on the wire, when that differs from `raw` (gzip), for the landing. */
  wire?: { encoding: 'gzip'; bytes: Buffer };
  /** Who sent it (HTTP); a site-scoped token may send only its site's batches. */
  principal?: Principal;
}

export interface BatchQuality {
  score: number | null;
  readings: number;
  passed: number;
  quarantined: number;
  rejected: number;
  duplicates: number;
}

export interface IngestResult {
  batchId: string;
  site: string;
  /** Readings newly stored in silver. */
  stored: number;
  duplicates: number;
  duplicateBatch: boolean;
  quarantined: number;
  rejected: { index: number; code: string; message: string }[];
  quality: BatchQuality;
}

export interface PipelineDeps {
  db: SqliteDb;
  twins: TwinStore;
  seq: SeqIndex;
  staging: StagingStore;
  quality: QualityRules;
  events: CloudEvents;
  registry: Registry;
  log: Logger;
  maxStagedBytes: number;
}

interface BatchRow {
  readings: number;
  passed: number;
  quarantined: number;
  rejected: number;
  duplicates: number;
  score: number | null;
}

interface DeviceTouch {
  stored: number;
  seen: boolean;
  latest: Map<string, LatestReading>;
  model: string | undefined;
}

export class IngestPipeline {
  private readonly selBatch;
  private readonly insBatch;
  private readonly mStored;
  private readonly mDuplicates;
  private readonly mRejected;
  private readonly mQuarantined;
  private readonly mBatches;

  constructor(private readonly d: PipelineDeps) {
    this.selBatch = d.db.prepare<[string], BatchRow>('SELECT readings, passed, quarantined, rejected, duplicates, score FROM batches WHERE batch_id = ?');
    this.insBatch = d.db.prepare('INSERT INTO batches (batch_id, site, received, readings, passed, quarantined, rejected, duplicates, score) VALUES (?,?,?,?,?,?,?,?,?)');
    this.mStored = counter(d.registry, 'edgetwin_cloud_ingested_readings_total', 'Readings stored (new)');
    this.mDuplicates = counter(d.registry, 'edgetwin_cloud_duplicate_readings_total', 'Readings already stored (dropped as duplicates)');
    this.mRejected = counter(d.registry, 'edgetwin_cloud_rejected_total', 'Rejected messages or requests', ['code']);
    this.mQuarantined = counter(d.registry, 'edgetwin_cloud_quarantined_readings_total', 'Readings sent to quarantine, by reason', ['reason']);
    this.mBatches = counter(d.registry, 'edgetwin_cloud_ingest_batches_total', 'Ingest batches, by outcome', ['outcome']);
  }

  /** Counts a refusal that happened before the pipeline (auth, body parsing) under the same metric. */
  countRejected(code: string): void {
    this.mRejected.inc({ code });
  }

  ingest(input: IngestInput): IngestResult {
    try {
      return this.run(input);
    } catch (err) {
      this.mRejected.inc({ code: isEdgetwinError(err) ? err.code : ErrorCodes.INTERNAL });
      throw err;
    }
  }

  private run(input: IngestInput): IngestResult {
    let body = input.body;
    if (body === undefined) {
      try {
        body = JSON.parse(input.raw.toString('utf8'));
      } catch (cause) {
        throw new EdgetwinError(ErrorCodes.BAD_REQUEST, 'body is not valid JSON', { cause });
      }
    }
    const env = checkEnvelope(body);
    if (input.principal) requireSite(input.principal, env.site);
    // Parquet and DuckDB need valid UTF-8; JSON.parse would have silently replaced bad bytes.
    if (!isUtf8(input.raw)) throw new EdgetwinError(ErrorCodes.BAD_REQUEST, 'body is not valid UTF-8');

    const telemetry: { index: number; batch: TelemetryBatch }[] = [];
    const reported: ReportedMessage[] = [];
    const rejected: IngestResult['rejected'] = [];
    const drop: [number, number][] = [];
    const quarantine: QuarantineRow[] = [];
    let rejectedReadings = 0;
    env.messages.forEach((m, index) => {
      try {
        const msg = checkMessage(m);
        if (msg.kind === 'telemetry') telemetry.push({ index, batch: msg.batch });
        else reported.push(msg.reported);
      } catch (err) {
        const e = isEdgetwinError(err) ? err : new EdgetwinError(ErrorCodes.BAD_PAYLOAD, String(err));
        rejected.push({ index, code: e.code, message: e.message });
        const rows = this.d.quality.salvage(m, e.message);
        rejectedReadings += rows.length;
        quarantine.push(...rows);
        drop.push([index, -1]);
      }
    });

    const existing = this.selBatch.get(env.batchId);
    if (existing) return this.duplicateBatch(env.batchId, env.site, telemetry, existing);
    if (this.d.staging.pendingBytes > this.d.maxStagedBytes) {
      throw new EdgetwinError(ErrorCodes.STORE_FULL, 'the lakehouse writer is behind; retry later', { details: { retryAfterS: 1 } });
    }

    const now = Date.now();
    const seqTxn = this.d.seq.begin();
    const devices = new Map<string, DeviceTouch>();
    const alerts: { device: string; epoch: number; r: TelemetryBatch['readings'][number] }[] = [];
    let stored = 0;
    let duplicates = 0;
    let readings = 0;
    const quality = this.d.quality;
    for (const { index, batch } of telemetry) {
      const ranges = seqTxn.get(batch.device, batch.epoch);
      let touch = devices.get(batch.device);
      if (!touch) devices.set(batch.device, (touch = { stored: 0, seen: false, latest: new Map(), model: undefined }));
      const rs = batch.readings;
      readings += rs.length;
      for (let j = 0; j < rs.length; j++) {
        const r = rs[j]!;
        if (ranges.has(r.seq)) {
          duplicates++;
          drop.push([index, j]);
          continue;
        }
        ranges.add(r.seq);
        touch.seen = true;
        const bad = quality.check(r, now);
        if (bad) {
          quarantine.push(quality.row(batch.device, batch.epoch, r, bad.reason, bad.detail));
          drop.push([index, j]);
          continue;
        }
        stored++;
        touch.stored++;
        if (r.model !== undefined) touch.model = r.model;
        if (r.alert) alerts.push({ device: batch.device, epoch: batch.epoch, r });
        const prev = touch.latest.get(r.metric);
        if (!prev || r.ts > prev.reading.ts || (r.ts === prev.reading.ts && (batch.epoch > prev.epoch || (batch.epoch === prev.epoch && r.seq > prev.reading.seq)))) {
          touch.latest.set(r.metric, { epoch: batch.epoch, reading: r });
        }
      }
    }
    const quarantined = quarantine.length - rejectedReadings;
    const q: BatchQuality = { score: qualityScore(stored, quarantine.length), readings: readings + rejectedReadings, passed: stored, quarantined, rejected: rejectedReadings, duplicates };
    const extra: StagingExtra | null = drop.length > 0 || quarantine.length > 0 ? { drop, quarantine } : null;

    const changedReported: ReportedMessage[] = [];
    let stagingId = 0;
    this.d.db.transaction(() => {
      for (const [device, t] of devices) {
        if (t.seen) this.d.twins.applyTelemetry(device, env.site, now, t.stored, t.latest.values(), t.model);
      }
      for (const m of reported) if (this.d.twins.applyReported(env.site, m, now)) changedReported.push(m);
      seqTxn.persist();
      stagingId = this.d.staging.insert(env.site, env.batchId, now, input.wire ?? { encoding: 'identity', bytes: input.raw }, input.raw.length, extra);
      this.insBatch.run(env.batchId, env.site, now, q.readings, q.passed, q.quarantined, q.rejected, q.duplicates, q.score);
    })();
    seqTxn.install();
    this.d.staging.remember({ id: stagingId, site: env.site, batchId: env.batchId, received: now, body: input.raw, extra });

    this.mBatches.inc({ outcome: 'stored' });
    this.mStored.inc(stored);
    this.mDuplicates.inc(duplicates);
    for (const r of rejected) this.mRejected.inc({ code: r.code });
    for (const row of quarantine) this.mQuarantined.inc({ reason: row.reason });
    if (rejected.length > 0) this.d.log.warn({ batchId: env.batchId, site: env.site, rejected: rejected.slice(0, 5) }, 'ingest rejected messages');
    this.publish(env.site, now, devices, alerts, changedReported);
    return { batchId: env.batchId, site: env.site, stored, duplicates, duplicateBatch: false, quarantined, rejected, quality: q };
  }

  private duplicateBatch(batchId: string, site: string, telemetry: { batch: TelemetryBatch }[], row: BatchRow): IngestResult {
    const duplicates = telemetry.reduce((n, t) => n + t.batch.readings.length, 0);
    this.mBatches.inc({ outcome: 'duplicate' });
    this.mDuplicates.inc(duplicates);
    return {
      batchId,
      site,
      stored: 0,
      duplicates,
      duplicateBatch: true,
      quarantined: 0,
      rejected: [],
      quality: { score: row.score, readings: row.readings, passed: row.passed, quarantined: row.quarantined, rejected: row.rejected, duplicates: row.duplicates },
    };
  }

  private publish(site: string, now: number, devices: Map<string, DeviceTouch>, alerts: { device: string; epoch: number; r: TelemetryBatch['readings'][number] }[], reported: ReportedMessage[]): void {
    const ev = this.d.events;
    if (!ev.active) return;
    const lastSeen = new Date(now).toISOString();
    for (const [device, t] of devices) {
      if (!t.seen) continue;
      const latest: Record<string, unknown> = {};
      for (const [metric, { reading: r }] of t.latest) latest[metric] = { value: r.value, unit: r.unit, ts: new Date(r.ts).toISOString(), ...(r.score === undefined ? {} : { score: r.score }) };
      ev.publish('twin', site, device, { lastSeen, added: t.stored, latest });
    }
    for (const { device, epoch, r } of alerts) {
      ev.publish('anomaly', site, device, { metric: r.metric, ts: new Date(r.ts).toISOString(), value: r.value, unit: r.unit, score: r.score ?? null, model: r.model ?? null, epoch, seq: r.seq });
    }
    for (const m of reported) ev.publish('reported', site, m.device, { version: m.version ?? null, patch: m.patch });
  }
}
