/**
 * TwinStore: the consolidated state of every device in the cloud's store, for fast point reads —
 * newest reading per metric, reported and desired properties with their versions, when desired was
 * applied, last seen, health and anomaly state. The lakehouse holds the history; this holds now.
 *
 * Writes from ingest run inside the ingest transaction (IngestPipeline; the SQL is in
 * twin-ingest.ts); operator writes (desired, tags) run in their own transaction together with their
 * audit entry and change-feed row. Conditional writes (If-Match) re-read the row under a row lock:
 * the database decides, on any replica. Built views (twin-view.ts) are cached for point reads;
 * every twin write emits a change naming the device, and the change feed drops that device's entry
 * on every replica (`watch`). Filtered lists, site summaries and the desired feed are uncached
 * queries (twin-queries.ts).
 */
import type { JsonObject } from '../../common/config.js';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import { jsonEqual, mergePatch } from '../../common/merge-patch.js';
import type { DesiredFeedPage } from '../../common/wire/desired-feed.js';
import type { ReportedMessage } from '../../common/wire/record.js';
import { checkTwinDocument } from '../../common/wire/twin-protocol.js';
import type { ChangeFeed } from '../store/change-feed.js';
import { DeviceCache } from '../store/device-cache.js';
import { withTx, type Queryable, type Store, type Tx } from '../store/store.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Principal } from '../auth/tokens.js';
import type { CloudTwinsConfig } from '../config.js';
import { requireDevice } from '../auth/site-policy.js';
import { checkIfMatch } from './if-match.js';
import { TwinIngestWrites } from './twin-ingest.js';
import { desiredFeed, listTwins, siteSummaries } from './twin-queries.js';
import type { PredictionStore, PredictionView } from '../predictions/prediction-store.js';
import {
  METRIC_COLUMNS,
  twinHealth,
  twinView,
  type MetricRow,
  type SiteSummary,
  type TwinFilter,
  type TwinRow,
  type TwinView,
} from './twin-view.js';

export {
  TAG_KEY,
  type Health,
  type LastAlert,
  type LatestReading,
  type ReportedMetric,
  type SiteSummary,
  type TwinFilter,
  type TwinView,
} from './twin-view.js';

const DESIRED_CURSOR = 'desired_cursor';

/** A point read: the cached view, the health as of now, and the twin's `predictions` when asked for. */
export interface TwinParts {
  view: TwinView;
  health: TwinView['health'];
  predictions?: Readonly<Record<string, PredictionView>> | undefined;
}

/** Twins kept built for point reads; any write to a twin drops its entry. */

export class TwinStore {
  private readonly cache = new DeviceCache<{ view: TwinView; lastSeen: number; reportedHealth: unknown }>();
  private readonly ingestWrites: TwinIngestWrites;
  private readonly pointSqls: [string?, string?] = [];

  constructor(
    readonly store: Store,
    private readonly audit: AuditLog,
    private readonly cfg: CloudTwinsConfig,
  ) {
    this.ingestWrites = new TwinIngestWrites(store.dialect);
  }

  /** Drops cached views of devices other replicas (or this one) changed: call once with the cloud's change feed. */
  watch(feed: ChangeFeed): void {
    this.cache.watch(feed);
  }

  /** A write to `device` in `tx`: its cached view goes now and again once committed (a read may have raced the commit). */
  touch(tx: Tx, device: string): void {
    this.cache.touch(tx, device);
  }

  private row(q: Queryable, device: string, lock = false): Promise<TwinRow | undefined> {
    return q.get<TwinRow>(`SELECT * FROM twins WHERE device = ?${lock ? q.dialect.forUpdate : ''}`, [device]);
  }

  private metrics(q: Queryable, device: string): Promise<MetricRow[]> {
    return q.all<MetricRow>('SELECT * FROM twin_metrics WHERE device = ? ORDER BY metric', [device]);
  }

  private view(t: TwinRow, metrics: MetricRow[]): TwinView {
    return twinView(this.cfg, t, metrics);
  }

  // ---- ingest side (called inside the ingest transaction) ----

  /**
   * Records new telemetry of one device: counts, last seen, newest value per metric, anomaly state.
   * The parameters are TwinIngestWrites.telemetry's, passed on as they are: one signature to keep in step.
   */
  async applyTelemetry(...args: Parameters<TwinIngestWrites['telemetry']>): Promise<void> {
    const [tx, device] = args;
    this.touch(tx, device);
    await this.ingestWrites.telemetry(...args);
  }

  /** Merges a reported-properties patch (a retried one is skipped). Returns whether the twin changed, or why it was refused (document size). */
  async applyReported(tx: Tx, site: string, m: ReportedMessage, now: number): Promise<boolean | EdgetwinError> {
    this.touch(tx, m.device);
    return this.ingestWrites.reported(tx, site, m, now, this.cfg.reportedMaxBytes);
  }

  // ---- operator writes ----

  /**
   * The twin's row, locked for this transaction: a concurrent write on any replica waits, then sees
   * this one's version. The scope rule is site-policy's (the routes apply it before they call); it
   * is applied once more here, on the locked row, so a concurrent move of the device cannot slip
   * between the route's check and this write.
   */
  private async writable(tx: Tx, device: string, who: Principal): Promise<TwinRow> {
    this.touch(tx, device);
    const row = await this.row(tx, device, true);
    requireDevice(who, device, row?.site);
    return row!;
  }

  /**
   * Merges a desired patch (JSON Merge Patch), bumps the desired and twin versions, audits it and
   * emits a `desired` change (`by`: who). In `parent` when given (promotions patch many twins in one).
   */
  patchDesired(
    device: string,
    patch: unknown,
    ifMatch: string | undefined,
    who: Principal,
    parent?: Tx,
  ): Promise<{ twin: TwinView; changed: boolean; version: number; site: string }> {
    return withTx(this.store, parent, async (tx) => {
      const row = await this.writable(tx, device, who);
      checkIfMatch(row.version, ifMatch);
      checkTwinDocument(patch, this.cfg.desiredMaxBytes, 'desired patch');
      const before = JSON.parse(row.desired) as JsonObject;
      const after = mergePatch(before, patch) as JsonObject;
      checkTwinDocument(after, this.cfg.desiredMaxBytes, 'desired document');
      if (jsonEqual(before, after))
        return { twin: this.view(row, await this.metrics(tx, device)), changed: false, version: row.desired_version, site: row.site };
      // The cursor row stays locked until commit: desired changes commit in cursor order, so a
      // collector that has read cursor N never finds a smaller one later (GET /v1/desired?since=N).
      const cursor = (await tx.get<{ v: number }>('UPDATE meta SET v = v + 1 WHERE k = ? RETURNING v', [DESIRED_CURSOR]))!.v;
      const now = Date.now();
      await tx.run(
        'UPDATE twins SET desired = ?, desired_version = desired_version + 1, desired_cursor = ?, desired_at = ?, version = version + 1 WHERE device = ?',
        [JSON.stringify(after), cursor, now, device],
      );
      await this.audit.record(
        tx,
        who,
        'twin.desired.patch',
        { device, site: row.site },
        { patch, fromVersion: row.desired_version, toVersion: row.desired_version + 1 },
        now,
      );
      const updated = (await this.row(tx, device))!;
      tx.emit({
        type: 'desired',
        site: row.site,
        device,
        data: { version: updated.desired_version, patch: patch as Record<string, unknown>, by: who.name },
      });
      return { twin: this.view(updated, await this.metrics(tx, device)), changed: true, version: updated.desired_version, site: row.site };
    });
  }

  /** Sets the operator-owned descriptive fields: device type and tags (merge patch; null removes). */
  patchTwin(
    device: string,
    body: { deviceType?: string | null; tags?: Record<string, string | null> },
    ifMatch: string | undefined,
    who: Principal,
  ): Promise<TwinView> {
    return this.store.tx(async (tx) => {
      const row = await this.writable(tx, device, who);
      checkIfMatch(row.version, ifMatch);
      const tags =
        body.tags === undefined ? (JSON.parse(row.tags) as JsonObject) : (mergePatch(JSON.parse(row.tags), body.tags) as JsonObject);
      const type = body.deviceType === undefined ? row.device_type : body.deviceType;
      const tagsText = JSON.stringify(tags);
      const bytes = Buffer.byteLength(tagsText);
      if (bytes > this.cfg.tagsMaxBytes && bytes > Buffer.byteLength(row.tags))
        throw new EdgetwinError(
          ErrorCodes.LIMIT_EXCEEDED,
          `tags would be ${bytes} bytes, over twins.tagsMaxBytes (${this.cfg.tagsMaxBytes})`,
          {
            details: { bytes, max: this.cfg.tagsMaxBytes },
          },
        );
      await tx.run('UPDATE twins SET tags = ?, device_type = ?, version = version + 1 WHERE device = ?', [tagsText, type, device]);
      await this.audit.record(
        tx,
        who,
        'twin.patch',
        { device, site: row.site },
        { ...body, fromVersion: row.version, toVersion: row.version + 1 },
      );
      tx.emit({ type: 'twin', site: row.site, device, data: { $version: row.version + 1, tags, deviceType: type, by: who.name } });
      return this.view((await this.row(tx, device))!, await this.metrics(tx, device));
    });
  }

  // ---- reads ----

  async getTwin(device: string): Promise<TwinView | undefined> {
    const parts = await this.getTwinParts(device);
    return parts && { ...parts.view, health: parts.health };
  }

  /**
   * The cached view (the same object until the twin changes; its `health` is stale) and the health
   * as of now, apart: a point read serializes the view once per change (routes/twins.ts). Given the
   * prediction store, also the twin's `predictions`. A miss is one statement — the twin row with its
   * metrics (and predictions) as JSON — so it holds one pooled connection for one round trip.
   */
  async getTwinParts(device: string, predictions?: PredictionStore): Promise<TwinParts | undefined> {
    let hit = this.cache.get(device);
    let preds = predictions?.cached(device);
    if (!hit) {
      // Read outside any transaction; cached only if no change to the device arrived meanwhile
      // (the entry would be stale: the change feed dropped it while the read was under way).
      const mark = this.cache.mark();
      const withPreds = predictions !== undefined && preds === undefined;
      const pmark = predictions?.mark() ?? 0;
      const t = await this.store.get<TwinRow & { metrics_json: string; predictions_json?: string }>(this.pointSql(predictions, withPreds), [
        device,
      ]);
      if (!t) return undefined;
      const view = this.view(t, JSON.parse(t.metrics_json) as MetricRow[]);
      hit = { view, lastSeen: t.last_seen, reportedHealth: view.health.reported };
      this.cache.set(device, hit, mark);
      if (withPreds) preds = predictions.keepJson(device, t.predictions_json!, pmark);
    } else if (predictions && preds === undefined) {
      preds = await predictions.latestOf(device);
    }
    // Health depends on the clock, so it is computed at every read.
    return { view: hit.view, health: twinHealth(this.cfg, hit.lastSeen, hit.reportedHealth, Date.now()), predictions: preds };
  }

  /** The point read's statement, built once per shape. */
  private pointSql(predictions: PredictionStore | undefined, withPreds: boolean): string {
    const key = withPreds ? 1 : 0;
    const d = this.store.dialect;
    return (this.pointSqls[key] ??=
      `SELECT t.*, ${d.jsonRows(METRIC_COLUMNS, 'twin_metrics m', 'm.device = t.device', 'm.metric')} AS metrics_json${
        withPreds ? `, ${predictions!.latestJsonSql(d, 't.device')} AS predictions_json` : ''
      } FROM twins t WHERE t.device = ?`);
  }

  async siteOf(device: string, q: Queryable = this.store): Promise<string | undefined> {
    return (await q.get<{ site: string }>('SELECT site FROM twins WHERE device = ?', [device]))?.site;
  }

  listTwins(f: TwinFilter, q: Queryable = this.store): Promise<{ items: TwinView[]; next: string | null }> {
    return listTwins(q, this.cfg, f);
  }

  sites(site?: string): Promise<SiteSummary[]> {
    return siteSummaries(this.store, site);
  }

  /** Full desired documents of a site's devices whose desired state changed after `since`, oldest change first. */
  desiredFeed(site: string, since: number, limit: number): Promise<DesiredFeedPage> {
    return desiredFeed(this.store, site, since, limit);
  }
}
