/**
 * TwinStore: the consolidated state of every device in SQLite, for fast point reads — newest
 * reading per metric, reported and desired properties with their versions, when desired was
 * applied, last seen, health and anomaly state. The lakehouse holds the history; this holds now.
 *
 * Writes from ingest run inside the ingest transaction (IngestPipeline); operator writes
 * (desired, tags) run in their own transaction together with their audit entry.
 */
import { isPlainObject, type JsonObject } from '../common/config.js';
import { EdgetwinError, ErrorCodes } from '../common/errors.js';
import { jsonEqual, mergePatch } from '../common/merge-patch.js';
import type { Reading, ReportedMessage } from '../common/record.js';
import type { MetaStore, SqliteDb } from '../common/sqlite.js';
import { checkTwinDocument } from '../common/twin-protocol.js';
import type { AuditLog } from './audit-log.js';
import type { Principal } from './auth/tokens.js';
import type { CloudTwinsConfig } from './config.js';

export interface ReportedMetric {
  value: number;
  unit: string;
  ts: string;
  seq: number;
  epoch: number;
  score?: number;
  alert?: boolean;
  model?: string;
}

export type Health = 'online' | 'stale' | 'offline';

export interface TwinView {
  deviceId: string;
  site: string;
  deviceType: string | null;
  tags: Record<string, string>;
  firstSeen: string;
  lastSeen: string;
  readings: number;
  health: { status: Health; lastSeenAgeMs: number; reported?: unknown };
  model: string | null;
  anomaly: { anomalous: boolean; score: number | null; metric: string | null; ts: string | null };
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

export interface DesiredChange {
  device: string;
  desired: JsonObject;
  version: number;
  cursor: number;
}

/** The newest reading of one metric in a batch, as ingest hands it over. */
export interface LatestReading {
  epoch: number;
  reading: Reading;
}

interface TwinRow {
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
  model: string | null;
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
  alert: number;
  model: string | null;
}

const iso = (ms: number): string => new Date(ms).toISOString();
const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms));
export const TAG_KEY = /^[A-Za-z0-9_-]{1,64}$/;
const DESIRED_CURSOR = 'desired_cursor';

/** The entity tags of an If-Match header (`*`, `"5"`, `W/"5"`, or a list). */
function ifMatchTags(header: string): string[] {
  return header.split(',').map((t) => t.trim().replace(/^W\//, '').replace(/^"(.*)"$/, '$1')).filter(Boolean);
}

/** Twins kept built for point reads; any write to a twin drops its entry. */
const CACHE_MAX = 50_000;

export class TwinStore {
  private readonly cache = new Map<string, { view: TwinView; lastSeen: number; reportedHealth: unknown }>();
  private readonly upTwin;
  private readonly upMetric;
  private readonly upAnomaly;
  private readonly selTwin;
  private readonly selMetrics;
  private readonly upReported;

  constructor(
    readonly db: SqliteDb,
    private readonly meta: MetaStore,
    private readonly audit: AuditLog,
    private readonly cfg: CloudTwinsConfig,
  ) {
    this.upTwin = db.prepare(`INSERT INTO twins (device, site, first_seen, last_seen, readings) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT(device) DO UPDATE SET site = excluded.site, last_seen = max(last_seen, excluded.last_seen), readings = readings + excluded.readings`);
    // Reported state is the newest reading per metric by sample time, then by identity; a late
    // backlog batch never overwrites a fresher value.
    this.upMetric = db.prepare(`INSERT INTO twin_metrics (device, metric, value, unit, ts, epoch, seq, score, alert, model) VALUES (?,?,?,?,?,?,?,?,?,?)
      ON CONFLICT(device, metric) DO UPDATE SET value = excluded.value, unit = excluded.unit, ts = excluded.ts,
        epoch = excluded.epoch, seq = excluded.seq, score = excluded.score, alert = excluded.alert, model = excluded.model
      WHERE (excluded.ts, excluded.epoch, excluded.seq) > (twin_metrics.ts, twin_metrics.epoch, twin_metrics.seq)`);
    // "Anomalous now": the newest reading of some metric carries an alert; the score is the highest
    // current score over the device's metrics.
    this.upAnomaly = db.prepare(`UPDATE twins SET
        anomalous = coalesce((SELECT max(alert) FROM twin_metrics WHERE device = @device), 0),
        anomaly_score = (SELECT max(score) FROM twin_metrics WHERE device = @device),
        anomaly_metric = (SELECT metric FROM twin_metrics WHERE device = @device AND score IS NOT NULL ORDER BY score DESC, metric LIMIT 1),
        anomaly_ts = (SELECT ts FROM twin_metrics WHERE device = @device AND score IS NOT NULL ORDER BY score DESC, metric LIMIT 1),
        model = coalesce(@model, model)
      WHERE device = @device`);
    this.selTwin = db.prepare<[string], TwinRow>('SELECT * FROM twins WHERE device = ?');
    this.selMetrics = db.prepare<[string], MetricRow>('SELECT * FROM twin_metrics WHERE device = ? ORDER BY metric');
    this.upReported = db.prepare(`UPDATE twins SET reported = @doc, reported_version = @version, reported_at = @ts,
        applied_version = CASE WHEN @newApplied THEN @applied ELSE applied_version END, applied_at = CASE WHEN @newApplied THEN @ts ELSE applied_at END
      WHERE device = @device`);
  }

  // ---- ingest side (called inside the ingest transaction) ----

  /** Records new telemetry of one device: counts, last seen, newest value per metric, anomaly state. */
  applyTelemetry(device: string, site: string, now: number, stored: number, latest: Iterable<LatestReading>, model: string | undefined): void {
    this.cache.delete(device);
    this.upTwin.run(device, site, now, now, stored);
    for (const { epoch, reading: r } of latest) {
      this.upMetric.run(device, r.metric, r.value, r.unit, r.ts, epoch, r.seq, r.score ?? null, r.alert ? 1 : 0, r.model ?? null);
    }
    this.upAnomaly.run({ device, model: model ?? null });
  }

  /**
   * Merges a reported-properties patch. A patch the twin already has (same or older collector
   * version, not newer in time: a retried batch) is skipped. Returns whether the twin changed.
   */
  applyReported(site: string, m: ReportedMessage, now: number): boolean {
    this.cache.delete(m.device);
    this.upTwin.run(m.device, site, now, now, 0);
    const row = this.selTwin.get(m.device)!;
    if (m.version !== undefined && m.version <= row.reported_version && row.reported_at !== null && m.ts <= row.reported_at) return false;
    const doc = mergePatch(JSON.parse(row.reported) as JsonObject, m.patch) as JsonObject;
    const applied = isPlainObject(doc['applied']) ? doc['applied'] : undefined;
    const appliedVersion = applied ? (applied['desiredVersion'] ?? applied['version']) : undefined;
    const newApplied = Number.isSafeInteger(appliedVersion) && appliedVersion !== row.applied_version;
    this.upReported.run({
      doc: JSON.stringify(doc),
      version: m.version ?? row.reported_version + 1,
      ts: m.ts,
      newApplied: newApplied ? 1 : 0,
      applied: newApplied ? (appliedVersion as number) : null,
      device: m.device,
    });
    return true;
  }

  // ---- operator writes ----

  private checkIfMatch(row: TwinRow, ifMatch: string | undefined): void {
    if (ifMatch === undefined) {
      throw new EdgetwinError(ErrorCodes.PRECONDITION_REQUIRED, 'this write needs If-Match: the twin\'s ETag (from GET /v1/twins/{id}), or *');
    }
    const tags = ifMatchTags(ifMatch);
    if (!tags.includes('*') && !tags.includes(String(row.version))) {
      throw new EdgetwinError(ErrorCodes.PRECONDITION_FAILED, `ETag ${ifMatch} is stale: the twin is at "${row.version}"; re-read it and retry`, {
        details: { etag: `"${row.version}"` },
      });
    }
  }

  private writable(device: string, who: Principal): TwinRow {
    this.cache.delete(device);
    const row = this.selTwin.get(device);
    if (!row) throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no twin for device ${device}`);
    if (who.site !== null && who.site !== row.site) throw new EdgetwinError(ErrorCodes.FORBIDDEN, `token is scoped to site ${who.site}, not ${row.site}`);
    return row;
  }

  /** Merges a desired patch (JSON Merge Patch), bumps the desired and twin versions, audits it. */
  patchDesired(device: string, patch: unknown, ifMatch: string | undefined, who: Principal): { twin: TwinView; changed: boolean; version: number; site: string } {
    return this.db.transaction(() => {
      const row = this.writable(device, who);
      this.checkIfMatch(row, ifMatch);
      checkTwinDocument(patch, this.cfg.desiredMaxBytes, 'desired patch');
      const before = JSON.parse(row.desired) as JsonObject;
      const after = mergePatch(before, patch) as JsonObject;
      checkTwinDocument(after, this.cfg.desiredMaxBytes, 'desired document');
      if (jsonEqual(before, after)) return { twin: this.view(row), changed: false, version: row.desired_version, site: row.site };
      const cursor = this.meta.get(DESIRED_CURSOR) + 1;
      this.meta.set(DESIRED_CURSOR, cursor);
      const now = Date.now();
      this.db
        .prepare('UPDATE twins SET desired = ?, desired_version = desired_version + 1, desired_cursor = ?, desired_at = ?, version = version + 1 WHERE device = ?')
        .run(JSON.stringify(after), cursor, now, device);
      this.audit.record(who, 'twin.desired.patch', { device, site: row.site }, { patch, fromVersion: row.desired_version, toVersion: row.desired_version + 1 }, now);
      const updated = this.selTwin.get(device)!;
      return { twin: this.view(updated), changed: true, version: updated.desired_version, site: row.site };
    })();
  }

  /** Sets the operator-owned descriptive fields: device type and tags (merge patch; null removes). */
  patchTwin(device: string, body: { deviceType?: string | null; tags?: Record<string, string | null> }, ifMatch: string | undefined, who: Principal): TwinView {
    return this.db.transaction(() => {
      const row = this.writable(device, who);
      this.checkIfMatch(row, ifMatch);
      const tags = body.tags === undefined ? (JSON.parse(row.tags) as JsonObject) : (mergePatch(JSON.parse(row.tags), body.tags) as JsonObject);
      const type = body.deviceType === undefined ? row.device_type : body.deviceType;
      this.db.prepare('UPDATE twins SET tags = ?, device_type = ?, version = version + 1 WHERE device = ?').run(JSON.stringify(tags), type, device);
      this.audit.record(who, 'twin.patch', { device, site: row.site }, { ...body, fromVersion: row.version, toVersion: row.version + 1 });
      return this.view(this.selTwin.get(device)!);
    })();
  }

  // ---- reads ----

  private view(t: TwinRow, metrics: MetricRow[] = this.selMetrics.all(t.device), now = Date.now()): TwinView {
    const reported: Record<string, ReportedMetric> = {};
    for (const m of metrics) {
      const r: ReportedMetric = { value: m.value, unit: m.unit, ts: iso(m.ts), seq: m.seq, epoch: m.epoch };
      if (m.score !== null) r.score = m.score;
      if (m.alert) r.alert = true;
      if (m.model !== null) r.model = m.model;
      reported[m.metric] = r;
    }
    const props = JSON.parse(t.reported) as JsonObject;
    const desired = JSON.parse(t.desired) as JsonObject;
    const versions = isPlainObject(props['versions']) ? props['versions'] : {};
    const reportedType = typeof props['deviceType'] === 'string' ? props['deviceType'] : null;
    return {
      deviceId: t.device,
      site: t.site,
      deviceType: t.device_type ?? reportedType,
      tags: JSON.parse(t.tags) as Record<string, string>,
      firstSeen: iso(t.first_seen),
      lastSeen: iso(t.last_seen),
      readings: t.readings,
      health: this.health(t.last_seen, props['health'], now),
      model: t.model ?? (typeof versions['model'] === 'string' ? versions['model'] : null),
      anomaly: { anomalous: t.anomalous === 1, score: t.anomaly_score, metric: t.anomaly_metric, ts: isoOrNull(t.anomaly_ts) },
      reported,
      reportedProperties: { ...props, $version: t.reported_version, $lastUpdated: isoOrNull(t.reported_at) },
      desired: { ...desired, $version: t.desired_version, $lastUpdated: isoOrNull(t.desired_at) },
      applied: t.applied_version === null ? null : { version: t.applied_version, at: isoOrNull(t.applied_at), inSync: t.applied_version >= t.desired_version },
      $version: t.version,
      etag: `"${t.version}"`,
    };
  }

  getTwin(device: string): TwinView | undefined {
    const now = Date.now();
    let hit = this.cache.get(device);
    if (!hit) {
      const t = this.selTwin.get(device);
      if (!t) return undefined;
      const view = this.view(t, this.selMetrics.all(t.device), now);
      hit = { view, lastSeen: t.last_seen, reportedHealth: view.health.reported };
      if (this.cache.size >= CACHE_MAX) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(device, hit);
    }
    // Health depends on the clock, so it is computed at every read.
    return { ...hit.view, health: this.health(hit.lastSeen, hit.reportedHealth, now) };
  }

  private health(lastSeen: number, reported: unknown, now: number): TwinView['health'] {
    const age = now - lastSeen;
    const status: Health = age > this.cfg.offlineAfterMs ? 'offline' : age > this.cfg.staleAfterMs ? 'stale' : 'online';
    return { status, lastSeenAgeMs: age, ...(reported === undefined ? {} : { reported }) };
  }

  siteOf(device: string): string | undefined {
    return this.selTwin.get(device)?.site;
  }

  listTwins(f: TwinFilter): { items: TwinView[]; next: string | null } {
    const where: string[] = [];
    const args: (string | number)[] = [];
    const add = (sql: string, ...a: (string | number)[]): void => {
      where.push(sql);
      args.push(...a);
    };
    if (f.site !== undefined) add('site = ?', f.site);
    if (f.type !== undefined) add("coalesce(device_type, json_extract(reported, '$.deviceType')) = ?", f.type);
    for (const tag of f.tags ?? []) {
      const i = tag.indexOf(':');
      const k = i < 0 ? tag : tag.slice(0, i);
      if (!TAG_KEY.test(k)) throw new EdgetwinError(ErrorCodes.BAD_REQUEST, `tag filter "${tag}": key must match ${TAG_KEY.source}`);
      if (i < 0) add('json_type(tags, ?) IS NOT NULL', `$."${k}"`);
      else add('json_extract(tags, ?) = ?', `$."${k}"`, tag.slice(i + 1));
    }
    if (f.anomalous !== undefined) add('anomalous = ?', f.anomalous ? 1 : 0);
    if (f.lastSeenBefore !== undefined) add('last_seen < ?', f.lastSeenBefore);
    if (f.lastSeenAfter !== undefined) add('last_seen > ?', f.lastSeenAfter);
    if (f.after !== undefined) add('device > ?', f.after);
    const rows = this.db.prepare(`SELECT * FROM twins ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY device LIMIT ?`).all(...args, f.limit + 1) as TwinRow[];
    const page = rows.slice(0, f.limit);
    const metrics = page.length
      ? (this.db.prepare('SELECT * FROM twin_metrics WHERE device IN (SELECT value FROM json_each(?)) ORDER BY device, metric').all(JSON.stringify(page.map((r) => r.device))) as MetricRow[])
      : [];
    const byDevice = new Map<string, MetricRow[]>();
    for (const m of metrics) {
      const list = byDevice.get(m.device);
      if (list) list.push(m);
      else byDevice.set(m.device, [m]);
    }
    const now = Date.now();
    return { items: page.map((t) => this.view(t, byDevice.get(t.device) ?? [], now)), next: rows.length > f.limit ? page[page.length - 1]!.device : null };
  }

  sites(site?: string): SiteSummary[] {
    const rows = this.db
      .prepare(`SELECT site, count(*) AS devices, sum(anomalous) AS anomalous, sum(readings) AS readings, max(last_seen) AS last_seen FROM twins
        ${site === undefined ? '' : 'WHERE site = ?'} GROUP BY site ORDER BY site`)
      .all(...(site === undefined ? [] : [site])) as { site: string; devices: number; anomalous: number; readings: number; last_seen: number }[];
    return rows.map((r) => ({ site: r.site, devices: r.devices, anomalous: r.anomalous, readings: r.readings, lastSeen: iso(r.last_seen) }));
  }

  /** Full desired documents of a site's devices whose desired state changed after `since`, oldest change first. */
  desiredFeed(site: string, since: number, limit: number): { items: DesiredChange[]; next: number } {
    const rows = this.db
      .prepare('SELECT device, desired, desired_version, desired_cursor FROM twins WHERE site = ? AND desired_cursor > ? ORDER BY desired_cursor LIMIT ?')
      .all(site, since, limit) as { device: string; desired: string; desired_version: number; desired_cursor: number }[];
    const items = rows.map((r) => ({ device: r.device, desired: JSON.parse(r.desired) as JsonObject, version: r.desired_version, cursor: r.desired_cursor }));
    return { items, next: items.length ? items[items.length - 1]!.cursor : since };
  }
}
