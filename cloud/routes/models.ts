/**
 * The model registry API (`/v1/models`): upload (admin), list and read (viewer), promote and
 * withdraw (operator), and what collectors fetch (entry, file, promotions for their site).
 */
import { createReadStream } from 'node:fs';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { EdgetwinError, ErrorCodes, isEdgetwinError } from '../../common/errors.js';
import { MODEL_ID_PATTERN } from '../../common/model-protocol.js';
import { requireSite, scopedSite } from '../auth/authenticator.js';
import { ModelPromotions } from '../models/model-promotions.js';
import { ModelRegistry } from '../models/model-registry.js';
import type { ServerContext } from '../server.js';
import { deviceParam, siteParam } from './params.js';

const id = { type: 'string', pattern: MODEL_ID_PATTERN };
const versionParams = { type: 'object', required: ['name', 'version'], properties: { name: id, version: id } };

/** Codes the shared error handler does not map: a model that is unfit is the caller's 400, an existing version 409. */
const MODEL_STATUS: Partial<Record<string, number>> = { [ErrorCodes.MODEL]: 400, [ErrorCodes.CONFLICT]: 409 };

export function registerModelRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const registry = new ModelRegistry(ctx.twins.db, ctx.audit, ctx.cfg.models, ctx.cfg.stateDir);
  const promotions = new ModelPromotions(ctx.twins.db, ctx.twins, registry, ctx.audit, ctx.events);
  let timer: NodeJS.Timeout | undefined;
  if (ctx.cfg.models.reconcileIntervalMs > 0) {
    timer = setInterval(() => {
      try {
        promotions.reconcile();
      } catch (err) {
        ctx.log.error({ err, code: isEdgetwinError(err) ? err.code : ErrorCodes.INTERNAL }, 'model promotions: reconcile failed');
      }
    }, ctx.cfg.models.reconcileIntervalMs);
    timer.unref();
  }
  app.addHook('onClose', async () => clearInterval(timer));

  // A plugin of its own, so that its error handler (the two codes above) applies to these routes only.
  void app.register(async (sub) => {
    sub.setErrorHandler((err, _req, reply) => {
      const status = isEdgetwinError(err) ? MODEL_STATUS[err.code] : undefined;
      if (!isEdgetwinError(err) || status === undefined) throw err; // the shared handler answers everything else
      return reply.status(status).send(err.details ? { code: err.code, message: err.message, details: err.details } : { code: err.code, message: err.message });
    });
    routes(sub, registry, promotions);
  });
}

function routes(app: FastifyInstance, registry: ModelRegistry, promotions: ModelPromotions): void {
  app.post(
    '/v1/models',
    {
      config: { action: 'write' },
      schema: {
        summary: 'Upload a model version (admin): its manifest entry and the ONNX file in base64',
        tags: ['models'],
        description:
          'The entry follows models/manifest.json (name, version, sha256, bytes, shapes, feature recipe, thresholds…). The bytes must match its sha256; by default the cloud loads the model once with onnxruntime and refuses one that does not run. Versions are immutable: the same bytes again answer 200, other bytes 409. With `models.signingKeyFile` the entry is signed.',
        body: {
          type: 'object',
          required: ['entry', 'file'],
          additionalProperties: false,
          properties: { entry: { type: 'object' }, file: { type: 'string', description: 'the .onnx file, base64' } },
        },
        'x-responses': {
          201: { description: 'Stored: `{name, version, sha256, bytes, signed, uploadedAt, uploadedBy}`' },
          200: { description: 'This version was already stored with these bytes' },
          400: { description: '`EDGETWIN_ERR_MODEL`: entry invalid, bytes do not match its sha256, or onnxruntime refused the model' },
          409: { description: '`EDGETWIN_ERR_CONFLICT`: the version exists with other bytes' },
        },
      },
    },
    async (req: FastifyRequest, reply: FastifyReply) => {
      if (req.principal.role !== 'admin') throw new EdgetwinError(ErrorCodes.FORBIDDEN, `role ${req.principal.role} may not upload models (admin only)`, { details: { role: req.principal.role } });
      const body = req.body as { entry: unknown; file: string };
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
        querystring: { type: 'object', properties: { name: id } },
      },
    },
    async (req) => {
      const q = req.query as { name?: string };
      const active = promotions.list(req.principal.site ?? undefined);
      return { items: registry.list(q.name).map((m) => ({ ...m, promotions: active.filter((p) => p.name === m.name && p.version === m.version) })) };
    },
  );

  app.get(
    '/v1/models/promotions',
    {
      config: { action: 'feed' },
      schema: {
        summary: 'Active promotions (of one site: those that can cover its devices); collectors poll this',
        tags: ['models'],
        querystring: { type: 'object', properties: { site: siteParam, withdrawn: { type: 'boolean', default: false, description: 'include withdrawn promotions' } } },
      },
    },
    async (req) => {
      const q = req.query as { site?: string; withdrawn: boolean };
      return { items: promotions.list(scopedSite(req.principal, q.site), q.withdrawn) };
    },
  );

  app.get(
    '/v1/models/:name/:version',
    {
      config: { action: 'feed' },
      schema: { summary: 'One version: its record, manifest entry and signature', tags: ['models'], params: versionParams },
    },
    async (req) => {
      const p = req.params as { name: string; version: string };
      return registry.get(p.name, p.version);
    },
  );

  app.get(
    '/v1/models/:name/:version/file',
    {
      config: { action: 'feed' },
      schema: { summary: 'The ONNX file of one version (application/octet-stream)', tags: ['models'], params: versionParams },
    },
    async (req, reply) => {
      const p = req.params as { name: string; version: string };
      const m = registry.get(p.name, p.version);
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
        params: versionParams,
        body: {
          type: 'object',
          additionalProperties: false,
          minProperties: 1,
          properties: { site: siteParam, tag: { type: 'string', minLength: 1, maxLength: 300, description: '`key` or `key:value`' }, device: deviceParam },
        },
        'x-responses': { 201: { description: '`{promotion, devices}`: the devices whose desired model changed' } },
      },
    },
    async (req, reply) => {
      const p = req.params as { name: string; version: string };
      const body = req.body as { site?: string; tag?: string; device?: string };
      if (body.site !== undefined) requireSite(req.principal, body.site);
      return reply.status(201).send(promotions.promote(p.name, p.version, body, req.principal));
    },
  );

  app.delete(
    '/v1/models/promotions/:id',
    {
      config: { action: 'write' },
      schema: {
        summary: 'Withdraw a promotion (operator): its devices go to the next promotion covering them, or back to their own model',
        tags: ['models'],
        params: { type: 'object', required: ['id'], properties: { id: { type: 'integer', minimum: 1 } } },
      },
    },
    async (req) => promotions.withdraw((req.params as { id: number }).id, req.principal),
  );
}
