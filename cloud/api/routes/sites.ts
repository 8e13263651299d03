/**
 * Sites: `GET /v1/sites` (device counts and anomalies from the twins, plus the collector's newest
 * heartbeat) and `PUT /v1/sites/{site}/status`, the heartbeat itself (collector/heartbeat/site-status-reporter.ts
 * sends it with the site token; docs/wire-contract.md, "Site heartbeat").
 */
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { EdgetwinError, ErrorCodes } from '../../../common/errors.js';
import { requireSite, scopedSite } from '../../auth/site-policy.js';
import type { ServerContext } from '../context.js';
import { siteStatusReportSchema, type SiteStatusReport } from '../../../common/wire/site-status.js';
import type { SiteStatusView } from '../../sites/site-status-store.js';
import { siteParam, typed } from './params.js';

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

export function registerSiteRoutes(fastify: FastifyInstance, ctx: ServerContext): void {
  const app = typed(fastify);
  const store = ctx.sites;

  app.get(
    '/v1/sites',
    {
      config: { action: 'read' },
      schema: {
        summary:
          "Sites: device counts, anomalous devices, readings, last seen, and the collector's newest heartbeat (spool depth, sinks, staleness)",
        tags: ['twins'],
        querystring: Type.Object({ site: Type.Optional(siteParam) }),
        'x-responses': {
          200: {
            description:
              '`{items: [{site, devices, anomalous, readings, lastSeen, status}]}`; `status` is the newest heartbeat plus `receivedAt`, `ageMs`, `staleAfterMs` and `stale` (null if the collector never reported)',
          },
        },
      },
    },
    async (req) => {
      const site = scopedSite(req.principal, req.query.site);
      const now = Date.now();
      const statuses = await store.all(site, now);
      const items = new Map<string, SiteItem>();
      for (const s of await ctx.twins.sites(site)) items.set(s.site, { ...s, status: statuses.get(s.site) ?? null });
      // A collector with no devices yet still has a site worth showing.
      for (const [name, status] of statuses)
        if (!items.has(name)) items.set(name, { site: name, devices: 0, anomalous: 0, readings: 0, lastSeen: null, status });
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
          "Sent every `siteStatus.intervalMs` by the collector with its site token (a collector token may report only its own site: 403). Replaces the site's previous report; " +
          'published on `/v1/stream` as a `site` event. docs/wire-contract.md, "Site heartbeat".',
        params: Type.Object({ site: siteParam }),
        body: siteStatusReportSchema,
        'x-responses': {
          200: { description: 'The stored status as `GET /v1/sites` shows it' },
          400: { description: 'Body does not match the schema' },
          403: { description: "Another site's token, or a role that may not ingest" },
        },
      },
    },
    async (req) => {
      const site = req.params.site;
      requireSite(req.principal, site);
      const body: SiteStatusReport = req.body;
      if (!Number.isFinite(Date.parse(body.at)))
        throw new EdgetwinError(ErrorCodes.BAD_REQUEST, `body/at must be an ISO 8601 time, got "${body.at}"`);
      return store.put(site, body);
    },
  );
}
