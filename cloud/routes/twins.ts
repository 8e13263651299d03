/** The twin API: list and read twins, change desired state and tags (ETag-checked), audit; sites in ./sites.ts. */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import { requireSite, scopedSite } from '../auth/authenticator.js';
import type { ServerContext } from '../server.js';
import { TAG_KEY, type TwinView } from '../twin-store.js';
import { deviceParam, limitParam, parseTime, siteParam, timeParam } from './params.js';
import { registerSiteRoutes } from './sites.js';

const idParams = { type: 'object', required: ['id'], properties: { id: deviceParam } };

const encodeCursor = (device: string): string => Buffer.from(device, 'utf8').toString('base64url');
function decodeCursor(c: string | undefined): string | undefined {
  if (c === undefined) return undefined;
  const d = Buffer.from(c, 'base64url').toString('utf8');
  if (d.length === 0) throw new EdgetwinError(ErrorCodes.BAD_REQUEST, 'cursor is not one this API returned');
  return d;
}

export function registerTwinRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const readable = (req: FastifyRequest, id: string): TwinView => {
    const twin = ctx.twins.getTwin(id);
    if (!twin) throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no twin for device ${id}`);
    requireSite(req.principal, twin.site);
    return twin;
  };

  app.get(
    '/v1/twins',
    {
      config: { action: 'read' },
      schema: {
        summary: 'List twins, filtered, in pages ordered by device id',
        tags: ['twins'],
        querystring: {
          type: 'object',
          properties: {
            site: siteParam,
            type: { type: 'string', minLength: 1, maxLength: 64, description: 'device type' },
            tag: { type: 'array', items: { type: 'string', minLength: 1, maxLength: 300 }, description: '`key` or `key:value`; repeat to require several' },
            anomalous: { type: 'boolean', description: 'only twins whose newest reading of some metric is an alert (true) or none is (false)' },
            lastSeenBefore: timeParam('last seen before'),
            lastSeenAfter: timeParam('last seen after'),
            limit: limitParam(100, 1000),
            cursor: { type: 'string', maxLength: 300, description: '`next` of the previous page' },
          },
        },
        'x-responses': { 200: { description: '`{items: [twin], next: cursor | null}`' } },
      },
    },
    async (req) => {
      const q = req.query as { site?: string; type?: string; tag?: string[]; anomalous?: boolean; lastSeenBefore?: string; lastSeenAfter?: string; limit: number; cursor?: string };
      const page = ctx.twins.listTwins({
        site: scopedSite(req.principal, q.site),
        type: q.type,
        tags: q.tag,
        anomalous: q.anomalous,
        lastSeenBefore: parseTime(q.lastSeenBefore, 'lastSeenBefore'),
        lastSeenAfter: parseTime(q.lastSeenAfter, 'lastSeenAfter'),
        after: decodeCursor(q.cursor),
        limit: q.limit,
      });
      return { items: page.items, next: page.next === null ? null : encodeCursor(page.next) };
    },
  );

  app.get(
    '/v1/twins/:id',
    {
      config: { action: 'read' },
      schema: {
        summary: 'One twin: reported telemetry and properties, desired, $version, health, model, anomaly state',
        tags: ['twins'],
        params: idParams,
        'x-responses': { 200: { description: 'The twin; the ETag header is `"<$version>"`, for If-Match on writes' }, 404: { description: 'No such twin' } },
      },
    },
    async (req, reply) => {
      const twin = readable(req, (req.params as { id: string }).id);
      return reply.header('etag', twin.etag).send(twin);
    },
  );

  app.patch(
    '/v1/twins/:id/desired',
    {
      config: { action: 'write' },
      schema: {
        summary: 'Change desired properties (JSON Merge Patch; null removes a key)',
        tags: ['twins'],
        description: 'Needs If-Match with the twin\'s ETag (or *). Versioned, audited, and delivered to the device through its collector\'s desired feed.',
        params: idParams,
        body: { type: 'object', description: 'merge patch of the desired document' },
        'x-responses': {
          200: { description: 'The updated twin (new ETag)' },
          412: { description: 'Stale ETag: re-read the twin and retry' },
          428: { description: 'If-Match missing' },
        },
      },
    },
    async (req, reply) => {
      const id = (req.params as { id: string }).id;
      const r = ctx.twins.patchDesired(id, req.body, req.headers['if-match'], req.principal);
      if (r.changed) ctx.events.publish('desired', r.site, id, { version: r.version, patch: req.body as Record<string, unknown>, by: req.principal.name });
      return reply.header('etag', r.twin.etag).send(r.twin);
    },
  );

  app.patch(
    '/v1/twins/:id',
    {
      config: { action: 'write' },
      schema: {
        summary: 'Set the device type and tags (tags merge; null removes a tag)',
        tags: ['twins'],
        params: idParams,
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            deviceType: { type: ['string', 'null'], minLength: 1, maxLength: 64 },
            tags: { type: 'object', propertyNames: { pattern: TAG_KEY.source }, additionalProperties: { type: ['string', 'null'], maxLength: 256 } },
          },
        },
        'x-responses': { 200: { description: 'The updated twin (new ETag)' }, 412: { description: 'Stale ETag' }, 428: { description: 'If-Match missing' } },
      },
    },
    async (req, reply) => {
      const id = (req.params as { id: string }).id;
      const twin = ctx.twins.patchTwin(id, req.body as { deviceType?: string | null; tags?: Record<string, string | null> }, req.headers['if-match'], req.principal);
      return reply.header('etag', twin.etag).send(twin);
    },
  );

  const auditQuery = {
    type: 'object',
    properties: { action: { type: 'string', maxLength: 64 }, limit: limitParam(100, 1000), cursor: { type: 'integer', minimum: 1, description: '`next` of the previous page' } },
  };

  app.get(
    '/v1/twins/:id/audit',
    { config: { action: 'read' }, schema: { summary: 'Audit trail of one twin, newest first', tags: ['audit'], params: idParams, querystring: auditQuery } },
    async (req) => {
      const twin = readable(req, (req.params as { id: string }).id);
      const q = req.query as { action?: string; limit: number; cursor?: number };
      return ctx.audit.list({ device: twin.deviceId, action: q.action, before: q.cursor, limit: q.limit });
    },
  );

  app.get(
    '/v1/audit',
    {
      config: { action: 'read' },
      schema: {
        summary: 'Audit log (who, when, what), newest first',
        tags: ['audit'],
        querystring: { ...auditQuery, properties: { ...auditQuery.properties, site: siteParam, device: deviceParam } },
      },
    },
    async (req) => {
      const q = req.query as { site?: string; device?: string; action?: string; limit: number; cursor?: number };
      // A site-scoped caller sees only entries about its site (token management has no site).
      const site = scopedSite(req.principal, q.site);
      return ctx.audit.list({ site, device: q.device, action: q.action, before: q.cursor, limit: q.limit });
    },
  );

  registerSiteRoutes(app, ctx);
}
