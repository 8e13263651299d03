/**
 * Twin reads that go to the database every time (no cache): filtered pages of twins, per-site
 * summaries and the desired feed collectors poll. Point reads (cached) are TwinStore.getTwin.
 */
import type { JsonObject } from '../../common/config.js';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import type { DesiredFeedPage } from '../../common/wire/desired-feed.js';
import type { CloudTwinsConfig } from '../config.js';
import { placeholders, type Queryable } from '../store/store.js';
import { Where } from '../store/where.js';
import { TAG_KEY, twinView, type MetricRow, type SiteSummary, type TwinFilter, type TwinRow, type TwinView } from './twin-view.js';

/** One page of twins matching `f`, ordered by device id; `next` is the cursor of the following page. */
export async function listTwins(q: Queryable, cfg: CloudTwinsConfig, f: TwinFilter): Promise<{ items: TwinView[]; next: string | null }> {
  const d = q.dialect;
  const where = new Where().given('device = ?', f.device).given('site = ?', f.site);
  if (f.type !== undefined) where.add(`coalesce(device_type, ${d.jsonField('reported')}) = ?`, d.jsonKey('deviceType'), f.type);
  for (const tag of f.tags ?? []) {
    const i = tag.indexOf(':');
    const k = i < 0 ? tag : tag.slice(0, i);
    if (!TAG_KEY.test(k)) throw new EdgetwinError(ErrorCodes.BAD_REQUEST, `tag filter "${tag}": key must match ${TAG_KEY.source}`);
    if (i < 0) where.add(d.jsonHas('tags'), d.jsonKey(k));
    else where.add(`${d.jsonField('tags')} = ?`, d.jsonKey(k), tag.slice(i + 1));
  }
  if (f.anomalous !== undefined) where.add('anomalous = ?', f.anomalous ? 1 : 0);
  where.given('last_seen < ?', f.lastSeenBefore).given('last_seen > ?', f.lastSeenAfter).given('device > ?', f.after);
  const rows = await q.all<TwinRow>(`SELECT * FROM twins ${where.clause} ORDER BY device LIMIT ?`, [...where.params, f.limit + 1]);
  const page = rows.slice(0, f.limit);
  const metrics = page.length
    ? await q.all<MetricRow>(
        `SELECT * FROM twin_metrics WHERE device IN (${placeholders(page.length)}) ORDER BY device, metric`,
        page.map((r) => r.device),
      )
    : [];
  const byDevice = new Map<string, MetricRow[]>();
  for (const m of metrics) {
    const list = byDevice.get(m.device);
    if (list) list.push(m);
    else byDevice.set(m.device, [m]);
  }
  const now = Date.now();
  // A page also ends at about twins.listPageMaxBytes of JSON (at least one twin): large twins
  // (many metrics, big reported documents) never make a response of megabytes.
  const items: TwinView[] = [];
  let bytes = 0;
  for (const t of page) {
    const view = twinView(cfg, t, byDevice.get(t.device) ?? [], now);
    bytes += Buffer.byteLength(JSON.stringify(view));
    if (items.length > 0 && bytes > cfg.listPageMaxBytes) break;
    items.push(view);
  }
  const more = items.length < page.length || rows.length > f.limit;
  return { items, next: more ? items[items.length - 1]!.deviceId : null };
}

/** Devices, anomalous devices, readings and last data per site (one site, or all). */
export async function siteSummaries(q: Queryable, site?: string): Promise<SiteSummary[]> {
  const rows = await q.all<{ site: string; devices: number; anomalous: number; readings: number; last_seen: number }>(
    `SELECT site, count(*) AS devices, sum(anomalous) AS anomalous, sum(readings) AS readings, max(last_seen) AS last_seen FROM twins
      ${site === undefined ? '' : 'WHERE site = ?'} GROUP BY site ORDER BY site`,
    site === undefined ? [] : [site],
  );
  return rows.map((r) => ({
    site: r.site,
    devices: r.devices,
    anomalous: r.anomalous,
    readings: r.readings,
    lastSeen: new Date(r.last_seen).toISOString(),
  }));
}

/** Full desired documents of a site's devices whose desired state changed after `since`, oldest change first. */
export async function desiredFeed(q: Queryable, site: string, since: number, limit: number): Promise<DesiredFeedPage> {
  const rows = await q.all<{ device: string; desired: string; desired_version: number; desired_cursor: number }>(
    'SELECT device, desired, desired_version, desired_cursor FROM twins WHERE site = ? AND desired_cursor > ? ORDER BY desired_cursor LIMIT ?',
    [site, since, limit],
  );
  const items = rows.map((r) => ({
    device: r.device,
    desired: JSON.parse(r.desired) as JsonObject,
    version: r.desired_version,
    cursor: r.desired_cursor,
  }));
  return { items, next: items.length ? items[items.length - 1]!.cursor : since };
}
