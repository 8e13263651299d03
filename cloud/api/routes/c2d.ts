/**
 * Cloud to device (issue 18), IoT Hub's service API shapes: direct methods
 * (`POST /v1/twins/{id}/methods/{method}`, answered with the device's `{status, payload}`) and
 * device-bound messages (`POST /v1/twins/{id}/messages`, then their delivery state per message).
 * Operator role, site scope of the device's owning site, every call audited before it is sent.
 */
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { EdgetwinError, ErrorCodes } from '../../../common/errors.js';
import {
  MESSAGE_MAX_BODY_BYTES,
  MESSAGE_MAX_PROPERTIES,
  MESSAGE_PROPERTY_MAX_LENGTH,
  MESSAGE_PROPERTY_NAME_PATTERN,
  MESSAGE_TTL,
  METHOD_MAX_PAYLOAD_BYTES,
  METHOD_NAME_PATTERN,
  METHOD_TIMEOUTS,
} from '../../../common/wire/c2d-protocol.js';
import { requireDevice } from '../../auth/site-policy.js';
import type { Principal } from '../../auth/tokens.js';
import type { CloudC2d } from '../../c2d/cloud-c2d.js';
import type { MessageState } from '../../c2d/message-store.js';
import type { ServerContext } from '../context.js';
import { deviceIdParams, deviceParam, limitParam, siteParam, typed } from './params.js';

const STATES: MessageState[] = ['pending', 'queued', 'delivered', 'expired', 'rejected'];

export function registerC2dRoutes(fastify: FastifyInstance, ctx: ServerContext & { c2d: CloudC2d }): void {
  const app = typed(fastify);
  /** The device's owning site; another site's device is a 404 like a missing one (cloud/auth/site-policy.ts). */
  const owned = async (principal: Principal, id: string): Promise<{ site: string }> => {
    const twin = await ctx.twins.getTwin(id);
    return { site: requireDevice(principal, id, twin?.site) };
  };

  app.post(
    '/v1/twins/:id/methods/:method',
    {
      config: { action: 'write' },
      schema: {
        summary: 'Invoke a direct method on a device and wait for its answer',
        tags: ['c2d'],
        description:
          "As IoT Hub: the device must be connected (or connect within connectTimeoutS) and answer within responseTimeoutS. The answer is the device's own status and JSON payload. A 502 or 504 means the method may or may not have run.",
        params: Type.Object({ id: deviceParam, method: Type.String({ pattern: METHOD_NAME_PATTERN }) }),
        body: Type.Object(
          {
            payload: Type.Optional(Type.Unknown({ description: 'any JSON, at most 128 KiB' })),
            // Required with a default: ajv fills it, so the handler always sees a number.
            responseTimeoutS: Type.Integer({
              minimum: METHOD_TIMEOUTS.responseMinS,
              maximum: METHOD_TIMEOUTS.responseMaxS,
              default: METHOD_TIMEOUTS.responseDefaultS,
            }),
            connectTimeoutS: Type.Integer({ minimum: 0, maximum: METHOD_TIMEOUTS.connectMaxS, default: METHOD_TIMEOUTS.connectDefaultS }),
          },
          { additionalProperties: false },
        ),
        'x-responses': {
          200: { description: "`{status, payload}`: the device's answer (its status may be any, e.g. 404 for a method it does not know)" },
          404: {
            description: 'EDGETWIN_ERR_NOT_FOUND (unknown device) or EDGETWIN_ERR_DEVICE_NOT_ONLINE (not connected within connectTimeoutS)',
          },
          429: { description: 'EDGETWIN_ERR_RATE_LIMITED: too many calls in flight for the site' },
          502: { description: "EDGETWIN_ERR_GATEWAY: the device's collector or connection went away mid-call" },
          504: { description: 'EDGETWIN_ERR_METHOD_TIMEOUT: no answer within responseTimeoutS' },
        },
      },
    },
    async (req) => {
      const { id, method } = req.params;
      const { payload, responseTimeoutS, connectTimeoutS } = req.body;
      const payloadBytes = Buffer.byteLength(JSON.stringify(payload ?? null));
      if (payloadBytes > METHOD_MAX_PAYLOAD_BYTES)
        throw new EdgetwinError(ErrorCodes.PAYLOAD_TOO_LARGE, `method payload is ${payloadBytes} bytes, over ${METHOD_MAX_PAYLOAD_BYTES}`);
      const twin = await owned(req.principal, id);
      // Audited as it is sent: the device's round trip overlaps the audit's (group) commit, and the
      // caller hears the answer only once the call is on record.
      const audited = ctx.c2d.audit(
        req.principal,
        'method.invoke',
        { device: id, site: twin.site },
        { method, responseTimeoutS, connectTimeoutS, payloadBytes },
      );
      const [, answer] = await Promise.all([
        audited,
        ctx.c2d.invoke({
          site: twin.site,
          device: id,
          method,
          payload: payload ?? null,
          responseTimeoutMs: responseTimeoutS * 1000,
          connectTimeoutMs: connectTimeoutS * 1000,
        }),
      ]);
      ctx.c2d.answered();
      return { status: answer.status, payload: answer.payload ?? null };
    },
  );

  app.post(
    '/v1/twins/:id/messages',
    {
      config: { action: 'write' },
      schema: {
        summary: 'Send a device-bound (cloud-to-device) message',
        tags: ['c2d'],
        description:
          "Stored before the 202, then queued at the device's collector (durably, at most 50 per device) and delivered at QoS 1 on devices/{id}/messages/devicebound/{properties} when the device listens. Follow its state with GET …/messages/{messageId}: pending → queued → delivered | expired | rejected.",
        params: deviceIdParams,
        body: Type.Object(
          {
            payload: Type.Unknown({ description: 'a string is sent as its text, anything else as its JSON; at most 64 KiB' }),
            properties: Type.Optional(
              Type.Record(Type.String(), Type.String({ maxLength: MESSAGE_PROPERTY_MAX_LENGTH }), {
                maxProperties: MESSAGE_MAX_PROPERTIES,
                // propertyNames refuses a bad name with a 400 (additionalProperties: false would only strip it).
                propertyNames: { pattern: MESSAGE_PROPERTY_NAME_PATTERN },
              }),
            ),
            correlationId: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
            ttlS: Type.Integer({ minimum: MESSAGE_TTL.minS, maximum: MESSAGE_TTL.maxS, default: MESSAGE_TTL.defaultS }),
          },
          { additionalProperties: false },
        ),
        'x-responses': {
          202: { description: 'The stored message (`messageId`, `state: pending`, `expiresAt`)' },
          404: { description: 'Unknown device' },
          429: { description: 'EDGETWIN_ERR_DEVICE_QUEUE_FULL: 50 messages of this device are not finished yet' },
        },
      },
    },
    async (req, reply) => {
      const id = req.params.id;
      const b = req.body;
      const text = typeof b.payload === 'string' ? b.payload : JSON.stringify(b.payload);
      const bytes = Buffer.byteLength(text);
      if (bytes > MESSAGE_MAX_BODY_BYTES)
        throw new EdgetwinError(ErrorCodes.PAYLOAD_TOO_LARGE, `message is ${bytes} bytes, over ${MESSAGE_MAX_BODY_BYTES}`);
      const twin = await owned(req.principal, id);
      const ttlS = b.ttlS;
      const msg = await ctx.store.tx(async (tx) => {
        const m = await ctx.c2d.messages.add(tx, {
          device: id,
          site: twin.site,
          body: text,
          properties: b.properties ?? {},
          correlationId: b.correlationId,
          ttlMs: ttlS * 1000,
          createdBy: req.principal.name,
        });
        await ctx.audit.record(
          tx,
          req.principal,
          'message.send',
          { device: id, site: twin.site },
          {
            messageId: m.messageId,
            bytes,
            ttlS,
            properties: Object.keys(m.properties),
          },
        );
        return m;
      });
      return reply.status(202).send(msg);
    },
  );

  app.get(
    '/v1/twins/:id/messages',
    {
      config: { action: 'read' },
      schema: {
        summary: "A device's device-bound messages and their delivery state, newest first",
        tags: ['c2d'],
        params: deviceIdParams,
        querystring: Type.Object({
          state: Type.Optional(Type.Enum(STATES)),
          limit: limitParam(50, 500),
          cursor: Type.Optional(Type.Integer({ minimum: 1, description: '`next` of the previous page' })),
        }),
        'x-responses': { 200: { description: '`{items: [message], next}`' } },
      },
    },
    async (req) => {
      const id = req.params.id;
      await owned(req.principal, id);
      const q = req.query;
      return ctx.c2d.messages.list(id, { state: q.state, before: q.cursor, limit: q.limit });
    },
  );

  app.get(
    '/v1/twins/:id/messages/:messageId',
    {
      config: { action: 'read' },
      schema: {
        summary: 'One device-bound message: its state (pending, queued, delivered, expired, rejected) and when it got there',
        tags: ['c2d'],
        params: Type.Object({ id: deviceParam, messageId: Type.String({ minLength: 1, maxLength: 64 }) }),
        'x-responses': { 404: { description: 'No such message for this device' } },
      },
    },
    async (req) => {
      const { id, messageId } = req.params;
      await owned(req.principal, id);
      const m = await ctx.c2d.messages.get(id, messageId);
      if (!m) throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no message ${messageId} for device ${id}`);
      return m;
    },
  );

  app.get(
    '/v1/sites/:site/channel',
    {
      schema: {
        summary: "A site collector's push channel (WebSocket upgrade; collector token of the site)",
        tags: ['c2d'],
        description:
          'The collector opens it and keeps it open; method calls and device-bound messages come down it, answers, queue acknowledgements and feedback go up. A plain GET answers 426.',
        params: Type.Object({ site: siteParam }),
        'x-responses': { 426: { description: 'Upgrade to a WebSocket' } },
      },
    },
    async (_req, reply) =>
      reply
        .status(426)
        .header('upgrade', 'websocket')
        .send({ code: ErrorCodes.BAD_REQUEST, message: 'this endpoint is a WebSocket (Upgrade: websocket)' }),
  );
}
