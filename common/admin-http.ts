/**
 * The small localhost HTTP server every daemon exposes for operations: Prometheus `/metrics`
 * and `/healthz` (200 when healthy, 503 otherwise, with the reasons as JSON).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Type, { type Static } from 'typebox';
import { Section } from './config.js';
import type { Registry } from './metrics.js';

/** A listener's host and port (0 picks a free port); the admin server's defaults: loopback, any port. */
export const listenerProperties = (host = '127.0.0.1', port = 0) => ({
  host: Type.String({ minLength: 1, default: host }),
  port: Type.Integer({ minimum: 0, maximum: 65535, default: port }),
});

export const adminHttpConfigSchema = Section({ enabled: Type.Boolean({ default: true }), ...listenerProperties() });
export type AdminHttpConfig = Static<typeof adminHttpConfigSchema>;

export interface Health {
  ok: boolean;
  [k: string]: unknown;
}

export type ExtraRoute = (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>;

export class AdminHttpServer {
  private server: Server | undefined;

  constructor(
    private readonly cfg: AdminHttpConfig,
    private readonly registry: Registry,
    private readonly health: () => Health,
    private readonly extra?: ExtraRoute,
  ) {}

  async start(): Promise<number | undefined> {
    if (!this.cfg.enabled) return undefined;
    const server = createServer((req, res) => void this.handle(req, res));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.cfg.port, this.cfg.host, () => resolve());
    });
    return (server.address() as AddressInfo).port;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method === 'GET' && path === '/metrics') {
        const body = await this.registry.metrics();
        res.writeHead(200, { 'content-type': this.registry.contentType }).end(body);
        return;
      }
      if (req.method === 'GET' && path === '/healthz') {
        const h = this.health();
        res.writeHead(h.ok ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(h));
        return;
      }
      if (this.extra && (await this.extra(req, res))) return;
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"code":"EDGETWIN_ERR_NOT_FOUND","message":"no such route"}');
    } catch (err) {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ code: 'EDGETWIN_ERR_INTERNAL', message: (err as Error).message }));
    }
  }

  async stop(): Promise<void> {
    const s = this.server;
    if (!s) return;
    this.server = undefined;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}
