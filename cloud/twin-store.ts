/**
 * TwinStore: the cloud's SQLite store for readings (deduplicated by identity) and the
 * consolidated twin state that operators read. Every ingest is one fsynced transaction, and the
 * HTTP 2xx is sent only after it commits.
 */
import { join } from 'node:path';
import type { Logger } from '../common/log.js';
import type { TelemetryBatch } from '../common/record.js';
import { openDatabase, type SqliteDb } from '../common/sqlite.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS readings (
  device TEXT NOT NULL, epoch INTEGER NOT NULL, seq INTEGER NOT NULL,
  ts INTEGER NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL, unit TEXT NOT NULL,
  score REAL, model TEXT, alert INTEGER, site TEXT NOT NULL, received INTEGER NOT NULL,
  PRIMARY KEY (device, epoch, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS twins (
  device TEXT PRIMARY KEY, site TEXT NOT NULL, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,
  readings INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS twin_metrics (
  device TEXT NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL, unit TEXT NOT NULL, ts INTEGER NOT NULL,
  epoch INTEGER NOT NULL, seq INTEGER NOT NULL, score REAL,
  PRIMARY KEY (device, metric)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (batch_id TEXT PRIMARY KEY, site TEXT NOT NULL, received INTEGER NOT NULL) WITHOUT ROWID;
`;

export interface ReportedMetric {
  value: number;
  unit: string;
  ts: string;
  seq: number;
  epoch: number;
  score?: number;
}

export interface TwinView {
  deviceId: string;
  site: string;
  firstSeen: string;
  lastSeen: string;
  readings: number;
  reported: Record<string, ReportedMetric>;
}

export interface IngestOutcome {
  stored: number;
  duplicates: number;
  duplicateBatch: boolean;
}

interface TwinRow {
  device: string;
  site: string;
  first_seen: number;
  last_seen: number;
  readings: number;
}

interface MetricRow {
  device: string;
  metric: string;
  value: number;
  unit: string;
  ts: number;
  epoch: number;
  seq: number;
  score: number | null;
}

const iso = (ms: number): string => new Date(ms).toISOString();

export class TwinStore {
  readonly db: SqliteDb;
  private readonly insReading;
  private readonly upTwin;
  private readonly upMetric;
  private readonly insBatch;
  private readonly ingestTx;

  constructor(stateDir: string, log?: Logger) {
    this.db = openDatabase({ path: join(stateDir, 'twins.db'), synchronous: 'full', log, schema: SCHEMA }).db;
    this.insReading = this.db.prepare(
      'INSERT OR IGNORE INTO readings (device, epoch, seq, ts, metric, value, unit, score, model, alert, site, received) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)',
    );
    this.upTwin = this.db.prepare(`INSERT INTO twins (device, site, first_seen, last_seen, readings) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT(device) DO UPDATE SET site = excluded.site, last_seen = max(last_seen, excluded.last_seen), readings = readings + excluded.readings`);
    // Reported state is the newest reading per metric by sample time, then by identity; a late
    // backlog batch never overwrites a fresher value.
    this.upMetric = this.db.prepare(`INSERT INTO twin_metrics (device, metric, value, unit, ts, epoch, seq, score) VALUES (?,?,?,?,?,?,?,?)
      ON CONFLICT(device, metric) DO UPDATE SET value = excluded.value, unit = excluded.unit, ts = excluded.ts,
        epoch = excluded.epoch, seq = excluded.seq, score = excluded.score
      WHERE (excluded.ts, excluded.epoch, excluded.seq) > (twin_metrics.ts, twin_metrics.epoch, twin_metrics.seq)`);
    this.insBatch = this.db.prepare('INSERT OR IGNORE INTO batches (batch_id, site, received) VALUES (?, ?, ?)');
    this.ingestTx = this.db.transaction((site: string, batchId: string | undefined, batches: TelemetryBatch[]) => this.ingestInTx(site, batchId, batches));
  }

  /** Stores batches idempotently in one transaction (by batch id, then by reading identity). */
  ingest(site: string, batchId: string | undefined, batches: TelemetryBatch[]): IngestOutcome {
    return this.ingestTx(site, batchId, batches);
  }

  private ingestInTx(site: string, batchId: string | undefined, batches: TelemetryBatch[]): IngestOutcome {
    const now = Date.now();
    if (batchId !== undefined && this.insBatch.run(batchId, site, now).changes === 0) {
      return { stored: 0, duplicates: batches.reduce((n, b) => n + b.readings.length, 0), duplicateBatch: true };
    }
    let stored = 0;
    let duplicates = 0;
    for (const b of batches) {
      let fresh = 0;
      const latest = new Map<string, TelemetryBatch['readings'][number]>();
      for (const r of b.readings) {
        const res = this.insReading.run(b.device, b.epoch, r.seq, r.ts, r.metric, r.value, r.unit, r.score ?? null, r.model ?? null, r.alert ? 1 : 0, site, now);
        if (res.changes === 0) {
          duplicates++;
          continue;
        }
        fresh++;
        const prev = latest.get(r.metric);
        if (!prev || r.ts > prev.ts || (r.ts === prev.ts && r.seq > prev.seq)) latest.set(r.metric, r);
      }
      stored += fresh;
      this.upTwin.run(b.device, site, now, now, fresh);
      for (const r of latest.values()) this.upMetric.run(b.device, r.metric, r.value, r.unit, r.ts, b.epoch, r.seq, r.score ?? null);
    }
    return { stored, duplicates, duplicateBatch: false };
  }

  private view(t: TwinRow, metrics: MetricRow[]): TwinView {
    const reported: Record<string, ReportedMetric> = {};
    for (const m of metrics) {
      reported[m.metric] = { value: m.value, unit: m.unit, ts: iso(m.ts), seq: m.seq, epoch: m.epoch, ...(m.score === null ? {} : { score: m.score }) };
    }
    return { deviceId: t.device, site: t.site, firstSeen: iso(t.first_seen), lastSeen: iso(t.last_seen), readings: t.readings, reported };
  }

  listTwins(): TwinView[] {
    const twins = this.db.prepare('SELECT * FROM twins ORDER BY device').all() as TwinRow[];
    const metrics = this.db.prepare('SELECT * FROM twin_metrics ORDER BY device, metric').all() as MetricRow[];
    const byDevice = new Map<string, MetricRow[]>();
    for (const m of metrics) {
      const list = byDevice.get(m.device) ?? [];
      list.push(m);
      byDevice.set(m.device, list);
    }
    return twins.map((t) => this.view(t, byDevice.get(t.device) ?? []));
  }

  getTwin(device: string): TwinView | undefined {
    const t = this.db.prepare('SELECT * FROM twins WHERE device = ?').get(device) as TwinRow | undefined;
    if (!t) return undefined;
    return this.view(t, this.db.prepare('SELECT * FROM twin_metrics WHERE device = ? ORDER BY metric').all(device) as MetricRow[]);
  }

  /** All stored identities of one device, in order — for verification tools and tests. */
  identities(device: string): { epoch: number; seq: number; metric: string; value: number }[] {
    return this.db.prepare('SELECT epoch, seq, metric, value FROM readings WHERE device = ? ORDER BY epoch, seq').all(device) as {
      epoch: number; seq: number; metric: string; value: number;
    }[];
  }

  close(): void {
    this.db.close();
  }
}
