/**
 * Local ingest for other programs on the device: `POST /v1/readings` on 127.0.0.1 with one
 * reading, an array, or `{"readings": [...]}`. The answer comes after the readings are committed
 * to the outbox (a 200 promises they are durable), listing any refused one by index:
 * `{"accepted": n, "rejected": [{"index", "code", "message"}]}`. 400 when nothing was usable,
 * 413 over maxBodyBytes, 503 when the outbox is full (whenFull=block) or the agent is stopping.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Type, { type Static } from 'typebox';
import { listenerProperties } from '../../common/admin-http.js';
import { configDefaults, Section } from '../../common/config.js';
import { EdgetwinError, ErrorCodes, errorMessage, isEdgetwinError } from '../../common/errors.js';
import type { RefusedReading, Source, SourceContext, SourceReading } from '../types.js';
import { inputItems, toReading } from './reading-input.js';
import type { TimestampWindow } from '../../common/wire/storable.js';

export const httpReadingsConfigSchema = Section({
  enabled: Type.Boolean({ default: false }),
  // host, port: the same keys as every admin endpoint; port 0 picks a free port (reported in the log and the ready message).
  ...listenerProperties('127.0.0.1', 8471),
  maxBodyBytes: Type.Integer({ minimum: 256, maximum: 64 << 20, default: 1 << 20 }),
});
export type HttpReadingsConfig = Static<typeof httpReadingsConfigSchema>;
export const httpReadingsDefaults: HttpReadingsConfig = configDefaults(httpReadingsConfigSchema);

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

function fail(res: ServerResponse, status: number, code: string, message: string): void {
  send(res, status, { code, message });
}

export class HttpReadingsSource implements Source {
  readonly name = 'http-readings';
  private server: Server | undefined;
  port = 0;

  constructor(
    private readonly cfg: HttpReadingsConfig,
    /** Sample times accepted (config `timestamps`); a reading outside is refused with its index. */
    private readonly window?: TimestampWindow,
  ) {}

  async start(ctx: SourceContext): Promise<void> {
    const server = createServer((req, res) => void this.handle(ctx, req, res));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.cfg.port, this.cfg.host, () => resolve());
    });
    server.on('error', (err) => ctx.fail(err));
    this.port = (server.address() as AddressInfo).port;
    ctx.log.info({ url: `http://${this.cfg.host}:${this.port}/v1/readings` }, 'local readings endpoint listening');
  }

  private async handle(ctx: SourceContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/v1/readings') return fail(res, 404, ErrorCodes.NOT_FOUND, 'no such route');
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      return fail(res, 405, ErrorCodes.BAD_REQUEST, 'use POST');
    }
    let body: Buffer;
    try {
      body = await this.readBody(req);
    } catch (err) {
      if (isEdgetwinError(err, ErrorCodes.PAYLOAD_TOO_LARGE)) {
        ctx.reject(err);
        res.setHeader('connection', 'close');
        return fail(res, 413, err.code, err.message);
      }
      return fail(res, 400, ErrorCodes.BAD_REQUEST, errorMessage(err));
    }
    let input: ReturnType<typeof inputItems>;
    try {
      input = inputItems(JSON.parse(body.toString('utf8')));
    } catch (err) {
      const e = isEdgetwinError(err) ? err : new EdgetwinError(ErrorCodes.BAD_READING, `body is not valid JSON (${errorMessage(err)})`);
      ctx.reject(e);
      return fail(res, 400, e.code, e.message);
    }
    const now = Date.now();
    const good: SourceReading[] = [];
    /** The input index of each good reading. */
    const at: number[] = [];
    const rejected: { index: number; code: string; message: string }[] = [];
    input.items.forEach((it, index) => {
      try {
        good.push(toReading(it, now, input.where(index), this.window));
        at.push(index);
      } catch (err) {
        const e = err as EdgetwinError;
        ctx.reject(e);
        rejected.push({ index, code: e.code, message: e.message });
      }
    });
    if (good.length === 0) return send(res, 400, { code: ErrorCodes.BAD_READING, message: rejected[0]!.message, rejected });
    let refused: RefusedReading[];
    try {
      refused = (await ctx.emitDurable(good)) ?? [];
    } catch (err) {
      const code = isEdgetwinError(err) ? err.code : ErrorCodes.INTERNAL;
      return fail(res, 503, code, `not stored: ${errorMessage(err)}`);
    }
    // Refused at commit (one metric name too many): answered like the other refusals, by input index.
    for (const { index, err } of refused)
      if (index < at.length) rejected.push({ index: at[index]!, code: err.code, message: `${input.where(at[index]!)}: ${err.message}` });
    rejected.sort((a, b) => a.index - b.index);
    const accepted = good.length - refused.filter((r) => r.index < at.length).length;
    if (accepted === 0) return send(res, 400, { code: rejected[0]!.code, message: rejected[0]!.message, rejected });
    send(res, 200, { accepted, rejected });
  }

  private readBody(req: IncomingMessage): Promise<Buffer> {
    const limit = this.cfg.maxBodyBytes;
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      req.resume();
      return Promise.reject(new EdgetwinError(ErrorCodes.PAYLOAD_TOO_LARGE, `body over ${limit} bytes`));
    }
    return new Promise((resolve, reject) => {
      const parts: Buffer[] = [];
      let size = 0;
      req.on('data', (d: Buffer) => {
        size += d.length;
        if (size > limit) {
          req.removeAllListeners('data');
          req.resume();
          reject(new EdgetwinError(ErrorCodes.PAYLOAD_TOO_LARGE, `body over ${limit} bytes`));
        } else parts.push(d);
      });
      req.on('end', () => resolve(Buffer.concat(parts, size)));
      req.on('error', reject);
    });
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}
