/**
 * Sites: `GET /v1/sites` (device counts and anomalies from the twins, plus the collector's newest
 * heartbeat) and `PUT /v1/sites/{site}/status`, the heartbeat itself (collector/twin/site-status.ts
 * sends it with the site token; docs/wire-contract.md, "Site heartbeat").
 */
import type { FastifyInstance } from 'fastify';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import { requireSite, scopedSite } from '../auth/authenticator.js';
import type { ServerContext } from '../server.js';
import { SiteStatusStore, siteStatusBodySchema, type SiteStatusReport, type SiteStatusView } from '../site-status.js';
import { siteParam } from './params.js';

export interface SiteItem {
  site: string;
  devices: number;
  anomalous: number;
  readings: number;
  /** Newest reading or reported patch of any device of the site; null while none arrived. */
  lastSeen: string | null;
  /** The collector's newest heartbeat; null when it never sent one. */
  status: SiteStatusView | null;
}

export function registerSiteRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const store = new SiteStatusStore(ctx.twins.db);

  app.get(
    '/v1/sites',
    {
      config: { action: 'read' },
      schema: {
        summary: 'Sites: device counts, anomalous devices, readings, last seen, and the collector\'s newest heartbeat (spool depth, sinks, staleness)',
        tags: ['twins'],
        querystring: { type: 'object', properties: { site: siteParam } },
        'x-responses': {
          200: {
            description:
              '`{items: [{site, devices, anomalous, readings, lastSeen, status}]}`; `status` is the newest heartbeat plus `receivedAt`, `ageMs`, `staleAfterMs` and `stale` (null if the collector never reported)',
          },
        },
      },
    },
    async (req) => {
      const site = scopedSite(req.principal, (req.query as { site?: string }).site);
      const now = Date.now();
      const statuses = store.all(site, now);
      const items = new Map<string, SiteItem>();
      for (const s of ctx.twins.sites(site)) items.set(s.site, { ...s, status: statuses.get(s.site) ?? null });
      // A collector with no devices yet still has a site worth showing.
      for (const [name, status] of statuses) if (!items.has(name)) items.set(name, { site: name, devices: 0, anomalous: 0, readings: 0, lastSeen: null, status });
      return { items: [...items.values()].sort((a, b) => (a.site < b.site ? -1 : a.site > b.site ? 1 : 0)) };
    },
  );

  app.put(
    '/v1/sites/:site/status',
    {
      config: { action: 'ingest' },
      schema: {
        summary: 'Site heartbeat from its collector: spool depth, connected devices, sink lag, version',
        tags: ['ingest'],
        description:
          'Sent every `siteStatus.intervalMs` by the collector with its site token (a collector token may report only its own site: 403). Replaces the site\'s previous report; ' +
          'published on `/v1/stream` as a `site` event. docs/wire-contract.md, "Site heartbeat".',
        params: { type: 'object', required: ['site'], properties: { site: siteParam } },
        body: siteStatusBodySchema,
        'x-responses': { 200: { description: 'The stored status as `GET /v1/sites` shows it' }, 400: { description: 'Body does not match the schema' }, 403: { description: 'Another site\'s token, or a role that may not ingest' } },
      },
    },
    async (req) => {
      const site = (req.params as { site: string }).site;
      requireSite(req.principal, site);
      const body = req.body as SiteStatusReport;
      if (!Number.isFinite(Date.parse(body.at))) throw new EdgetwinError(ErrorCodes.BAD_REQUEST, `body/at must be an ISO 8601 time, got "${body.at}"`);
      const view = store.put(site, body);
      ctx.events.publish('site', site, null, view as unknown as Record<string, unknown>);
      return view;
    },
  );
}
