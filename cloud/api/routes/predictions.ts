/**
 * Failure predictions and model drift (issue 16): a twin's prediction history
 * (`GET /v1/twins/{id}/predictions`), a model version's drift per cohort and window
 * (`GET /v1/models/{name}/{version}/drift`), and an evaluation on demand (operators).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import Type from 'typebox';
import { EdgetwinError, ErrorCodes } from '../../../common/errors.js';
import { ASSET_PATTERN } from '../../../common/wire/record.js';
import { requireDevice } from '../../auth/site-policy.js';
import type { DriftService } from '../../drift/drift-service.js';
import { parseCohort } from '../../drift/drift-store.js';
import type { PredictionStore } from '../../predictions/prediction-store.js';
import type { ServerContext } from '../context.js';
import { deviceIdParams, limitParam, modelVersionParams, timeParam, timeRange, typed } from './params.js';

const DAY = 86_400_000;

export function registerPredictionRoutes(
  fastify: FastifyInstance,
  ctx: ServerContext & { predictions: PredictionStore; drift: DriftService },
): void {
  const app = typed(fastify);
  app.get(
    '/v1/twins/:id/predictions',
    {
      config: { action: 'read' },
      schema: {
        summary: "A twin's failure-model predictions (remaining useful life per asset), oldest first",
        tags: ['twins'],
        params: deviceIdParams,
        querystring: Type.Object({
          asset: Type.Optional(Type.String({ pattern: ASSET_PATTERN })),
          from: timeParam('from (sample time)'),
          to: timeParam('to (sample time)'),
          limit: limitParam(1000, 10_000),
          cursor: Type.Optional(Type.String({ pattern: '^\\d{1,16}:\\d{1,16}:\\d{1,16}$', description: '`next` of the previous page' })),
        }),
        'x-responses': {
          200: {
            description:
              '`{device, items: [{asset, rulCycles, unit, at, model, alert}], next}`; the twin shows the newest per asset as `predictions`',
          },
          404: { description: 'No such twin' },
        },
      },
    },
    async (req) => {
      const device = req.params.id;
      // Another site's device is a 404 like a missing one (cloud/auth/site-policy.ts).
      requireDevice(req.principal, device, (await ctx.twins.getTwin(device))?.site);
      const q = req.query;
      const { from, to } = timeRange(q, 30 * DAY, 3660 * DAY);
      const page = await ctx.predictions.history(device, { asset: q.asset, from, to, limit: q.limit, after: q.cursor });
      return { device, ...page };
    },
  );

  const model = async (p: { name: string; version: string }): Promise<{ name: string; version: string }> => {
    const found = await ctx.store.get('SELECT name FROM models WHERE name = ? AND version = ?', [p.name, p.version]);
    if (!found) throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no model ${p.name} ${p.version}`);
    return p;
  };
  /** A site-scoped token sees its own site's cohort only (a tag cohort may span sites). */
  const cohortFor = (req: FastifyRequest, cohort: string | undefined): string | undefined => {
    if (cohort !== undefined && !parseCohort(cohort))
      throw new EdgetwinError(ErrorCodes.BAD_REQUEST, 'cohort must be site:<site> or tag:<key>=<value>');
    const own = req.principal.site;
    if (own === null) return cohort;
    if (cohort !== undefined && cohort !== `site:${own}`) throw new EdgetwinError(ErrorCodes.FORBIDDEN, `token is scoped to site ${own}`);
    return `site:${own}`;
  };
  const driftQuery = Type.Object({
    cohort: Type.Optional(Type.String({ maxLength: 330, description: '`site:<site>` or `tag:<key>=<value>`; default every cohort' })),
    from: timeParam('windows ending after'),
    to: timeParam('windows starting before'),
  });

  app.get(
    '/v1/models/:name/:version/drift',
    {
      config: { action: 'read' },
      schema: {
        summary: "A model version's drift per cohort and window: KS distance and p-value, PSI and Jensen-Shannon per stream",
        tags: ['models'],
        description:
          'Agents send fixed-bin histograms of each model input, error and output; the cloud merges them per cohort (site, or tag from `drift.cohortTags`) and window (`drift.windowMs`) and compares each with its reference (the manifest`s, or the cohort`s first `drift.baselineMs`). `drift` is true when D > 0.05 with p < 0.01. docs/drift.md.',
        params: modelVersionParams,
        querystring: driftQuery,
        'x-responses': {
          200: {
            description:
              '`{model, thresholds, windowMs, runbook, cohorts: [{cohort, reference, windows: [{start, end, drifting, streams}]}]}`',
          },
        },
      },
    },
    async (req) => {
      const m = await model(req.params);
      const q = req.query;
      return {
        name: m.name,
        ...(await ctx.drift.report(m.version, { cohort: cohortFor(req, q.cohort), ...timeRange(q, 30 * DAY, 400 * DAY) })),
      };
    },
  );

  app.post(
    '/v1/models/:name/:version/drift/evaluate',
    {
      config: { action: 'write' },
      schema: {
        summary: "Evaluates a model version's drift now (it also runs every drift.evaluateIntervalMs) and answers the report",
        tags: ['models'],
        params: modelVersionParams,
        querystring: driftQuery,
      },
    },
    async (req) => {
      const m = await model(req.params);
      const q = req.query;
      const cohort = cohortFor(req, q.cohort);
      await ctx.drift.evaluateModel(m.version);
      return { name: m.name, ...(await ctx.drift.report(m.version, { cohort, ...timeRange(q, 30 * DAY, 400 * DAY) })) };
    },
  );
}

/** Adds `predictions` (the newest per asset) to twins the API answers. */
export async function withPredictions<T extends { deviceId: string }>(
  predictions: PredictionStore | undefined,
  twins: T[],
): Promise<(T & { predictions: Record<string, unknown> })[]> {
  if (!predictions) return twins.map((t) => ({ ...t, predictions: {} }));
  const latest = await predictions.latestMany(twins.map((t) => t.deviceId));
  return twins.map((t) => ({ ...t, predictions: latest.get(t.deviceId) ?? {} }));
}
