/**
 * HttpIngestSink: posts spooled batches to the cloud's `POST /v1/ingest` over a keep-alive undici
 * pool, gzip-compressed, with the batch id as idempotency key. The device payloads are spliced into
 * the envelope as they are: the collector never re-encodes telemetry.
 */
import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';
import { ErrorCodes, errorMessage } from '../../common/errors.js';
import { DeadlinePool } from '../../common/deadline-pool.js';
import { spliceEnvelope } from '../../common/ingest-envelope.js';
import { PermanentSinkError, RetryableSinkError, type Sink, type SinkBatch, type SinkWriteResult } from '../sink.js';

const gzip = promisify(gzipCb);

export interface HttpIngestSinkConfig {
  enabled: boolean;
  /** Base URL of the cloud twin API, e.g. http://127.0.0.1:8480 */
  url: string;
  /** Site token for the cloud's ingest (set it from EDGETWIN_CLOUD_TOKEN, not in files). */
  token?: string;
  gzip: boolean;
  timeoutMs: number;
  connections: number;
}

export const httpIngestSinkDefaults: HttpIngestSinkConfig = {
  enabled: true,
  url: 'http://127.0.0.1:8480',
  gzip: true,
  timeoutMs: 30_000,
  connections: 4,
};

export const httpIngestSinkConfigSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    enabled: { type: 'boolean' },
    url: { type: 'string', pattern: '^https?://' },
    token: { type: 'string' },
    gzip: { type: 'boolean' },
    timeoutMs: { type: 'integer', minimum: 100 },
    connections: { type: 'integer', minimum: 1, maximum: 256 },
  },
} as const;

const PERMANENT = new Set([400, 413, 422]);

interface IngestResponse {
  rejected?: { index: number; code: string; message: string }[];
}

export class HttpIngestSink implements Sink {
  readonly name = 'http';
  private pool: DeadlinePool | undefined;
  private readonly origin: string;
  private readonly basePath: string;

  constructor(private readonly cfg: HttpIngestSinkConfig) {
    const u = new URL(cfg.url);
    this.origin = u.origin;
    this.basePath = u.pathname.replace(/\/$/, '');
  }

  async connect(): Promise<void> {
    // timeoutMs bounds the whole exchange, not only each phase: see common/deadline-pool.ts.
    this.pool = new DeadlinePool(this.origin, { connections: this.cfg.connections, timeoutMs: this.cfg.timeoutMs, keepAliveTimeoutMs: 30_000 });
  }

  async write(batch: SinkBatch): Promise<SinkWriteResult> {
    if (!this.pool) await this.connect();
    const json = spliceEnvelope(batch.batchId, batch.siteId, batch.messages.map((m) => m.payload));
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'idempotency-key': batch.batchId,
    };
    if (this.cfg.token) headers['authorization'] = `Bearer ${this.cfg.token}`;
    let body: string | Buffer = json;
    if (this.cfg.gzip) {
      body = await gzip(json, { level: 1 });
      headers['content-encoding'] = 'gzip';
    }
    let res: { statusCode: number; text: string; retryAfter: unknown };
    try {
      res = await this.pool!.run(async (pool, signal) => {
        const r = await pool.request({ method: 'POST', path: `${this.basePath}/v1/ingest`, headers, body, signal });
        return { statusCode: r.statusCode, text: await r.body.text(), retryAfter: r.headers['retry-after'] };
      }, 'cloud ingest');
    } catch (cause) {
      throw new RetryableSinkError(`cloud ingest unreachable: ${errorMessage(cause)}`, undefined, { cause });
    }
    const text = res.text;
    // 400/413/422 judge the content, which a retry does not change; 401/403/404/415 and the rest are
    // configuration or outages that an operator fixes, so those are retried without losing anything.
    if (PERMANENT.has(res.statusCode)) {
      const code = res.statusCode === 413 ? ErrorCodes.PAYLOAD_TOO_LARGE : ErrorCodes.BAD_PAYLOAD;
      throw new PermanentSinkError(`cloud ingest refused the batch (${res.statusCode}): ${text.slice(0, 200)}`, code);
    }
    if (res.statusCode < 200 || res.statusCode >= 300) {
      const retryAfter = Number(res.retryAfter);
      throw new RetryableSinkError(`cloud ingest answered ${res.statusCode}: ${text.slice(0, 200)}`, Number.isFinite(retryAfter) ? retryAfter * 1000 : undefined);
    }
    let parsed: IngestResponse = {};
    try {
      parsed = JSON.parse(text) as IngestResponse;
    } catch {
      // A 2xx means stored; the body is informational.
    }
    return {
      rejected: (parsed.rejected ?? []).map((r) => ({ id: batch.messages[r.index]?.id ?? -1, code: r.code, message: r.message })),
    };
  }

  async close(): Promise<void> {
    const p = this.pool;
    this.pool = undefined;
    await p?.close();
  }
}
