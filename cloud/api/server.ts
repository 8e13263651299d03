/**
 * The cloud's HTTP API (fastify): ingest from collectors, the desired feed, and the twin API for
 * operators. Cross-cutting parts live here — body parsing (gzip, raw bytes kept for the landing),
 * authentication and role checks (route `config.action`), errors as `{ code, message }` with a
 * stable EDGETWIN_ERR_* code, and a latency histogram per route. Routes live in cloud/api/routes/.
 */
import { createGunzip } from 'node:zlib';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { EdgetwinError, ErrorCodes, errorSpec, isEdgetwinError, type ErrorCode } from '../../common/errors.js';
import { counter, histogram } from '../../common/metrics.js';
import { requireAction, type Action } from '../auth/authenticator.js';
import { tokenKind } from '../auth/sign-in-audit.js';
import type { Principal } from '../auth/tokens.js';
import type { ServerContext } from './context.js';
import { lazyChildLogger } from './lazy-logger.js';
import { ApiRateLimiter, ingestCost } from './rate-limit.js';
import { OpenApiCollector } from './openapi.js';
import { registerAlertRoutes } from './routes/alerts.js';
import { registerDashboardRoutes } from './routes/dashboard.js';
import { registerHistoryRoutes } from './routes/history.js';
import { registerIngestRoutes } from './routes/ingest.js';
import { registerOpsRoutes } from './routes/ops.js';
import { registerStreamRoutes } from './routes/stream.js';
import { registerModelRoutes } from './routes/models.js';
import { registerTwinRoutes } from './routes/twins.js';
import { registerC2dRoutes } from './routes/c2d.js';
import { registerPredictionRoutes } from './routes/predictions.js';

declare module 'fastify' {
  /** Documentation parts of a route schema, read by cloud/api/openapi.ts (fastify ignores them). */
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

/** The batch ingest route: rate-limited per site by readings instead of per principal. */
const INGEST_ROUTE = '/v1/ingest';

const GUNZIP_CHUNK = 1 << 20;

/** Routes whose reply is a long-lived stream: their duration is not a latency. */
const STREAMING = new Set(['/v1/stream']);

export function buildServer(ctx: ServerContext): FastifyInstance {
  const { cfg, log, registry } = ctx;
  const app: FastifyInstance = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    childLoggerFactory: lazyChildLogger,
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
  // (With the ingest rate limit: one callback-style hook, see below.)
  const finiteQuery = (req: FastifyRequest): void => {
    const q = req.query as Record<string, unknown> | undefined;
    if (!q) return;
    for (const k of Object.keys(q)) {
      const v = q[k];
      if (typeof v === 'number' && !Number.isFinite(v))
        throw new EdgetwinError(ErrorCodes.BAD_REQUEST, `query parameter ${k} must be a finite number`);
    }
  };
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

  const limits = new ApiRateLimiter(cfg.rateLimit, registry);
  app.decorateRequest('principal', null as unknown as Principal);
  app.decorateRequest('rawBody', undefined);
  app.decorateRequest('wireBody', undefined);

  // Collectors gzip their batches; the body limit then applies to the decompressed size. The
  // compressed bytes are kept too: the landing stores a batch exactly as it came.
  app.addHook('preParsing', async (req, _reply, payload) => {
    const encoding = req.headers['content-encoding']?.trim().toLowerCase();
    // Anything but gzip would otherwise be parsed as if it were plain JSON: 415 with a code instead.
    if (encoding && encoding !== 'gzip' && encoding !== 'identity')
      throw new EdgetwinError(ErrorCodes.UNSUPPORTED_MEDIA_TYPE, `content-encoding "${encoding}" is not supported (gzip or identity)`);
    if (encoding !== 'gzip') return payload;
    delete req.headers['content-length'];
    const chunks: Buffer[] = [];
    let wireBytes = 0;
    // 1 MiB output chunks instead of zlib's 16 KiB: a 10,000-reading batch inflates in one or two
    // thread-pool round trips instead of ~50, a quarter of the main thread's time per batch.
    const gunzip = createGunzip({ chunkSize: GUNZIP_CHUNK });
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

  // Callback-style hooks: on the hot read path a promise per hook is measurable. `req.routeOptions`
  // is a getter that builds a new object at every access: read once per hook.
  app.addHook('onRequest', (req, _reply, done) => {
    const { config, url } = req.routeOptions;
    const action = config.action;
    if (!action) return done();
    const queryToken = config.queryToken ? (req.query as { access_token?: string }).access_token : undefined;
    const admit = (p: Principal): void => {
      req.principal = p;
      try {
        requireAction(p, action);
        // Ingest is limited per site by readings (preHandler below), not per principal.
        if (url !== INGEST_ROUTE) limits.principal(p, req.ip);
      } catch (err) {
        return done(err as Error);
      }
      done();
    };
    // A token resolved within the last second is answered without a promise (most requests).
    const known = ctx.auth.cached(req.headers.authorization, queryToken);
    if (known) return admit(known);
    ctx.auth.authenticate(req.headers.authorization, queryToken).then(admit, (err: Error) => {
      ctx.signInAudit?.failed(err, req.ip, url ?? req.url, tokenKind(req.headers.authorization, queryToken));
      done(err);
    });
  });

  app.addHook('preHandler', (req, _reply, done) => {
    try {
      finiteQuery(req);
      if (req.routeOptions.url === INGEST_ROUTE) {
        const site = (req.body as { site?: unknown } | undefined)?.site;
        if (typeof site === 'string' && req.principal.id !== 'open') limits.ingest(site, ingestCost(req.body));
      }
    } catch (err) {
      return done(err as Error);
    }
    done();
  });

  app.addHook('onResponse', (req, reply, done) => {
    const route = req.routeOptions.url ?? 'unmatched';
    if (!STREAMING.has(route)) mLatency.observe({ method: req.method, route, status: String(reply.statusCode) }, reply.elapsedTime / 1000);
    done();
  });

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string; validation?: unknown }, _req, reply: FastifyReply) => {
    // The one place codes become statuses: the table in common/errors.ts. fastify's own errors
    // (body limit, content type, schema validation) are given the matching code first.
    let code: ErrorCode;
    let details: Record<string, unknown> | undefined;
    if (isEdgetwinError(err)) {
      code = err.code;
      details = err.details;
    } else if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      code = ErrorCodes.PAYLOAD_TOO_LARGE;
    } else if (err.statusCode === 415) {
      code = ErrorCodes.UNSUPPORTED_MEDIA_TYPE;
    } else if (err.statusCode && err.statusCode < 500) {
      code = ErrorCodes.BAD_REQUEST;
    } else {
      code = ErrorCodes.INTERNAL;
    }
    const status = errorSpec(code)?.status ?? 500;
    if (status >= 500 && !errorSpec(code)?.retryable) log.error({ err, code }, 'request failed');
    mRejected.inc({ code });
    // Every retryable refusal that knows when to come back says so (429 rate limits, 503 full staging, IdP down).
    if (typeof details?.['retryAfterS'] === 'number') void reply.header('retry-after', String(details['retryAfterS']));
    else if (code === ErrorCodes.STORE_FULL) void reply.header('retry-after', '1');
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
  if (ctx.alerting) registerAlertRoutes(app, { ...ctx, alerting: ctx.alerting });
  if (ctx.c2d) registerC2dRoutes(app, { ...ctx, c2d: ctx.c2d });
  if (ctx.predictions && ctx.drift) registerPredictionRoutes(app, { ...ctx, predictions: ctx.predictions, drift: ctx.drift });
  registerOpsRoutes(app, ctx, () => openapi.document());
  registerDashboardRoutes(app);
  return app;
}
