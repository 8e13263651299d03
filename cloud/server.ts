/**
 * The cloud's HTTP API (fastify): ingest from collectors and the twin API for operators.
 * Every error body is `{ code, message }` with a stable EDGETWIN_ERR_* code.
 */
import { timingSafeEqual } from 'node:crypto';
import { createGunzip } from 'node:zlib';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { EdgetwinError, ErrorCodes, isEdgetwinError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { counter, type Registry } from '../common/metrics.js';
import type { CloudConfig } from './config.js';
import { ingestEnvelope } from './ingest.js';
import type { TwinStore } from './twin-store.js';

export interface ServerDeps {
  store: TwinStore;
  log: Logger;
  registry: Registry;
}

const STATUS: Partial<Record<string, number>> = {
  [ErrorCodes.BAD_REQUEST]: 400,
  [ErrorCodes.BAD_PAYLOAD]: 400,
  [ErrorCodes.UNAUTHORIZED]: 401,
  [ErrorCodes.FORBIDDEN]: 403,
  [ErrorCodes.NOT_FOUND]: 404,
  [ErrorCodes.PAYLOAD_TOO_LARGE]: 413,
};

function tokenMatches(presented: string, allowed: readonly string[]): boolean {
  const p = Buffer.from(presented);
  return allowed.some((t) => {
    const b = Buffer.from(t);
    return b.length === p.length && timingSafeEqual(b, p);
  });
}

export function buildServer(cfg: CloudConfig, deps: ServerDeps): FastifyInstance {
  const app: FastifyInstance = Fastify({ loggerInstance: deps.log as FastifyBaseLogger, bodyLimit: cfg.http.bodyLimitBytes,
    logController: new LogController({ disableRequestLogging: true }),
  });
  const mIngested = counter(deps.registry, 'edgetwin_cloud_ingested_readings_total', 'Readings stored (new)');
  const mDuplicates = counter(deps.registry, 'edgetwin_cloud_duplicate_readings_total', 'Readings already stored (dropped as duplicates)');
  const mRejected = counter(deps.registry, 'edgetwin_cloud_rejected_total', 'Rejected messages or requests', ['code']);

  // Collectors gzip their batches; the body limit then applies to the decompressed size.
  app.addHook('preParsing', async (req, _reply, payload) => {
    if (req.headers['content-encoding'] !== 'gzip') return payload;
    delete req.headers['content-length'];
    const gunzip = createGunzip();
    payload.pipe(gunzip);
    payload.on('error', (e) => gunzip.destroy(e));
    return gunzip;
  });

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
    let code: string;
    let status: number;
    if (isEdgetwinError(err)) {
      code = err.code;
      status = STATUS[err.code] ?? 500;
    } else if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      code = ErrorCodes.PAYLOAD_TOO_LARGE;
      status = 413;
    } else if (err.statusCode && err.statusCode < 500) {
      code = ErrorCodes.BAD_REQUEST;
      status = err.statusCode;
    } else {
      code = ErrorCodes.INTERNAL;
      status = 500;
      deps.log.error({ err }, 'request failed');
    }
    mRejected.inc({ code });
    void reply.status(status).send({ code, message: err.message });
  });

  app.setNotFoundHandler((_req, reply) => {
    void reply.status(404).send({ code: ErrorCodes.NOT_FOUND, message: 'no such route' });
  });

  function requireIngestToken(req: FastifyRequest): void {
    const tokens = cfg.ingest.tokens;
    if (tokens.length === 0) return;
    const h = req.headers.authorization ?? '';
    const presented = h.startsWith('Bearer ') ? h.slice(7) : '';
    if (!presented || !tokenMatches(presented, tokens)) throw new EdgetwinError(ErrorCodes.UNAUTHORIZED, 'missing or unknown ingest token');
  }

  app.post('/v1/ingest', async (req: FastifyRequest, reply: FastifyReply) => {
    requireIngestToken(req);
    const result = ingestEnvelope(deps.store, req.body);
    mIngested.inc(result.stored);
    mDuplicates.inc(result.duplicates);
    for (const r of result.rejected) mRejected.inc({ code: r.code });
    if (result.rejected.length > 0) deps.log.warn({ batchId: result.batchId, rejected: result.rejected.slice(0, 5) }, 'ingest rejected messages');
    return reply.status(200).send(result);
  });

  app.get('/v1/twins', async () => ({ items: deps.store.listTwins() }));

  app.get('/v1/twins/:id', async (req) => {
    const { id } = req.params as { id: string };
    const twin = deps.store.getTwin(id);
    if (!twin) throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no twin for device ${id}`);
    return twin;
  });

  app.get('/metrics', async (_req, reply) => {
    const body = await deps.registry.metrics();
    return reply.header('content-type', deps.registry.contentType).send(body);
  });

  app.get('/healthz', async () => ({ ok: true }));

  return app;
}
