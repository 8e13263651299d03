/**
 * SiteStatusStore: the newest heartbeat of each site's collector (`PUT /v1/sites/{site}/status`),
 * one row per site in the cloud's store. Only the newest report is kept: it answers "is the
 * site up, and how much is buffered there", while the history of those figures belongs to metrics.
 *
 * Staleness is judged by the cloud's own clock (when the report arrived), never by the collector's
 * `at`, so a site with a wrong clock is still shown correctly; a site is stale once it has missed
 * two of the heartbeats it announced (`intervalMs`).
 */
import type { SiteStatusReport } from '../../common/wire/site-status.js';
import type { Store, Tx } from '../store/store.js';

export interface SiteStatusView extends SiteStatusReport {
  receivedAt: string;
  ageMs: number;
  /** Missed heartbeats after which the site counts as stale: 3 × intervalMs since the last one arrived. */
  staleAfterMs: number;
  stale: boolean;
}

const MISSED_BEFORE_STALE = 3;

/** Keeps only the fields this cloud knows: a newer collector's extra fields are accepted and not stored. */
function known(r: SiteStatusReport): SiteStatusReport {
  const sinks: SiteStatusReport['sinks'] = {};
  for (const [name, s] of Object.entries(r.sinks))
    sinks[name] = { ok: s.ok, lagRows: s.lagRows, ...(s.lastError === undefined ? {} : { lastError: s.lastError }) };
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

interface Row {
  site: string;
  received: number;
  report: string;
}

export class SiteStatusStore {
  constructor(private readonly store: Store) {}

  /** Stores the report and emits a `site` change (GET /v1/stream on every replica) in the same transaction. */
  put(site: string, report: SiteStatusReport, now = Date.now()): Promise<SiteStatusView> {
    const r = known(report);
    const view = this.view(r, now, now);
    return this.store.tx(async (tx: Tx) => {
      await tx.run(
        'INSERT INTO site_status (site, received, report) VALUES (?, ?, ?) ON CONFLICT (site) DO UPDATE SET received = excluded.received, report = excluded.report',
        [site, now, JSON.stringify(r)],
      );
      tx.emit({ type: 'site', site, device: null, data: view as unknown as Record<string, unknown> });
      return view;
    });
  }

  async get(site: string, now = Date.now()): Promise<SiteStatusView | undefined> {
    const row = await this.store.get<Row>('SELECT * FROM site_status WHERE site = ?', [site]);
    return row ? this.view(JSON.parse(row.report) as SiteStatusReport, row.received, now) : undefined;
  }

  /** Every site's newest report (or only `site`'s), by site. */
  async all(site?: string, now = Date.now()): Promise<Map<string, SiteStatusView>> {
    const rows =
      site === undefined
        ? await this.store.all<Row>('SELECT * FROM site_status')
        : await this.store.all<Row>('SELECT * FROM site_status WHERE site = ?', [site]);
    return new Map(rows.map((r) => [r.site, this.view(JSON.parse(r.report) as SiteStatusReport, r.received, now)]));
  }

  private view(r: SiteStatusReport, received: number, now: number): SiteStatusView {
    const ageMs = Math.max(0, now - received);
    const staleAfterMs = MISSED_BEFORE_STALE * r.intervalMs;
    return { ...r, receivedAt: new Date(received).toISOString(), ageMs, staleAfterMs, stale: ageMs > staleAfterMs };
  }
}
