/**
 * IngestPipeline: one path for every way data reaches the cloud (HTTP ingest, Event Hubs). It
 * validates the envelope (400 when it is bad: nothing is stored), validates each message on its own
 * (sort-messages.ts: a bad one is rejected and quarantined, the others go on), removes what is
 * already stored by batch id and by reading identity, applies the quality expectations
 * (batch-readings.ts), and lands the batch durably — batch id, identity index, twin state,
 * change-feed rows (batch-changes.ts) and staging row in one store transaction (fsynced SQLite, or
 * PostgreSQL) — before it returns. Parquet is written later from staging by the LakehouseWriter.
 *
 * Exactly once across replicas: the batch id is claimed first (`INSERT … ON CONFLICT DO NOTHING`:
 * a concurrent copy waits for it, then sees it), and the identity ranges are read with row locks
 * inside the transaction, so the database — not a replica's memory — decides what is new.
 */
import { isUtf8 } from 'node:buffer';
import { checkEnvelope } from '../../common/wire/ingest-envelope.js';
import { EdgetwinError, ErrorCodes, isEdgetwinError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { counter, type Registry } from '../../common/metrics.js';
import type { ReportedMessage } from '../../common/wire/record.js';
import { badValue, isWellFormed } from '../../common/wire/storable.js';
import type { StagingExtra, StagingStore } from '../lakehouse/staging.js';
import type { Queryable, Store, Tx } from '../store/store.js';
import type { DeviceOwnership } from '../twins/ownership.js';
import { countQuarantine, type MetricCap } from '../twins/twin-limits.js';
import type { TwinStore } from '../twins/twin-store.js';
import { emitBatchChanges } from './batch-changes.js';
import { newMetricNames, sortReadings } from './batch-readings.js';
import { devicesOf, splitByOwner, type Refusal, type Sent } from './claims.js';
import { DerivedReadings, type DerivedStores } from './derived-readings.js';
import { qualityScore, type QualityRules, type QuarantineRow } from './quality.js';
import type { BatchRow } from './quality-report.js';
import type { SeqIndex } from './seq-index.js';
import { sortMessages, type SortedMessages } from './sort-messages.js';

export interface IngestInput {
  /** The envelope JSON as received (decompressed). */
  raw: Buffer;
  /** The parsed body, when the caller already parsed it. */
  body?: unknown;
  /** The body as it arrived on the wire, when that differs from `raw` (gzip), for the landing. */
  wire?: { encoding: 'gzip'; bytes: Buffer };
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
  store: Store;
  twins: TwinStore;
  /** Which site owns which device: claimed inside each batch's transaction (board decision D1). */
  ownership: DeviceOwnership;
  seq: SeqIndex;
  staging: StagingStore;
  quality: QualityRules;
  registry: Registry;
  log: Logger;
  maxStagedBytes: number;
  /** Largest reported patch (JSON bytes) a message may carry; IoT Hub's limit is 32 KiB. */
  reportedMaxBytes?: number;
  /** Where predictions and drift histograms go (readings with a `kind`, derived-readings.ts); without it they count as measurements. */
  derived?: DerivedStores;
  /** `limits.metricsPerDevice` held per device across every collector (twin-limits.ts); without it, no cap. */
  metricCap?: MetricCap;
}

type Landed =
  | { duplicate: BatchRow }
  | { stored: number; duplicates: number; quarantined: number; q: BatchQuality; quarantine: QuarantineRow[]; claimed: Refusal[] };

export class IngestPipeline {
  private readonly mStored;
  private readonly mDuplicates;
  private readonly mRejected;
  private readonly mQuarantined;
  private readonly mBatches;

  constructor(private readonly d: PipelineDeps) {
    this.mStored = counter(d.registry, 'edgetwin_cloud_ingested_readings_total', 'Readings stored (new)');
    this.mDuplicates = counter(d.registry, 'edgetwin_cloud_duplicate_readings_total', 'Readings already stored (dropped as duplicates)');
    this.mRejected = counter(d.registry, 'edgetwin_cloud_rejected_total', 'Rejected messages or requests', ['code']);
    this.mQuarantined = counter(d.registry, 'edgetwin_cloud_quarantined_readings_total', 'Readings sent to quarantine, by reason', [
      'reason',
    ]);
    this.mBatches = counter(d.registry, 'edgetwin_cloud_ingest_batches_total', 'Ingest batches, by outcome', ['outcome']);
  }

  /** Counts a refusal that happened before the pipeline (auth, body parsing) under the same metric. */
  countRejected(code: string): void {
    this.mRejected.inc({ code });
  }

  async ingest(input: IngestInput): Promise<IngestResult> {
    try {
      return await this.run(input);
    } catch (err) {
      this.mRejected.inc({ code: isEdgetwinError(err) ? err.code : ErrorCodes.INTERNAL });
      throw err;
    }
  }

  private async run(input: IngestInput): Promise<IngestResult> {
    let body = input.body;
    if (body === undefined) {
      try {
        body = JSON.parse(input.raw.toString('utf8'));
      } catch (cause) {
        throw new EdgetwinError(ErrorCodes.BAD_REQUEST, 'body is not valid JSON', { cause });
      }
    }
    // Whether the sender may send for env.site is the route's to check (cloud/auth/site-policy.ts).
    const env = checkEnvelope(body);
    // Parquet and DuckDB need valid UTF-8; JSON.parse would have silently replaced bad bytes.
    if (!isUtf8(input.raw)) throw new EdgetwinError(ErrorCodes.BAD_REQUEST, 'body is not valid UTF-8');
    // DuckDB parses the whole staged body: a lone surrogate outside the messages would fail every flush.
    if (!isWellFormed(env.batchId)) throw badValue('batchId is not well-formed Unicode', '/batchId');

    const sorted = sortMessages(env.messages, this.d.quality, this.d.reportedMaxBytes);
    const { sent, rejected } = sorted;
    const existing = await this.batchRow(this.d.store, env.batchId);
    if (existing) return this.duplicateBatch(env, sent, rejected, existing);
    if (this.d.staging.pendingBytes > this.d.maxStagedBytes) {
      throw new EdgetwinError(ErrorCodes.STORE_FULL, 'the lakehouse writer is behind; retry later', { details: { retryAfterS: 1 } });
    }
    const landed = await this.d.store.tx((tx) => this.land(tx, env, input, sorted));
    if ('duplicate' in landed) return this.duplicateBatch(env, sent, rejected, landed.duplicate);
    const { stored, duplicates, quarantined, q } = landed;
    const quarantineRows = landed.quarantine;
    if (landed.claimed.length > 0) {
      rejected.push(...landed.claimed);
      rejected.sort((a, b) => a.index - b.index);
    }

    this.mBatches.inc({ outcome: 'stored' });
    this.mStored.inc(stored);
    this.mDuplicates.inc(duplicates);
    for (const r of rejected) this.mRejected.inc({ code: r.code });
    for (const row of quarantineRows) this.mQuarantined.inc({ reason: row.reason });
    if (rejected.length > 0)
      this.d.log.warn({ batchId: env.batchId, site: env.site, rejected: rejected.slice(0, 5) }, 'ingest rejected messages');
    return { batchId: env.batchId, site: env.site, stored, duplicates, duplicateBatch: false, quarantined, rejected, quality: q };
  }

  /** Whether every reading of these messages is in the identity index (read under the same row locks as a landing). */
  private allStored(telemetry: Sent['telemetry']): Promise<boolean> {
    if (telemetry.length === 0) return Promise.resolve(true);
    return this.d.store.tx(async (tx) => {
      const seq = this.d.seq.begin(tx);
      await seq.load(telemetry.map((t) => t.batch));
      return telemetry.every(({ batch }) => {
        const ranges = seq.get(batch.device, batch.epoch);
        return batch.readings.every((r) => ranges.has(r.seq));
      });
    });
  }

  private batchRow(q: Queryable, batchId: string): Promise<BatchRow | undefined> {
    return q.get<BatchRow>('SELECT site, readings, passed, quarantined, rejected, duplicates, score FROM batches WHERE batch_id = ?', [
      batchId,
    ]);
  }

  /** The transaction of one batch; may run twice (PostgreSQL retries a deadlock), so it starts from copies. */
  private async land(
    tx: Tx,
    env: { batchId: string; site: string; messages: unknown[] },
    input: IngestInput,
    checked: SortedMessages,
  ): Promise<Landed> {
    const now = Date.now();
    // The batch id first: a copy of this batch landing on another replica waits here, then finds it.
    const claim = await tx.run('INSERT INTO batches (batch_id, site, received) VALUES (?, ?, ?) ON CONFLICT (batch_id) DO NOTHING', [
      env.batchId,
      env.site,
      now,
    ]);
    if (claim.changes === 0) return { duplicate: (await this.batchRow(tx, env.batchId))! };
    const sent = checked.sent;
    const drop = checked.drop.slice();
    // Ownership (board decision D1): devices nobody owns become this site's; messages for another
    // site's devices are refused, their readings kept in this site's quarantine.
    const own = splitByOwner(sent, env.site, await this.d.ownership.claim(tx, devicesOf(sent), env.site, now));
    const { telemetry, claimed } = own;
    const lost = new Set(sent.refused.filter((r) => !own.refused.includes(r)).map((r) => r.row));
    const quarantine = checked.quarantine.filter((row) => !lost.has(row));
    let rejectedReadings = checked.rejectedReadings;
    const refuse = (c: Refusal): void => {
      if (!drop.some(([i, j]) => i === c.index && j === -1)) drop.push([c.index, -1]);
      const rows = this.d.quality.salvage(env.messages[c.index], c.message, c.code);
      rejectedReadings += rows.length;
      quarantine.push(...rows);
    };
    claimed.forEach(refuse);
    // Reported patches first: one that would make the document too large is refused like a claimed message.
    const changedReported: ReportedMessage[] = [];
    for (const { index, reported: m } of own.reported) {
      const r = await this.d.twins.applyReported(tx, env.site, m, now);
      if (r === true) changedReported.push(m);
      else if (r !== false) {
        claimed.push({ index, code: r.code, message: r.message });
        refuse(claimed[claimed.length - 1]!);
      }
    }
    const seqTxn = this.d.seq.begin(tx);
    await seqTxn.load(telemetry.map((t) => t.batch));
    const derived = this.d.derived ? new DerivedReadings(this.d.derived) : undefined;
    const cap = this.d.metricCap;
    const overCap = cap ? { max: cap.max, names: new Map<string, ReadonlySet<string>>() } : undefined;
    // The twin rows are locked by the claim above: two batches of one device cannot both take the last room.
    if (cap && overCap)
      for (const [device, names] of newMetricNames(telemetry, seqTxn, derived !== undefined)) {
        const over = await cap.refused(tx, device, names);
        if (over.size > 0) overCap.names.set(device, over);
      }
    const { devices, alerts, stored, duplicates, readings } = sortReadings(telemetry, env.site, now, {
      seq: seqTxn,
      quality: this.d.quality,
      derived,
      drop,
      quarantine,
      overCap,
    });
    const quarantined = quarantine.length - rejectedReadings;
    const q: BatchQuality = {
      score: qualityScore(stored, quarantine.length),
      readings: readings + rejectedReadings,
      passed: stored,
      quarantined,
      rejected: rejectedReadings,
      duplicates,
    };
    const extra: StagingExtra | null = drop.length > 0 || quarantine.length > 0 ? { drop, quarantine } : null;

    // Twin rows in one order in every transaction (no lock cycles between replicas).
    const touched = [...devices].filter(([, t]) => t.seen).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    for (const [device, t] of touched)
      await this.d.twins.applyTelemetry(tx, device, env.site, now, t.stored, t.latest.values(), t.model, t.lastAlert);
    await seqTxn.persist();
    await tx.run(
      'UPDATE batches SET readings = ?, passed = ?, quarantined = ?, rejected = ?, duplicates = ?, score = ? WHERE batch_id = ?',
      [q.readings, q.passed, q.quarantined, q.rejected, q.duplicates, q.score, env.batchId],
    );
    emitBatchChanges(tx, env.site, now, touched, alerts, changedReported);
    // What went to quarantine shows on the owning site's twins (count, last reason, when).
    for (const c of await countQuarantine(tx, env.site, quarantine, now)) {
      this.d.twins.touch(tx, c.device);
      tx.emit({ type: 'twin', site: env.site, device: c.device, data: { quarantined: c.added, reason: c.reason } });
    }
    if (derived && !derived.empty) await derived.persist(tx, now);
    // Last: it takes the commit-order lock (tx.ordered), held until commit.
    const body = input.wire ?? { encoding: 'identity' as const, bytes: input.raw };
    const stagingId = await this.d.staging.insert(tx, env.site, env.batchId, now, body, input.raw.length, extra);
    tx.afterCommit(() => {
      seqTxn.install();
      if (cap) for (const [device, t] of touched) cap.learn(device, t.latest.keys());
      this.d.staging.remember({ id: stagingId, site: env.site, batchId: env.batchId, received: now, body: input.raw, extra });
    });
    return { stored, duplicates, quarantined, q, quarantine, claimed };
  }

  /**
   * A batch stored before (a retry, or its copy on another replica): nothing is stored again. Its
   * refusals are answered again — the first answer may never have reached the sender, and a
   * "duplicate" must not make a refused message look delivered. Only a true copy is a duplicate:
   * a batch id another site used, or one whose readings are not all stored (the id reused for
   * other data), is refused with EDGETWIN_ERR_CONFLICT — never `stored: 0` for data the cloud
   * does not have (the collector splits it under new batch ids).
   */
  private async duplicateBatch(
    env: { batchId: string; site: string },
    sent: Sent,
    rejected: Refusal[],
    row: BatchRow,
  ): Promise<IngestResult> {
    const { telemetry, claimed } = splitByOwner(sent, env.site, await this.d.ownership.owners(devicesOf(sent)));
    if (row.site !== env.site || !(await this.allStored(telemetry)))
      throw new EdgetwinError(
        ErrorCodes.CONFLICT,
        `batchId "${env.batchId}" was used before for other data: send this data under a new batchId`,
        {
          details: { batchId: env.batchId },
        },
      );
    const duplicates = telemetry.reduce((n, t) => n + t.batch.readings.length, 0);
    this.mBatches.inc({ outcome: 'duplicate' });
    this.mDuplicates.inc(duplicates);
    return {
      batchId: env.batchId,
      site: env.site,
      stored: 0,
      duplicates,
      duplicateBatch: true,
      quarantined: 0,
      rejected: [...rejected, ...claimed].sort((a, b) => a.index - b.index),
      quality: {
        score: row.score,
        readings: row.readings,
        passed: row.passed,
        quarantined: row.quarantined,
        rejected: row.rejected,
        duplicates: row.duplicates,
      },
    };
  }
}
