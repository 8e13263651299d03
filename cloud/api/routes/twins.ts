/** The twin API: list and read twins, change desired state and tags (ETag-checked), audit; sites in ./sites.ts. */
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { EdgetwinError, ErrorCodes } from '../../../common/errors.js';
import type { Principal } from '../../auth/tokens.js';
import { requireDevice, requireOwnerChange, scopedSite } from '../../auth/site-policy.js';
import type { ServerContext } from '../context.js';
import { TAG_KEY, type TwinView } from '../../twins/twin-store.js';
import { deviceIdParams, deviceParam, limitParam, parseTime, siteParam, timeParam, typed } from './params.js';
import { registerSiteRoutes } from './sites.js';
import { withPredictions } from './predictions.js';

const encodeCursor = (device: string): string => Buffer.from(device, 'utf8').toString('base64url');
function decodeCursor(c: string | undefined): string | undefined {
  if (c === undefined) return undefined;
  const d = Buffer.from(c, 'base64url').toString('utf8');
  if (d.length === 0) throw new EdgetwinError(ErrorCodes.BAD_REQUEST, 'cursor is not one this API returned');
  return d;
}

/** What a twin without predictions shows (one object, so the serialized twin below stays cached). */
const NO_PREDICTIONS: Readonly<Record<string, unknown>> = Object.freeze({});

export function registerTwinRoutes(fastify: FastifyInstance, ctx: ServerContext): void {
  const app = typed(fastify);
  /** GET /v1/twins/{id} bodies without `health`, per cached view (the entry goes with the view). */
  const bodies = new WeakMap<TwinView, { predictions: object; head: string }>();
  /** The twin, when the caller's scope covers its owner; another site's device is a 404 like a missing one (site-policy). */
  const readable = async (principal: Principal, id: string): Promise<TwinView> => {
    const twin = await ctx.twins.getTwin(id);
    requireDevice(principal, id, twin?.site);
    return twin!;
  };
  /** Before a write: the same rule, read from the database (the store applies it again on the locked row). */
  const writable = async (principal: Principal, id: string): Promise<void> => {
    requireDevice(principal, id, await ctx.twins.siteOf(id));
  };

  app.get(
    '/v1/twins',
    {
      config: { action: 'read' },
      schema: {
        summary: 'List twins, filtered, in pages ordered by device id',
        tags: ['twins'],
        querystring: Type.Object({
          site: Type.Optional(siteParam),
          type: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'device type' })),
          tag: Type.Optional(
            Type.Array(Type.String({ minLength: 1, maxLength: 300 }), { description: '`key` or `key:value`; repeat to require several' }),
          ),
          anomalous: Type.Optional(
            Type.Boolean({ description: 'only twins whose newest reading of some metric is an alert (true) or none is (false)' }),
          ),
          lastSeenBefore: timeParam('last seen before'),
          lastSeenAfter: timeParam('last seen after'),
          limit: limitParam(100, 1000),
          cursor: Type.Optional(Type.String({ maxLength: 300, description: '`next` of the previous page' })),
        }),
        'x-responses': { 200: { description: '`{items: [twin], next: cursor | null}`' } },
      },
    },
    async (req) => {
      const q = req.query;
      const page = await ctx.twins.listTwins({
        site: scopedSite(req.principal, q.site),
        type: q.type,
        tags: q.tag,
        anomalous: q.anomalous,
        lastSeenBefore: parseTime(q.lastSeenBefore, 'lastSeenBefore'),
        lastSeenAfter: parseTime(q.lastSeenAfter, 'lastSeenAfter'),
        after: decodeCursor(q.cursor),
        limit: q.limit,
      });
      return { items: await withPredictions(ctx.predictions, page.items), next: page.next === null ? null : encodeCursor(page.next) };
    },
  );

  app.get(
    '/v1/twins/:id',
    {
      config: { action: 'read' },
      schema: {
        summary: 'One twin: reported telemetry and properties, desired, $version, health, model, anomaly state',
        tags: ['twins'],
        params: deviceIdParams,
        'x-responses': {
          200: { description: 'The twin; the ETag header is `"<$version>"`, for If-Match on writes' },
          404: { description: 'No such twin' },
        },
      },
    },
    async (req, reply) => {
      const id = req.params.id;
      const parts = await ctx.twins.getTwinParts(id, ctx.predictions);
      requireDevice(req.principal, id, parts?.view.site);
      const { view, health } = parts!;
      const predictions = parts!.predictions ?? NO_PREDICTIONS;
      // Both parts are cached objects, replaced when the device changes: serialized once per change.
      let body = bodies.get(view);
      if (body?.predictions !== predictions) {
        // Kept without its closing brace: the per-read part is appended, not spliced into a copy.
        body = { predictions, head: JSON.stringify({ ...view, health: undefined, predictions }).slice(0, -1) };
        bodies.set(view, body);
      }
      // Health depends on the clock: spliced in at every read (the key moves last; JSON objects are unordered).
      return reply
        .header('etag', view.etag)
        .type('application/json; charset=utf-8')
        .send(`${body.head},"health":${JSON.stringify(health)}}`);
    },
  );

  app.patch(
    '/v1/twins/:id/desired',
    {
      config: { action: 'write' },
      schema: {
        summary: 'Change desired properties (JSON Merge Patch; null removes a key)',
        tags: ['twins'],
        description:
          "Needs If-Match with the twin's ETag (or *). Versioned, audited, and delivered to the device through its collector's desired feed.",
        params: deviceIdParams,
        body: Type.Record(Type.String(), Type.Unknown(), { description: 'merge patch of the desired document' }),
        'x-responses': {
          200: { description: 'The updated twin (new ETag)' },
          412: { description: 'Stale ETag: re-read the twin and retry' },
          428: { description: 'If-Match missing' },
        },
      },
    },
    async (req, reply) => {
      const id = req.params.id;
      await writable(req.principal, id);
      const r = await ctx.twins.patchDesired(id, req.body, req.headers['if-match'], req.principal);
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
        params: deviceIdParams,
        body: Type.Object(
          {
            deviceType: Type.Optional(Type.Unsafe<string | null>({ type: ['string', 'null'], minLength: 1, maxLength: 64 })),
            tags: Type.Optional(
              Type.Unsafe<Record<string, string | null>>({
                type: 'object',
                propertyNames: { pattern: TAG_KEY.source },
                additionalProperties: { type: ['string', 'null'], maxLength: 256 },
              }),
            ),
          },
          { additionalProperties: false },
        ),
        'x-responses': {
          200: { description: 'The updated twin (new ETag)' },
          412: { description: 'Stale ETag' },
          428: { description: 'If-Match missing' },
        },
      },
    },
    async (req, reply) => {
      const id = req.params.id;
      await writable(req.principal, id);
      const twin = await ctx.twins.patchTwin(id, req.body, req.headers['if-match'], req.principal);
      return reply.header('etag', twin.etag).send(twin);
    },
  );

  app.put(
    '/v1/twins/:id/site',
    {
      config: { action: 'write' },
      schema: {
        summary: 'Set the site that owns a device: claim it before its first data, or move it (admin without a site scope)',
        tags: ['twins'],
        description:
          "Device ids are global: a device belongs to the site whose data for it arrived first, and another site's data for it is refused " +
          "(EDGETWIN_ERR_DEVICE_CLAIMED). This claims an id for a site before any data, or moves a device: If-Match with the twin's ETag " +
          '(or *), audited under both sites; desired state, tags and reported state go along, the desired document is sent on the new ' +
          "site's desired feed, and history stays with the site that sent it. From then on the old site's data for the device is refused.",
        params: deviceIdParams,
        body: Type.Object({ site: siteParam }, { additionalProperties: false }),
        'x-responses': {
          200: { description: 'The twin (new ETag when it moved)' },
          403: { description: 'Not an admin, or an admin scoped to a site' },
          412: { description: 'Stale ETag' },
          428: { description: 'If-Match missing (the device has a twin)' },
        },
      },
    },
    async (req, reply) => {
      const id = req.params.id;
      requireOwnerChange(req.principal);
      await ctx.ownership.setOwner(id, req.body.site, req.headers['if-match'], req.principal);
      const twin = (await ctx.twins.getTwin(id))!;
      return reply.header('etag', twin.etag).send(twin);
    },
  );

  const auditProps = {
    action: Type.Optional(Type.String({ maxLength: 64 })),
    limit: limitParam(100, 1000),
    cursor: Type.Optional(Type.Integer({ minimum: 1, description: '`next` of the previous page' })),
  };

  app.get(
    '/v1/twins/:id/audit',
    {
      config: { action: 'read' },
      schema: {
        summary: 'Audit trail of one twin, newest first',
        tags: ['audit'],
        params: deviceIdParams,
        querystring: Type.Object(auditProps),
      },
    },
    async (req) => {
      const twin = await readable(req.principal, req.params.id);
      const q = req.query;
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
        querystring: Type.Object({ ...auditProps, site: Type.Optional(siteParam), device: Type.Optional(deviceParam) }),
      },
    },
    async (req) => {
      const q = req.query;
      // A site-scoped caller sees only entries about its site (token management has no site).
      const site = scopedSite(req.principal, q.site);
      return ctx.audit.list({ site, device: q.device, action: q.action, before: q.cursor, limit: q.limit });
    },
  );

  registerSiteRoutes(fastify, ctx);
}
