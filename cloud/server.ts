/**
 * The cloud's HTTP API (fastify): ingest from collectors, the desired feed, and the twin API for
 * operators. Cross-cutting parts live here — body parsing (gzip, raw bytes kept for the landing),
 * authentication and role checks (route `config.action`), errors as `{ code, message }` with a
 * stable EDGETWIN_ERR_* code, and a latency histogram per route. Routes live in cloud/routes/.
 */
import { createGunzip } from 'node:zlib';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { EdgetwinError, ErrorCodes, isEdgetwinError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { counter, histogram, type Registry } from '../common/metrics.js';
import { requireAction, type Action, type Authenticator } from './auth/authenticator.js';
import type { Principal } from './auth/tokens.js';
import type { AuditLog } from './audit-log.js';
import type { CloudConfig } from './config.js';
import type { CloudEvents } from './events.js';
import type { IngestPipeline } from './ingest/pipeline.js';
import type { Lakehouse } from './lakehouse/lakehouse.js';
import { OpenApiCollector } from './openapi.js';
import { registerDashboardRoutes } from './routes/dashboard.js';
import { registerHistoryRoutes } from './routes/history.js';
import { registerIngestRoutes } from './routes/ingest.js';
import { registerOpsRoutes } from './routes/ops.js';
import { registerStreamRoutes } from './routes/stream.js';
import { registerModelRoutes } from './routes/models.js';
import { registerTwinRoutes } from './routes/twins.js';
import type { TwinStore } from './twin-store.js';

declare module 'fastify' {
  /** Documentation parts of a route schema, read by cloud/openapi.ts (fastify ignores them). */
  interface FastifySchema {
    summary?: string;
    description?: string;
    tags?: string[];
    'x-responses'?: Record<string, { description: string; schema?: object }>;
    hide?: boolean;
  }
  interface FastifyContextConfig {
    /** What the caller must be allowed to do; routes without it are public (health, metrics, OpenAPI). */
    action?: Action;
    /** Accept `?access_token=` (EventSource cannot set headers). */
    queryToken?: boolean;
  }
  interface FastifyRequest {
    principal: Principal;
    /** The JSON body's bytes as received, after gzip decoding. */
    rawBody: Buffer | undefined;
    /** The body's bytes on the wire when it came gzip-encoded. */
    wireBody: Buffer | undefined;
  }
}

export interface ServerContext {
  cfg: CloudConfig;
  log: Logger;
  registry: Registry;
  auth: Authenticator;
  twins: TwinStore;
  pipeline: IngestPipeline;
  audit: AuditLog;
  events: CloudEvents;
  lake: Lakehouse;
  health: () => { ok: boolean; [k: string]: unknown };
}

const STATUS: Partial<Record<string, number>> = {
  [ErrorCodes.BAD_REQUEST]: 400,
  [ErrorCodes.BAD_PAYLOAD]: 400,
  [ErrorCodes.UNAUTHORIZED]: 401,
  [ErrorCodes.FORBIDDEN]: 403,
  [ErrorCodes.NOT_FOUND]: 404,
  [ErrorCodes.PRECONDITION_FAILED]: 412,
  [ErrorCodes.PAYLOAD_TOO_LARGE]: 413,
  [ErrorCodes.PRECONDITION_REQUIRED]: 428,
  [ErrorCodes.STORE_FULL]: 503,
  [ErrorCodes.LAKEHOUSE]: 503,
};

/** Routes whose reply is a long-lived stream: their duration is not a latency. */
const STREAMING = new Set(['/v1/stream']);

export function buildServer(ctx: ServerContext): FastifyInstance {
  const { cfg, log, registry } = ctx;
  const app: FastifyInstance = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    bodyLimit: cfg.http.bodyLimitBytes,
    logController: new LogController({ disableRequestLogging: true }),
    forceCloseConnections: true,
    // Errors fastify answers before routing (a malformed URL, an over-long path parameter) get a
    // stable EDGETWIN_ERR_* code like every other error of this API.
    frameworkErrors: (err, _req, reply) => {
      mRejected.inc({ code: ErrorCodes.BAD_REQUEST });
      void (reply as unknown as FastifyReply).status(400).send({ code: ErrorCodes.BAD_REQUEST, message: err.message });
    },
  });
  // ajv's type coercion turns "Infinity" and "NaN" into numbers that pass `integer`: refuse them
  // here, before they reach SQL (LIMIT Infinity) or a Date.
  app.addHook('preHandler', async (req) => {
    const q = req.query as Record<string, unknown> | undefined;
    if (!q) return;
    for (const [k, v] of Object.entries(q)) {
      if (typeof v === 'number' && !Number.isFinite(v)) throw new EdgetwinError(ErrorCodes.BAD_REQUEST, `query parameter ${k} must be a finite number`);
    }
  });
  const openapi = new OpenApiCollector();
  app.addHook('onRoute', (r) => openapi.add(r));
  const mRejected = counter(registry, 'edgetwin_cloud_http_errors_total', 'HTTP requests answered with an error, by code', ['code']);
  const mLatency = histogram(
    registry,
    'edgetwin_cloud_http_request_duration_seconds',
    'HTTP request latency per route (p99: histogram_quantile(0.99, …))',
    ['method', 'route', 'status'],
    [0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  );

  app.decorateRequest('principal', null as unknown as Principal);
  app.decorateRequest('rawBody', undefined);
  app.decorateRequest('wireBody', undefined);

  // Collectors gzip their batches; the body limit then applies to the decompressed size. The
  // compressed bytes are kept too: the landing stores a batch exactly as it came.
  app.addHook('preParsing', async (req, _reply, payload) => {
    if (req.headers['content-encoding'] !== 'gzip') return payload;
    delete req.headers['content-length'];
    const chunks: Buffer[] = [];
    let wireBytes = 0;
    const gunzip = createGunzip();
    payload.on('data', (c: Buffer) => {
      wireBytes += c.length;
      if (wireBytes <= cfg.http.bodyLimitBytes) chunks.push(c);
    });
    payload.on('end', () => {
      if (wireBytes <= cfg.http.bodyLimitBytes) req.wireBody = Buffer.concat(chunks);
    });
    payload.pipe(gunzip);
    payload.on('error', (e) => gunzip.destroy(e));
    return gunzip;
  });

  const parseJson = (req: FastifyRequest, body: Buffer, done: (err: Error | null, body?: unknown) => void): void => {
    req.rawBody = body;
    if (body.length === 0) return done(null, undefined);
    try {
      done(null, JSON.parse(body.toString('utf8')));
    } catch {
      done(Object.assign(new Error('body is not valid JSON'), { statusCode: 400 }));
    }
  };
  // JSON only: anything else is answered 415 rather than half-parsed.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(['application/json', 'application/merge-patch+json'], { parseAs: 'buffer' }, parseJson);

  // Callback-style hooks: on the hot read path a promise per hook is measurable.
  app.addHook('onRequest', (req, _reply, done) => {
    const action = req.routeOptions.config.action;
    if (!action) return done();
    try {
      const queryToken = req.routeOptions.config.queryToken ? (req.query as { access_token?: string }).access_token : undefined;
      req.principal = ctx.auth.authenticate(req.headers.authorization, queryToken);
      requireAction(req.principal, action);
      done();
    } catch (err) {
      done(err as Error);
    }
  });

  app.addHook('onResponse', (req, reply, done) => {
    const route = req.routeOptions.url ?? 'unmatched';
    if (!STREAMING.has(route)) mLatency.observe({ method: req.method, route, status: String(reply.statusCode) }, reply.elapsedTime / 1000);
    done();
  });

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string; validation?: unknown }, _req, reply: FastifyReply) => {
    let code: string;
    let status: number;
    let details: Record<string, unknown> | undefined;
    if (isEdgetwinError(err)) {
      code = err.code;
      status = STATUS[err.code] ?? 500;
      details = err.details;
    } else if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      code = ErrorCodes.PAYLOAD_TOO_LARGE;
      status = 413;
    } else if (err.statusCode === 415) {
      code = ErrorCodes.BAD_REQUEST;
      status = 415;
    } else if (err.statusCode && err.statusCode < 500) {
      code = ErrorCodes.BAD_REQUEST;
      status = 400;
    } else {
      code = ErrorCodes.INTERNAL;
      status = 500;
      log.error({ err }, 'request failed');
    }
    mRejected.inc({ code });
    if (code === ErrorCodes.STORE_FULL) void reply.header('retry-after', String(details?.['retryAfterS'] ?? 1));
    if (code === ErrorCodes.PRECONDITION_FAILED && typeof details?.['etag'] === 'string') void reply.header('etag', details['etag']);
    void reply.status(status).send(details ? { code, message: err.message, details } : { code, message: err.message });
  });

  app.setNotFoundHandler((_req, reply) => {
    mRejected.inc({ code: ErrorCodes.NOT_FOUND });
    void reply.status(404).send({ code: ErrorCodes.NOT_FOUND, message: 'no such route' });
  });

  registerIngestRoutes(app, ctx);
  registerTwinRoutes(app, ctx);
  registerHistoryRoutes(app, ctx);
  registerStreamRoutes(app, ctx);
  registerModelRoutes(app, ctx);
  registerOpsRoutes(app, ctx, () => openapi.document());
  registerDashboardRoutes(app);
  return app;
}
