/**
 * The model registry API (`/v1/models`): upload (admin), list and read (viewer), promote and
 * withdraw (operator), and what collectors fetch (entry, file, promotions for their site).
 */
import { createReadStream } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { EdgetwinError, ErrorCodes } from '../../../common/errors.js';
import { MODEL_ID_PATTERN } from '../../../common/wire/model-protocol.js';
import { requirePromotionScope, scopedPromotionTarget, scopedSite } from '../../auth/site-policy.js';
import type { ModelPromotions } from '../../models/model-promotions.js';
import type { ModelRegistry } from '../../models/model-registry.js';
import type { ServerContext } from '../context.js';
import { deviceParam, modelVersionParams, siteParam, typed } from './params.js';

const id = Type.String({ pattern: MODEL_ID_PATTERN });
type Api = ReturnType<typeof typed>;

export function registerModelRoutes(app: FastifyInstance, ctx: ServerContext): void {
  // An unfit model (EDGETWIN_ERR_MODEL) is answered 400 and an existing version (CONFLICT) 409 by the shared handler.
  routes(typed(app), ctx.models, ctx.promotions, ctx);
}

function routes(app: Api, registry: ModelRegistry, promotions: ModelPromotions, ctx: ServerContext): void {
  app.post(
    '/v1/models',
    {
      config: { action: 'write' },
      schema: {
        summary: 'Upload a model version (admin): its manifest entry and the ONNX file in base64',
        tags: ['models'],
        description:
          'The entry follows models/manifest.json (name, version, sha256, bytes, shapes, feature recipe, thresholds…). The bytes must match its sha256; by default the cloud loads the model once with onnxruntime and refuses one that does not run. Versions are immutable: the same bytes again answer 200, other bytes 409. With `models.signingKeyFile` the entry is signed.',
        body: Type.Object(
          { entry: Type.Record(Type.String(), Type.Unknown()), file: Type.String({ description: 'the .onnx file, base64' }) },
          { additionalProperties: false },
        ),
        'x-responses': {
          201: { description: 'Stored: `{name, version, sha256, bytes, signed, uploadedAt, uploadedBy}`' },
          200: { description: 'This version was already stored with these bytes' },
          400: { description: '`EDGETWIN_ERR_MODEL`: entry invalid, bytes do not match its sha256, or onnxruntime refused the model' },
          409: { description: '`EDGETWIN_ERR_CONFLICT`: the version exists with other bytes' },
        },
      },
    },
    async (req, reply) => {
      if (req.principal.role !== 'admin')
        throw new EdgetwinError(ErrorCodes.FORBIDDEN, `role ${req.principal.role} may not upload models (admin only)`, {
          details: { role: req.principal.role },
        });
      const body = req.body;
      const r = await registry.upload(body.entry, body.file, req.principal);
      return reply.status(r.created ? 201 : 200).send(r.model);
    },
  );

  app.get(
    '/v1/models',
    {
      config: { action: 'read' },
      schema: {
        summary: 'Model versions in the registry, with the promotions that name them',
        tags: ['models'],
        querystring: Type.Object({ name: Type.Optional(id) }),
      },
    },
    async (req) => {
      const q = req.query;
      const active = await promotions.list(req.principal.site ?? undefined);
      return {
        items: (await registry.list(q.name)).map((m) => ({
          ...m,
          promotions: active.filter((p) => p.name === m.name && p.version === m.version),
        })),
      };
    },
  );

  app.get(
    '/v1/models/promotions',
    {
      config: { action: 'feed' },
      schema: {
        summary: 'Active promotions (of one site: those that can cover its devices); collectors poll this',
        tags: ['models'],
        querystring: Type.Object({
          site: Type.Optional(siteParam),
          withdrawn: Type.Boolean({ default: false, description: 'include withdrawn promotions' }),
        }),
      },
    },
    async (req) => {
      const q = req.query;
      return { items: await promotions.list(scopedSite(req.principal, q.site), q.withdrawn) };
    },
  );

  app.get(
    '/v1/models/:name/:version',
    {
      config: { action: 'feed' },
      schema: { summary: 'One version: its record, manifest entry and signature', tags: ['models'], params: modelVersionParams },
    },
    async (req) => {
      const p = req.params;
      return registry.get(p.name, p.version);
    },
  );

  app.get(
    '/v1/models/:name/:version/file',
    {
      config: { action: 'feed' },
      schema: { summary: 'The ONNX file of one version (application/octet-stream)', tags: ['models'], params: modelVersionParams },
    },
    async (req, reply) => {
      const p = req.params;
      const m = await registry.get(p.name, p.version);
      return reply
        .type('application/octet-stream')
        .header('content-length', String(m.bytes))
        .header('x-edgetwin-sha256', m.sha256)
        .send(createReadStream(registry.files.filePath(p.name, p.version)));
    },
  );

  app.post(
    '/v1/models/:name/:version/promote',
    {
      config: { action: 'write' },
      schema: {
        summary: 'Promote a version to a site, a device group (tag) or a device (operator)',
        tags: ['models'],
        description:
          'Sets desired `model` = `{name, version, sha256}` on every twin the promotion covers (now, and again every `models.reconcileIntervalMs` for devices that appear or are tagged later). The most specific promotion covering a device wins (device > site+tag > tag > site), then the newest.',
        params: modelVersionParams,
        body: Type.Object(
          {
            site: Type.Optional(siteParam),
            tag: Type.Optional(Type.String({ minLength: 1, maxLength: 300, description: '`key` or `key:value`' })),
            device: Type.Optional(deviceParam),
          },
          { additionalProperties: false, minProperties: 1 },
        ),
        'x-responses': { 201: { description: '`{promotion, devices}`: the devices whose desired model changed' } },
      },
    },
    async (req, reply) => {
      const p = req.params;
      const body = req.body;
      const owner = body.device === undefined ? undefined : await ctx.twins.siteOf(body.device);
      const target = scopedPromotionTarget(req.principal, body, owner);
      return reply.status(201).send(await promotions.promote(p.name, p.version, target, req.principal));
    },
  );

  app.delete(
    '/v1/models/promotions/:id',
    {
      config: { action: 'write' },
      schema: {
        summary: 'Withdraw a promotion (operator): its devices go to the next promotion covering them, or back to their own model',
        tags: ['models'],
        params: Type.Object({ id: Type.Integer({ minimum: 1 }) }),
      },
    },
    async (req) => {
      const id = req.params.id;
      const promotion = await promotions.get(id);
      if (!promotion) throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no promotion ${id}`);
      requirePromotionScope(req.principal, id, promotion.site);
      return promotions.withdraw(id, req.principal);
    },
  );
}
