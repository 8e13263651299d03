/**
 * SiteStatusStore: the newest heartbeat of each site's collector (`PUT /v1/sites/{site}/status`),
 * one row per site in the cloud's SQLite file. Only the newest report is kept: it answers "is the
 * site up, and how much is buffered there", while the history of those figures belongs to metrics.
 *
 * Staleness is judged by the cloud's own clock (when the report arrived), never by the collector's
 * `at`, so a site with a wrong clock is still shown correctly; a site is stale once it has missed
 * two of the heartbeats it announced (`intervalMs`).
 */
import type { SqliteDb } from '../common/sqlite.js';

/** The heartbeat body as the collector sends it (docs/wire-contract.md, "Site heartbeat"). */
export interface SiteStatusReport {
  v: 1;
  at: string;
  collectorVersion: string;
  intervalMs: number;
  uptimeS?: number;
  spool: { rows: number; bytes: number; maxBytes?: number };
  devices: { connected: number };
  sinks: Record<string, { ok: boolean; lagRows: number; lastError?: string }>;
  twin?: { feed: 'ok' | 'failing' | 'off' };
}

export interface SiteStatusView extends SiteStatusReport {
  receivedAt: string;
  ageMs: number;
  /** Missed heartbeats after which the site counts as stale: 3 × intervalMs since the last one arrived. */
  staleAfterMs: number;
  stale: boolean;
}

const MISSED_BEFORE_STALE = 3;

export const siteStatusBodySchema = {
  type: 'object',
  required: ['v', 'at', 'collectorVersion', 'intervalMs', 'spool', 'devices', 'sinks'],
  properties: {
    v: { const: 1 },
    at: { type: 'string', minLength: 1, maxLength: 40, description: 'the collector\'s clock when it took the figures (ISO 8601)' },
    collectorVersion: { type: 'string', minLength: 1, maxLength: 64 },
    intervalMs: { type: 'integer', minimum: 100, maximum: 3_600_000, description: 'how often the collector reports; staleness is judged from it' },
    uptimeS: { type: 'integer', minimum: 0 },
    spool: {
      type: 'object',
      required: ['rows', 'bytes'],
      properties: { rows: { type: 'integer', minimum: 0 }, bytes: { type: 'integer', minimum: 0 }, maxBytes: { type: 'integer', minimum: 0 } },
    },
    devices: { type: 'object', required: ['connected'], properties: { connected: { type: 'integer', minimum: 0 } } },
    sinks: {
      type: 'object',
      maxProperties: 16,
      propertyNames: { pattern: '^[A-Za-z0-9._-]{1,64}$' },
      additionalProperties: {
        type: 'object',
        required: ['ok', 'lagRows'],
        properties: { ok: { type: 'boolean' }, lagRows: { type: 'integer', minimum: 0 }, lastError: { type: 'string', maxLength: 500 } },
      },
    },
    twin: { type: 'object', required: ['feed'], properties: { feed: { enum: ['ok', 'failing', 'off'] } } },
  },
} as const;

/** Keeps only the fields this cloud knows: a newer collector's extra fields are accepted and not stored. */
function known(r: SiteStatusReport): SiteStatusReport {
  const sinks: SiteStatusReport['sinks'] = {};
  for (const [name, s] of Object.entries(r.sinks)) sinks[name] = { ok: s.ok, lagRows: s.lagRows, ...(s.lastError === undefined ? {} : { lastError: s.lastError }) };
  return {
    v: 1,
    at: r.at,
    collectorVersion: r.collectorVersion,
    intervalMs: r.intervalMs,
    ...(r.uptimeS === undefined ? {} : { uptimeS: r.uptimeS }),
    spool: { rows: r.spool.rows, bytes: r.spool.bytes, ...(r.spool.maxBytes === undefined ? {} : { maxBytes: r.spool.maxBytes }) },
    devices: { connected: r.devices.connected },
    sinks,
    ...(r.twin === undefined ? {} : { twin: { feed: r.twin.feed } }),
  };
}

export class SiteStatusStore {
  private readonly upsert;
  private readonly selOne;

  constructor(private readonly db: SqliteDb) {
    // Created here rather than in cloud/db.ts: the table is this store's alone and older files gain it on start.
    db.exec('CREATE TABLE IF NOT EXISTS site_status (site TEXT PRIMARY KEY, received INTEGER NOT NULL, report TEXT NOT NULL) WITHOUT ROWID');
    this.upsert = db.prepare('INSERT INTO site_status (site, received, report) VALUES (?, ?, ?) ON CONFLICT(site) DO UPDATE SET received = excluded.received, report = excluded.report');
    this.selOne = db.prepare<[string], { site: string; received: number; report: string }>('SELECT * FROM site_status WHERE site = ?');
  }

  put(site: string, report: SiteStatusReport, now = Date.now()): SiteStatusView {
    const r = known(report);
    this.upsert.run(site, now, JSON.stringify(r));
    return this.view(r, now, now);
  }

  get(site: string, now = Date.now()): SiteStatusView | undefined {
    const row = this.selOne.get(site);
    return row ? this.view(JSON.parse(row.report) as SiteStatusReport, row.received, now) : undefined;
  }

  /** Every site's newest report (or only `site`'s), by site. */
  all(site?: string, now = Date.now()): Map<string, SiteStatusView> {
    const rows = (site === undefined ? this.db.prepare('SELECT * FROM site_status').all() : [this.selOne.get(site)].filter(Boolean)) as { site: string; received: number; report: string }[];
    return new Map(rows.map((r) => [r.site, this.view(JSON.parse(r.report) as SiteStatusReport, r.received, now)]));
  }

  private view(r: SiteStatusReport, received: number, now: number): SiteStatusView {
    const ageMs = Math.max(0, now - received);
    const staleAfterMs = MISSED_BEFORE_STALE * r.intervalMs;
    return { ...r, receivedAt: new Date(received).toISOString(), ageMs, staleAfterMs, stale: ageMs > staleAfterMs };
  }
}
