/** Collector-facing routes: `POST /v1/ingest` and the desired feed `GET /v1/desired`. */
import type { FastifyInstance } from 'fastify';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import { requireSite } from '../auth/authenticator.js';
import type { ServerContext } from '../server.js';
import { limitParam, siteParam } from './params.js';

export function registerIngestRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.post(
    '/v1/ingest',
    {
      config: { action: 'ingest' },
      schema: {
        summary: 'Ingest a batch from a site collector (idempotent by batchId and by reading identity)',
        tags: ['ingest'],
        description:
          'Body: the ingest envelope `{v, batchId, site, messages}` (docs/wire-contract.md), optionally gzip-encoded. Answered 200 only once the batch is durable. ' +
          'A collector token may ingest only for its own site (403).',
        'x-responses': {
          200: { description: 'Stored (or a repeated batchId): `{batchId, stored, duplicates, duplicateBatch, quarantined, rejected, quality}`' },
          400: { description: 'Bad envelope or JSON: nothing stored' },
          503: { description: 'Lakehouse writer behind; retry after Retry-After seconds' },
        },
      },
    },
    async (req, reply) => {
      if (!req.rawBody) throw new EdgetwinError(ErrorCodes.BAD_REQUEST, 'missing body (content-type: application/json)');
      const result = ctx.pipeline.ingest({
        raw: req.rawBody,
        body: req.body,
        principal: req.principal,
        ...(req.wireBody ? { wire: { encoding: 'gzip' as const, bytes: req.wireBody } } : {}),
      });
      ctx.lake.writer.poke();
      return reply.status(200).send(result);
    },
  );

  app.get(
    '/v1/desired',
    {
      config: { action: 'feed' },
      schema: {
        summary: 'Desired-state feed for a site collector',
        tags: ['ingest'],
        description: 'Full desired documents of the site\'s devices whose desired state changed after `since` (a cloud-wide change number), oldest first.',
        querystring: {
          type: 'object',
          required: ['site'],
          properties: { site: siteParam, since: { type: 'integer', minimum: 0, default: 0 }, limit: limitParam(500, 5000) },
        },
        'x-responses': { 200: { description: '`{items: [{device, desired, version, cursor}], next}`' } },
      },
    },
    async (req) => {
      const q = req.query as { site: string; since: number; limit: number };
      requireSite(req.principal, q.site);
      return ctx.twins.desiredFeed(q.site, q.since, q.limit);
    },
  );
}
