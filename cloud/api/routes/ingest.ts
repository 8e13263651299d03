/** Collector-facing routes: `POST /v1/ingest` and the desired feed `GET /v1/desired`. */
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { EdgetwinError, ErrorCodes } from '../../../common/errors.js';
import { requireSite } from '../../auth/site-policy.js';
import { allClaimedElsewhere } from '../../ingest/claims.js';
import type { ServerContext } from '../context.js';
import { limitParam, siteParam, typed } from './params.js';

export function registerIngestRoutes(fastify: FastifyInstance, ctx: ServerContext): void {
  // The ingest body is checked by the pipeline itself (per message, with quarantine), not by a route schema.
  const app = typed(fastify);
  app.post(
    '/v1/ingest',
    {
      config: { action: 'ingest' },
      schema: {
        summary: 'Ingest a batch from a site collector (idempotent by batchId and by reading identity)',
        tags: ['ingest'],
        description:
          'Body: the ingest envelope `{v, batchId, site, messages}` (docs/wire-contract.md), optionally gzip-encoded. Answered 200 only once the batch is durable. ' +
          'A collector token may ingest only for its own site (403). Device ids are global: a message for a device another site owns is refused on its own ' +
          '(`rejected[]` with EDGETWIN_ERR_DEVICE_CLAIMED; the collector dead-letters it), and a batch of nothing but such messages is answered 409.',
        'x-responses': {
          200: {
            description: 'Stored (or a repeated batchId): `{batchId, stored, duplicates, duplicateBatch, quarantined, rejected, quality}`',
          },
          400: { description: 'Bad envelope or JSON: nothing stored' },
          409: {
            description: 'Every message is for a device another site owns (EDGETWIN_ERR_DEVICE_CLAIMED; `details.rejected` lists them)',
          },
          503: { description: 'Lakehouse writer behind; retry after Retry-After seconds' },
        },
      },
    },
    async (req, reply) => {
      if (!req.rawBody) throw new EdgetwinError(ErrorCodes.BAD_REQUEST, 'missing body (content-type: application/json)');
      // Scope (cloud/auth/site-policy.ts): a site's token sends its own site's batches only. A body
      // without a string `site` is the pipeline's to refuse (400).
      const site = (req.body as { site?: unknown } | undefined)?.site;
      if (typeof site === 'string') {
        try {
          requireSite(req.principal, site);
        } catch (err) {
          ctx.pipeline.countRejected(ErrorCodes.FORBIDDEN);
          throw err;
        }
      }
      const result = await ctx.pipeline.ingest({
        raw: req.rawBody,
        body: req.body,
        ...(req.wireBody ? { wire: { encoding: 'gzip' as const, bytes: req.wireBody } } : {}),
      });
      ctx.lake.writer.poke();
      const messages = (req.body as { messages: unknown[] }).messages.length;
      if (allClaimedElsewhere(messages, result.rejected)) {
        throw new EdgetwinError(ErrorCodes.DEVICE_CLAIMED, 'every message of this batch is for a device another site owns', {
          details: { batchId: result.batchId, rejected: result.rejected },
        });
      }
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
        description:
          "Full desired documents of the site's devices whose desired state changed after `since` (a cloud-wide change number), oldest first.",
        querystring: Type.Object({ site: siteParam, since: Type.Integer({ minimum: 0, default: 0 }), limit: limitParam(500, 5000) }),
        'x-responses': { 200: { description: '`{items: [{device, desired, version, cursor}], next}`' } },
      },
    },
    async (req) => {
      const q = req.query;
      requireSite(req.principal, q.site);
      return ctx.twins.desiredFeed(q.site, q.since, q.limit);
    },
  );
}
