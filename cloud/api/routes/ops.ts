/** Operations: Prometheus `/metrics`, `/healthz`, and the OpenAPI document. */
import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../context.js';

export function registerOpsRoutes(app: FastifyInstance, ctx: ServerContext, openapi: () => object): void {
  app.get('/metrics', { schema: { summary: 'Prometheus metrics', tags: ['ops'] } }, async (_req, reply) => {
    const body = await ctx.registry.metrics();
    return reply.header('content-type', ctx.registry.contentType).send(body);
  });

  app.get(
    '/healthz',
    { schema: { summary: 'Health: 200 when healthy, 503 with the reasons otherwise', tags: ['ops'] } },
    async (_req, reply) => {
      const h = ctx.health();
      return reply.status(h.ok ? 200 : 503).send(h);
    },
  );

  app.get('/openapi.json', { schema: { summary: 'This API as OpenAPI 3.1', tags: ['ops'] } }, async () => openapi());
}
