/**
 * Alerts API: `/v1/alerts` (list, one, acknowledge), `/v1/alert-rules` (config rules read-only,
 * API rules created, replaced, deleted), `/v1/alert-silences`, and `/v1/alert-notifications`
 * (delivery state, dead letters, retry). Writes need the operator role and are audited. A
 * site-scoped principal sees and acts on its site's alerts only; platform alerts (lakehouse, API,
 * Event Hubs: no site) are for unscoped principals.
 */
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { EdgetwinError, ErrorCodes } from '../../../common/errors.js';
import type { Alerting } from '../../alerts/alerting.js';
import { RULE_KINDS, ruleSchema, type RuleSpec } from '../../alerts/rules.js';
import type { Alert } from '../../alerts/types.js';
import { requireSite, scopedSite } from '../../auth/site-policy.js';
import type { Principal } from '../../auth/tokens.js';
import type { ServerContext } from '../context.js';
import { deviceParam, limitParam, siteParam, typed } from './params.js';

const idParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

function requireAlertScope(p: Principal, site: string | null): void {
  if (p.site === null) return;
  if (site === null) throw new EdgetwinError(ErrorCodes.FORBIDDEN, `token is scoped to site ${p.site}; platform alerts are not`);
  requireSite(p, site);
}

export function registerAlertRoutes(fastify: FastifyInstance, ctx: ServerContext & { alerting: Alerting }): void {
  const app = typed(fastify);
  const { alerting } = ctx;
  const visible = (principal: Principal, a: Alert | undefined, id: string): Alert => {
    if (!a) throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no alert ${id}`);
    requireAlertScope(principal, a.site);
    return a;
  };

  app.get(
    '/v1/alerts',
    {
      config: { action: 'read' },
      schema: {
        summary: 'Alerts, newest first (default: open ones — pending or firing)',
        tags: ['alerts'],
        querystring: Type.Object({
          state: Type.Enum(['open', 'pending', 'firing', 'resolved', 'all'], { default: 'open' }),
          site: Type.Optional(siteParam),
          device: Type.Optional(deviceParam),
          rule: Type.Optional(Type.String({ maxLength: 64 })),
          limit: limitParam(100, 1000),
        }),
      },
    },
    async (req) => {
      const q = req.query;
      const site = scopedSite(req.principal, q.site);
      const items = await alerting.alerts.list({ state: q.state, site, device: q.device, ruleId: q.rule, limit: q.limit });
      return { items };
    },
  );

  app.get(
    '/v1/alerts/:id',
    { config: { action: 'read' }, schema: { summary: 'One alert', tags: ['alerts'], params: idParams } },
    async (req) => {
      const { id } = req.params;
      return visible(req.principal, await alerting.alerts.get(id), id);
    },
  );

  app.post(
    '/v1/alerts/:id/ack',
    {
      config: { action: 'write' },
      schema: {
        summary: 'Acknowledge an open alert (audited)',
        tags: ['alerts'],
        params: idParams,
        body: Type.Optional(Type.Object({ note: Type.Optional(Type.String({ maxLength: 500 })) }, { additionalProperties: false })),
      },
    },
    async (req) => {
      const { id } = req.params;
      visible(req.principal, await alerting.alerts.get(id), id);
      return alerting.alerts.ack(id, req.principal, req.body?.note ?? null);
    },
  );

  // ---- silences

  app.get(
    '/v1/alert-silences',
    {
      config: { action: 'read' },
      schema: {
        summary: 'Silences (active ones unless all=true)',
        tags: ['alerts'],
        querystring: Type.Object({ all: Type.Boolean({ default: false }) }),
      },
    },
    async (req) => ({ items: await alerting.alerts.silences(req.query.all, req.principal.site ?? undefined) }),
  );

  app.post(
    '/v1/alert-silences',
    {
      config: { action: 'write' },
      schema: {
        summary: 'Silence matching alerts for a while (audited): no notifications, still listed',
        tags: ['alerts'],
        body: Type.Object(
          {
            ruleId: Type.Optional(Type.String({ maxLength: 64 })),
            site: Type.Optional(siteParam),
            device: Type.Optional(deviceParam),
            durationS: Type.Integer({ minimum: 60, maximum: 30 * 86_400 }),
            comment: Type.String({ minLength: 1, maxLength: 500 }),
          },
          { additionalProperties: false },
        ),
      },
    },
    async (req, reply) => {
      const b = req.body;
      // A scoped operator's silence is always limited to its site.
      const site = scopedSite(req.principal, b.site);
      if (b.device && req.principal.site !== null) {
        const owner = await ctx.twins.getTwin(b.device);
        if (owner) requireSite(req.principal, owner.site);
      }
      return reply.status(201).send(await alerting.alerts.silence({ ...b, site }, req.principal));
    },
  );

  app.delete(
    '/v1/alert-silences/:id',
    { config: { action: 'write' }, schema: { summary: 'End a silence now (audited)', tags: ['alerts'], params: idParams } },
    async (req, reply) => {
      const { id } = req.params;
      const ok = await alerting.alerts.unsilence(id, req.principal, (s) => requireAlertScope(req.principal, s.site));
      if (!ok) throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no silence ${id}`);
      return reply.status(204).send();
    },
  );

  // ---- rules

  app.get(
    '/v1/alert-rules',
    { config: { action: 'read' }, schema: { summary: 'Alert rules (config and API)', tags: ['alerts'] } },
    async (req) => {
      const rules = await alerting.alerts.rules(alerting.destinationIds);
      const p = req.principal;
      return {
        items: rules.filter((r) => p.site === null || r.site === undefined || r.site === p.site),
        kinds: RULE_KINDS,
        destinations: alerting.destinationIds,
      };
    },
  );

  const ruleScope = (p: Principal, spec: RuleSpec): void => {
    if (p.site === null) return;
    if (spec.site !== p.site) throw new EdgetwinError(ErrorCodes.FORBIDDEN, `token is scoped to site ${p.site}: rules must name it`);
  };

  app.post(
    '/v1/alert-rules',
    { config: { action: 'write' }, schema: { summary: 'Create an alert rule (audited)', tags: ['alerts'], body: ruleSchema } },
    async (req, reply) => {
      const spec = req.body;
      ruleScope(req.principal, spec);
      alerting.checkRule(spec);
      const rule = await alerting.alerts.putRule(spec, false, req.principal, alerting.destinationIds);
      alerting.engine.poke();
      return reply.status(201).send(rule);
    },
  );

  app.put(
    '/v1/alert-rules/:id',
    {
      config: { action: 'write' },
      schema: { summary: 'Replace an API alert rule (audited)', tags: ['alerts'], params: idParams, body: ruleSchema },
    },
    async (req) => {
      const spec = req.body;
      if (spec.id !== req.params.id) throw new EdgetwinError(ErrorCodes.BAD_REQUEST, 'the body id must match the path');
      ruleScope(req.principal, spec);
      alerting.checkRule(spec);
      const rule = await alerting.alerts.putRule(spec, true, req.principal, alerting.destinationIds);
      alerting.engine.poke();
      return rule;
    },
  );

  app.delete(
    '/v1/alert-rules/:id',
    {
      config: { action: 'write' },
      schema: { summary: 'Delete an API alert rule (audited); its open alerts resolve', tags: ['alerts'], params: idParams },
    },
    async (req, reply) => {
      await alerting.alerts.deleteRule(req.params.id, req.principal, (spec) => ruleScope(req.principal, spec));
      alerting.engine.poke();
      return reply.status(204).send();
    },
  );

  // ---- delivery

  app.get(
    '/v1/alert-notifications',
    {
      config: { action: 'read' },
      schema: {
        summary: 'Notification deliveries, newest first (state=dead: the dead letter)',
        tags: ['alerts'],
        querystring: Type.Object({
          state: Type.Optional(Type.Enum(['pending', 'sent', 'dead'])),
          alert: Type.Optional(Type.String({ maxLength: 64 })),
          limit: limitParam(100, 1000),
        }),
      },
    },
    async (req) => {
      // Deliveries name destinations and errors of every site: unscoped principals only.
      if (req.principal.site !== null) throw new EdgetwinError(ErrorCodes.FORBIDDEN, 'notification deliveries are not site-scoped');
      const q = req.query;
      return {
        items: await alerting.notifier.list({
          ...(q.state ? { state: q.state } : {}),
          ...(q.alert ? { alertId: q.alert } : {}),
          limit: q.limit,
        }),
      };
    },
  );

  app.post(
    '/v1/alert-notifications/:id/retry',
    {
      config: { action: 'write' },
      schema: {
        summary: 'Re-queue a dead-lettered notification (audited)',
        tags: ['alerts'],
        params: Type.Object({ id: Type.Integer({ minimum: 1 }) }),
      },
    },
    async (req, reply) => {
      if (req.principal.site !== null) throw new EdgetwinError(ErrorCodes.FORBIDDEN, 'notification deliveries are not site-scoped');
      const { id } = req.params;
      if (!(await alerting.retryNotification(id, req.principal)))
        throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no dead-lettered notification ${id}`);
      return reply.status(202).send({ id, state: 'pending' });
    },
  );
}
