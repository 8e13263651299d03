/**
 * CloudClient: the collector's one way to the cloud API — one base URL, resolved once from the
 * config, one site token, and one keep-alive pool (common/deadline-pool.ts) shared by everything
 * that talks to the cloud over HTTP: the ingest sink, the desired feed, the site heartbeat and
 * the model cache. Each exchange runs under the deadline its caller gives (ingest 30 s, heartbeat
 * 5 s, a model file 60 s…), and one exchange's timeout never cuts another's short.
 *
 * `cloudEndpoint` is the one place that says where the cloud is: `twin.cloudUrl`, else the HTTP
 * sink's `url` when that sink is enabled; the token likewise (`twin.cloudToken`, else
 * `sinks.http.token`). A section's own `cloudUrl`/`cloudToken` (models, c2d) still wins for it;
 * `CloudClients` then hands out one client per distinct endpoint.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { DeadlinePool } from '../../common/deadline-pool.js';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';

export interface CloudEndpoint {
  /** Base URL of the cloud API, e.g. https://edgetwin.example.com (a path prefix is kept). */
  url: string;
  /** The site's collector token (a secret: never logged). */
  token?: string | undefined;
}

export interface CloudRequest {
  method: 'GET' | 'PUT' | 'POST';
  /** Path under the base URL, with its query: `/v1/desired?site=…`. */
  path: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** The whole exchange (connect, headers, body) must finish within this. */
  timeoutMs: number;
  /** For messages: "cloud ingest", "site heartbeat"… */
  what: string;
  /** Aborts the exchange (its owner is stopping). */
  signal?: AbortSignal;
  /** A declared body longer than this is refused before it is read (EDGETWIN_ERR_PAYLOAD_TOO_LARGE). */
  maxBytes?: number;
}

export interface CloudResponse {
  statusCode: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** Where the cloud is for this collector (see the file comment), or undefined when nothing says. */
export function cloudEndpoint(cfg: {
  twin: { cloudUrl?: string | undefined; cloudToken?: string | undefined };
  sinks: { http: { enabled: boolean; url: string; token?: string | undefined } };
}): CloudEndpoint | undefined {
  const url = cfg.twin.cloudUrl ?? (cfg.sinks.http.enabled ? cfg.sinks.http.url : undefined);
  return url ? { url, token: cfg.twin.cloudToken ?? cfg.sinks.http.token } : undefined;
}

export class CloudClient {
  readonly url: string;
  private readonly basePath: string;
  private readonly pool: DeadlinePool;

  constructor(
    readonly endpoint: CloudEndpoint,
    opts: { connections?: number } = {},
  ) {
    const u = new URL(endpoint.url);
    this.url = endpoint.url;
    this.basePath = u.pathname.replace(/\/$/, '');
    // The pool's own timeoutMs is only the default; every request passes its own.
    this.pool = new DeadlinePool(u.origin, { connections: opts.connections ?? 6, timeoutMs: 30_000, keepAliveTimeoutMs: 30_000 });
  }

  /**
   * One exchange under its deadline, the whole body read; rejects with DeadlineError on a timeout
   * or an abort, PAYLOAD_TOO_LARGE over `maxBytes`, undici's error on a network failure.
   */
  request(req: CloudRequest): Promise<CloudResponse> {
    const headers: Record<string, string> = { ...req.headers };
    if (this.endpoint.token) headers['authorization'] = `Bearer ${this.endpoint.token}`;
    const maxBytes = req.maxBytes;
    return this.pool.run(
      async (pool, signal) => {
        const r = await pool.request({ method: req.method, path: `${this.basePath}${req.path}`, headers, body: req.body, signal });
        const declared = Number(r.headers['content-length'] ?? 0);
        if (maxBytes !== undefined && declared > maxBytes) {
          r.body.destroy();
          throw new EdgetwinError(
            ErrorCodes.PAYLOAD_TOO_LARGE,
            `${req.what}: the cloud sent ${declared} bytes, over the ${maxBytes}-byte limit`,
            {
              details: { bytes: declared, maxBytes },
            },
          );
        }
        return { statusCode: r.statusCode, headers: r.headers, body: Buffer.from(await r.body.arrayBuffer()) };
      },
      req.what,
      { timeoutMs: req.timeoutMs, ...(req.signal ? { signal: req.signal } : {}) },
    );
  }

  /** Ends the exchanges in flight and closes the pool. */
  close(graceMs = 1000): Promise<void> {
    return this.pool.close(graceMs);
  }
}

/** One CloudClient per distinct endpoint (usually exactly one); closed together when the collector stops. */
export class CloudClients {
  private readonly clients = new Map<string, CloudClient>();

  constructor(private readonly opts: { connections: number }) {}

  get(endpoint: CloudEndpoint): CloudClient {
    const key = `${endpoint.url}\u0000${endpoint.token ?? ''}`;
    let c = this.clients.get(key);
    if (!c) this.clients.set(key, (c = new CloudClient(endpoint, this.opts)));
    return c;
  }

  get size(): number {
    return this.clients.size;
  }

  async close(graceMs = 1000): Promise<void> {
    await Promise.all([...this.clients.values()].map((c) => c.close(graceMs)));
    this.clients.clear();
  }
}
