/**
 * `GET /v1/stream`: Server-Sent Events of twin changes and anomalies as they are committed,
 * filtered by site, device and type (and always by the caller's site scope). No replay: a client
 * that reconnects re-reads the state it needs; a client too slow to keep up is disconnected.
 */
import type { ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import { counter, gauge } from '../../common/metrics.js';
import { scopedSite } from '../auth/authenticator.js';
import { EVENT_TYPES, type CloudEventType } from '../events.js';
import type { ServerContext } from '../server.js';
import { deviceParam, siteParam } from './params.js';

const HEARTBEAT_MS = 15_000;
const MAX_BUFFERED_BYTES = 1024 * 1024;

export function registerStreamRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const mClients = gauge(ctx.registry, 'edgetwin_cloud_sse_clients', 'Connected /v1/stream clients');
  const mDropped = counter(ctx.registry, 'edgetwin_cloud_sse_dropped_total', 'Stream clients disconnected for not keeping up');
  const open = new Set<ServerResponse>();
  app.addHook('preClose', async () => {
    for (const res of open) res.end();
  });

  app.get(
    '/v1/stream',
    {
      config: { action: 'read', queryToken: true },
      schema: {
        summary: 'Server-Sent Events: twin changes and anomalies (filterable)',
        tags: ['twins'],
        description: 'Events `twin`, `anomaly`, `desired`, `reported`, `site` (a collector heartbeat; device null); data is `{id, type, site, device, at, data}`. EventSource clients may pass the token as `access_token`.',
        querystring: {
          type: 'object',
          properties: {
            site: siteParam,
            device: deviceParam,
            types: { type: 'string', maxLength: 100, description: `comma-separated subset of ${EVENT_TYPES.join(', ')}` },
            access_token: { type: 'string', maxLength: 200 },
          },
        },
        'x-responses': { 200: { description: 'text/event-stream' } },
      },
    },
    (req, reply) => {
      const q = req.query as { site?: string; device?: string; types?: string };
      const site = scopedSite(req.principal, q.site);
      const types = new Set((q.types ?? EVENT_TYPES.join(',')).split(',').map((t) => t.trim()).filter(Boolean));
      for (const t of types) {
        if (!EVENT_TYPES.includes(t as CloudEventType)) throw new EdgetwinError(ErrorCodes.BAD_REQUEST, `unknown event type "${t}"; use ${EVENT_TYPES.join(', ')}`);
      }
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
      res.write(': edgetwin stream\nretry: 2000\n\n');
      open.add(res);
      mClients.inc();
      const unsubscribe = ctx.events.subscribe((e) => {
        if (!types.has(e.type) || (site !== undefined && e.site !== site) || (q.device !== undefined && e.device !== q.device)) return;
        res.write(`id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
        if (res.writableLength > MAX_BUFFERED_BYTES) {
          mDropped.inc();
          res.destroy();
        }
      });
      const heartbeat = setInterval(() => res.write(': ping\n\n'), HEARTBEAT_MS);
      res.once('close', () => {
        unsubscribe();
        clearInterval(heartbeat);
        open.delete(res);
        mClients.dec();
      });
    },
  );
}
