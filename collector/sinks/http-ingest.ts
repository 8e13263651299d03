/**
 * HttpIngestSink: posts spooled batches to the cloud's `POST /v1/ingest` over a keep-alive undici
 * pool, gzip-compressed, with the batch id as idempotency key. The device payloads are spliced into
 * the envelope as they are: the collector never re-encodes telemetry.
 */
import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';
import Type, { type Static } from 'typebox';
import { Section } from '../../common/config.js';
import { ErrorCodes, errorMessage, isErrorCode } from '../../common/errors.js';
import { spliceEnvelope } from '../../common/wire/ingest-envelope.js';
import { PermanentSinkError, RetryableSinkError } from '../../common/errors.js';
import { CloudClient } from '../cloud/cloud-client.js';
import type { Sink, SinkBatch, SinkWriteResult } from './sink.js';

const gzip = promisify(gzipCb);

export const httpIngestSinkConfigSchema = Section({
  enabled: Type.Boolean({ default: true }),
  /** Base URL of the cloud twin API, e.g. http://127.0.0.1:8480 */
  url: Type.String({ pattern: '^https?://', default: 'http://127.0.0.1:8480' }),
  /** Site token for the cloud's ingest (set it from EDGETWIN_CLOUD_TOKEN, not in files). */
  token: Type.Optional(Type.String()),
  gzip: Type.Boolean({ default: true }),
  timeoutMs: Type.Integer({ minimum: 100, default: 30_000 }),
  connections: Type.Integer({ minimum: 1, maximum: 256, default: 4 }),
});
export type HttpIngestSinkConfig = Static<typeof httpIngestSinkConfigSchema>;

/** 4xx answers that are configuration an operator fixes (token, URL, a proxy): retried, nothing is lost meanwhile. */
const CONFIGURATION = new Set([401, 403, 404, 407, 415]);

/**
 * The code of an error answer when it is one of the error table's: a proxy or another server in
 * front of the cloud may answer anything, and a dead letter's code must be one an operator can look up.
 */
function answerCode(text: string): string | undefined {
  try {
    const code = (JSON.parse(text) as { code?: unknown }).code;
    return isErrorCode(code) ? code : undefined;
  } catch {
    return undefined;
  }
}

interface IngestResponse {
  rejected?: unknown;
}

/**
 * The per-message refusals of a 2xx answer, as spool ids. Only well-formed entries count: an index
 * of this batch (each once), a code of the error table (else BAD_PAYLOAD). Whatever else a proxy or
 * a newer cloud sends cannot make the runner dead-letter the wrong message or fail the batch forever.
 */
function refusals(rejected: unknown, messages: SinkBatch['messages']): { id: number; code: string; message: string }[] {
  if (!Array.isArray(rejected)) return [];
  const seen = new Set<number>();
  const out: { id: number; code: string; message: string }[] = [];
  for (const r of rejected as { index?: unknown; code?: unknown; message?: unknown }[]) {
    const i = r?.index;
    if (typeof i !== 'number' || !Number.isInteger(i) || i < 0 || i >= messages.length || seen.has(i)) continue;
    seen.add(i);
    const code = isErrorCode(r.code) ? r.code : ErrorCodes.BAD_PAYLOAD;
    out.push({ id: messages[i]!.id, code, message: typeof r.message === 'string' ? r.message.slice(0, 1000) : '' });
  }
  return out;
}

export class HttpIngestSink implements Sink {
  readonly name = 'http';
  private readonly cloud: CloudClient;
  /** A client made here (no shared one given) is this sink's to close. */
  private readonly ownsClient: boolean;
  /** close() ends a write in flight: the runner is stopping. */
  private closing = new AbortController();

  /** `cloud`: the collector's shared client (collector/cloud/cloud-client.ts); without one the sink makes its own. */
  constructor(
    private readonly cfg: HttpIngestSinkConfig,
    cloud?: CloudClient,
  ) {
    this.ownsClient = !cloud;
    this.cloud = cloud ?? new CloudClient({ url: cfg.url, token: cfg.token }, { connections: cfg.connections });
  }

  async connect(): Promise<void> {
    this.closing = new AbortController();
  }

  async write(batch: SinkBatch): Promise<SinkWriteResult> {
    const json = spliceEnvelope(
      batch.batchId,
      batch.siteId,
      batch.messages.map((m) => m.payload),
    );
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'idempotency-key': batch.batchId,
    };
    let body: string | Buffer = json;
    if (this.cfg.gzip) {
      body = await gzip(json, { level: 1 });
      headers['content-encoding'] = 'gzip';
    }
    let res: { statusCode: number; text: string; retryAfter: unknown };
    try {
      // timeoutMs bounds the whole exchange, not only each phase: see common/deadline-pool.ts.
      const r = await this.cloud.request({
        method: 'POST',
        path: '/v1/ingest',
        headers,
        body,
        timeoutMs: this.cfg.timeoutMs,
        what: 'cloud ingest',
        signal: this.closing.signal,
      });
      res = { statusCode: r.statusCode, text: r.body.toString('utf8'), retryAfter: r.headers['retry-after'] };
    } catch (cause) {
      throw new RetryableSinkError(`cloud ingest unreachable: ${errorMessage(cause)}`, undefined, { cause });
    }
    const text = res.text;
    // 401/403/404/415, 429 and 5xx are configuration, throttling or outages: retried below, nothing lost.
    // Any other 4xx but 429 judges the content (400, 409 a device of another site, 413, 422 a limit),
    // which a retry does not change: permanent, so the runner splits the batch and dead-letters only
    // the refused messages — never retried forever, blocking everything behind it.
    if (res.statusCode >= 400 && res.statusCode < 500 && res.statusCode !== 429 && !CONFIGURATION.has(res.statusCode)) {
      const code = answerCode(text) ?? (res.statusCode === 413 ? ErrorCodes.PAYLOAD_TOO_LARGE : ErrorCodes.BAD_PAYLOAD);
      throw new PermanentSinkError(`cloud ingest refused the batch (${res.statusCode}): ${text.slice(0, 200)}`, code);
    }
    if (res.statusCode < 200 || res.statusCode >= 300) {
      const retryAfter = Number(res.retryAfter);
      throw new RetryableSinkError(
        `cloud ingest answered ${res.statusCode}: ${text.slice(0, 200)}`,
        Number.isFinite(retryAfter) ? retryAfter * 1000 : undefined,
      );
    }
    let parsed: IngestResponse = {};
    try {
      parsed = JSON.parse(text) as IngestResponse;
    } catch {
      // A 2xx means stored; the body is informational.
    }
    return {
      rejected: refusals(parsed.rejected, batch.messages),
    };
  }

  async close(): Promise<void> {
    this.closing.abort();
    if (this.ownsClient) await this.cloud.close();
  }
}
