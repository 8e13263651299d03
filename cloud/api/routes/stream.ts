/**
 * `GET /v1/stream`: Server-Sent Events of twin changes and anomalies as they are committed,
 * filtered by site, device and type (and always by the caller's site scope), from any replica. A
 * client that reconnects with `Last-Event-ID` (EventSource does) gets the events it missed, on
 * whichever replica it reaches, for as long as the change feed keeps them (store.changeRetentionMs);
 * a client too slow to keep up is disconnected.
 */
import type { ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { EdgetwinError, ErrorCodes, errorCodeOf, errorMessage, isEdgetwinError } from '../../../common/errors.js';
import { counter, gauge } from '../../../common/metrics.js';
import { scopedSite } from '../../auth/site-policy.js';
import { EVENT_TYPES, type CloudEventType } from '../events.js';
import type { ServerContext } from '../context.js';
import { deviceParam, siteParam, typed } from './params.js';

const HEARTBEAT_MS = 15_000;
const AUTH_RECHECK_MS = 1000;
const MAX_BUFFERED_BYTES = 1024 * 1024;

export function registerStreamRoutes(fastify: FastifyInstance, ctx: ServerContext): void {
  const app = typed(fastify);
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
        description:
          'Events `twin`, `anomaly`, `desired`, `reported`, `site` (a collector heartbeat; device null); data is `{id, type, site, device, at, data}`. EventSource clients may pass the token as `access_token`. ' +
          'A last `end` event `{code, message}` closes the stream within seconds of its token being revoked or expiring.',
        querystring: Type.Object({
          site: Type.Optional(siteParam),
          device: Type.Optional(deviceParam),
          types: Type.Optional(Type.String({ maxLength: 100, description: `comma-separated subset of ${EVENT_TYPES.join(', ')}` })),
          access_token: Type.Optional(Type.String({ maxLength: 200 })),
        }),
        'x-responses': { 200: { description: 'text/event-stream' } },
      },
    },
    (req, reply) => {
      const q = req.query;
      const site = scopedSite(req.principal, q.site);
      const types = new Set(
        (q.types ?? EVENT_TYPES.join(','))
          .split(',')
          .map((t) => t.trim())
          .filter(Boolean),
      );
      for (const t of types) {
        if (!EVENT_TYPES.includes(t as CloudEventType))
          throw new EdgetwinError(ErrorCodes.BAD_REQUEST, `unknown event type "${t}"; use ${EVENT_TYPES.join(', ')}`);
      }
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      res.write(': edgetwin stream\nretry: 2000\n\n');
      open.add(res);
      mClients.inc();
      // Event ids are the change feed's (global): a client reconnecting to any replica with
      // Last-Event-ID gets every event after it, once, then the live ones.
      const lastEventId = String(req.headers['last-event-id'] ?? '');
      const after = /^\d{1,15}$/.test(lastEventId) ? Number(lastEventId) : undefined;
      let unsubscribe = (): void => undefined;
      let closed = false;
      ctx.events
        .subscribe((e) => {
          if (
            !types.has(e.type as CloudEventType) ||
            (site !== undefined && e.site !== site) ||
            (q.device !== undefined && e.device !== q.device)
          )
            return;
          res.write(`id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
          if (res.writableLength > MAX_BUFFERED_BYTES) {
            mDropped.inc();
            res.destroy();
          }
        }, after)
        .then(
          (u) => (closed ? u() : (unsubscribe = u)),
          // The backlog could not be read (database down): the client reconnects with the same Last-Event-ID.
          (err: unknown) => endStream(errorCodeOf(err), errorMessage(err)),
        );
      const heartbeat = setInterval(() => res.write(': ping\n\n'), HEARTBEAT_MS);
      // The token was checked once at the start; a stream outlives that check. Re-checked every
      // second (the authenticator caches a token for a second): a revoked or expired token's
      // stream ends within about 2 s with an `end` event saying why.
      const authorization = req.headers.authorization;
      const queryToken = q.access_token;
      const recheck = setInterval(() => {
        void Promise.resolve()
          .then(() => ctx.auth.authenticate(authorization, queryToken))
          .then(
            (p) => {
              const expiresAt = (p as Partial<{ expiresAt: number | null }>).expiresAt;
              if (typeof expiresAt === 'number' && expiresAt <= Date.now()) endStream(ErrorCodes.UNAUTHORIZED, 'token expired');
            },
            (err: unknown) => {
              // An unreachable database is no verdict on the token: the stream stays.
              if (!isEdgetwinError(err, ErrorCodes.STORE_UNAVAILABLE)) endStream(ErrorCodes.UNAUTHORIZED, errorMessage(err));
            },
          );
      }, AUTH_RECHECK_MS);
      const endStream = (code: string, message: string): void => {
        if (res.writableEnded) return;
        res.write(`event: end\ndata: ${JSON.stringify({ code, message })}\n\n`);
        res.end();
      };
      res.once('close', () => {
        closed = true;
        unsubscribe();
        clearInterval(heartbeat);
        clearInterval(recheck);
        open.delete(res);
        mClients.dec();
      });
    },
  );
}
