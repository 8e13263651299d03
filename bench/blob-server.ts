/**
 * A protocol-level Azure Blob Storage stand-in for tests and drills, on loopback (node:http;
 * test/helpers/blob-server.ts re-exports it, `npm run drill:dr` keeps its lake copy in it). It answers just
 * the Blob REST calls the real `@azure/storage-blob` SDK makes for edgetwin — Create Container, Put
 * Blob (BlockBlob), Put Block / Put Block List, Get Blob (with ranges), Get Blob Properties, Set
 * Blob Metadata, Delete Blob and List Blobs (flat, prefix, include=metadata, marker paging) — with
 * ETags and the If-Match / If-None-Match conditions answered as Azure does (412 ConditionNotMet,
 * 409 BlobAlreadyExists for If-None-Match: * on Put Blob), error codes in `x-ms-error-code` and an
 * XML body. URLs are path-style, like Azurite: `http://127.0.0.1:<port>/<account>/<container>/<blob>`.
 *
 * Every request must be signed: Shared Key signatures are verified against the account key; a SAS
 * must carry a signature, an unexpired `se` and the permission the operation needs (its signature
 * is not recomputed); those rules are in bench/blob-protocol.ts. Not Azure: no leases, snapshots,
 * tiers, page/append blobs or HNS semantics.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { authenticate, checkConditions, HttpError, rawQuery, xmlEscape, type StoredBlob } from './blob-protocol.js';

export const DEV_ACCOUNT = 'devstoreaccount1';

export interface BlobTestServerOptions {
  account?: string;
  /** Base64 account key (Shared Key signatures are HMAC-SHA256 with its decoded bytes). */
  key?: string;
  /** Largest page of List Blobs (the SDK asks for 5000; a small value exercises marker paging). */
  maxPageSize?: number;
}

export interface BlobRequestLog {
  method: string;
  op: string;
  path: string;
  status: number;
  auth: 'sharedkey' | 'sas' | 'none';
}

export class BlobTestServer {
  readonly account: string;
  readonly key: string;
  readonly containers = new Map<string, Map<string, StoredBlob>>();
  readonly requests: BlobRequestLog[] = [];
  /** Answer the next N requests with 503 ServerBusy (the SDK retries; a test of backoff). */
  failNext = 0;
  private server: Server | undefined;
  private etagSeq = 0;
  private readonly pendingBlocks = new Map<string, Map<string, Buffer>>();
  port = 0;

  constructor(private readonly opts: BlobTestServerOptions = {}) {
    this.account = opts.account ?? DEV_ACCOUNT;
    this.key = opts.key ?? randomBytes(64).toString('base64');
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}/${this.account}`;
  }

  get connectionString(): string {
    return `DefaultEndpointsProtocol=http;AccountName=${this.account};AccountKey=${this.key};BlobEndpoint=${this.endpoint};`;
  }

  /** Blob names of a container (sorted). */
  names(container: string): string[] {
    return [...(this.containers.get(container)?.keys() ?? [])].sort();
  }

  blob(container: string, name: string): Buffer | undefined {
    return this.containers.get(container)?.get(name)?.data;
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const path = url.split('?')[0]!;
    const query = new Map(rawQuery(url).map(([k, v]) => [k.toLowerCase(), decodeURIComponent(v)]));
    const log: BlobRequestLog = {
      method: req.method ?? '',
      op: query.get('comp') ?? query.get('restype') ?? 'blob',
      path,
      status: 0,
      auth: 'none',
    };
    this.requests.push(log);
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    res.setHeader('x-ms-request-id', randomBytes(8).toString('hex'));
    res.setHeader('x-ms-version', String(req.headers['x-ms-version'] ?? '2026-04-06'));
    res.setHeader('Date', new Date().toUTCString());
    const clientId = req.headers['x-ms-client-request-id'];
    if (typeof clientId === 'string') res.setHeader('x-ms-client-request-id', clientId);
    try {
      if (this.failNext > 0) {
        this.failNext--;
        throw new HttpError(503, 'ServerBusy', 'The server is busy (injected by the test).');
      }
      const segments = path.split('/').slice(1).map(decodeURIComponent);
      if (segments[0] !== this.account) throw new HttpError(400, 'InvalidUri', 'path-style URLs start with the account name');
      log.auth = authenticate(req, url, query, segments, { name: this.account, key: this.key });
      const container = segments[1] ?? '';
      const blobName = segments.slice(2).join('/');
      if (!container) throw new HttpError(400, 'InvalidUri', 'no container in the path');
      if (query.get('restype') === 'container') this.containerOp(req, res, container, query);
      else this.blobOp(req, res, container, blobName, query, body);
    } catch (err) {
      const e = err instanceof HttpError ? err : new HttpError(500, 'InternalError', String(err));
      res.statusCode = e.status;
      res.setHeader('x-ms-error-code', e.code);
      if (req.method === 'HEAD') res.end();
      else {
        res.setHeader('Content-Type', 'application/xml');
        res.end(`<?xml version="1.0" encoding="utf-8"?><Error><Code>${e.code}</Code><Message>${xmlEscape(e.message)}</Message></Error>`);
      }
    }
    log.status = res.statusCode;
  }

  private container(name: string): Map<string, StoredBlob> {
    const c = this.containers.get(name);
    if (!c) throw new HttpError(404, 'ContainerNotFound', 'The specified container does not exist.');
    return c;
  }

  private containerOp(req: IncomingMessage, res: ServerResponse, name: string, query: Map<string, string>): void {
    if (req.method === 'PUT' && !query.has('comp')) {
      if (this.containers.has(name)) throw new HttpError(409, 'ContainerAlreadyExists', 'The specified container already exists.');
      this.containers.set(name, new Map());
      res.setHeader('ETag', this.nextEtag());
      res.setHeader('Last-Modified', new Date().toUTCString());
      res.statusCode = 201;
      return void res.end();
    }
    if ((req.method === 'GET' || req.method === 'HEAD') && !query.has('comp')) {
      this.container(name);
      res.setHeader('x-ms-lease-status', 'unlocked');
      res.setHeader('x-ms-lease-state', 'available');
      return void res.end();
    }
    if (req.method === 'DELETE' && !query.has('comp')) {
      this.container(name);
      this.containers.delete(name);
      res.statusCode = 202;
      return void res.end();
    }
    if (req.method === 'GET' && query.get('comp') === 'list') return this.list(res, name, query);
    throw new HttpError(
      400,
      'UnsupportedHttpVerb',
      `container operation ${req.method} ${query.get('comp') ?? ''} is not supported by the test server`,
    );
  }

  private list(res: ServerResponse, name: string, query: Map<string, string>): void {
    const blobs = this.container(name);
    const prefix = query.get('prefix') ?? '';
    const marker = query.get('marker') ?? '';
    const max = Math.min(Number(query.get('maxresults') ?? 5000), this.opts.maxPageSize ?? 5000);
    const withMeta = (query.get('include') ?? '').split(',').includes('metadata');
    const names = [...blobs.keys()].filter((n) => n.startsWith(prefix) && n >= marker).sort();
    const page = names.slice(0, max);
    const next = names[max] ?? '';
    const items = page.map((n) => {
      const b = blobs.get(n)!;
      const meta = withMeta
        ? `<Metadata>${Object.entries(b.metadata)
            .map(([k, v]) => `<${k}>${xmlEscape(v)}</${k}>`)
            .join('')}</Metadata>`
        : '';
      return `<Blob><Name>${xmlEscape(n)}</Name><Properties><Creation-Time>${b.lastModified.toUTCString()}</Creation-Time><Last-Modified>${b.lastModified.toUTCString()}</Last-Modified><Etag>${b.etag}</Etag><Content-Length>${b.data.length}</Content-Length><Content-Type>${xmlEscape(b.contentType)}</Content-Type><BlobType>BlockBlob</BlobType><AccessTier>Hot</AccessTier><AccessTierInferred>true</AccessTierInferred><LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState><ServerEncrypted>true</ServerEncrypted></Properties>${meta}</Blob>`;
    });
    res.setHeader('Content-Type', 'application/xml');
    res.end(
      `<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="${xmlEscape(this.endpoint)}/" ContainerName="${xmlEscape(name)}">` +
        `${prefix ? `<Prefix>${xmlEscape(prefix)}</Prefix>` : ''}${marker ? `<Marker>${xmlEscape(marker)}</Marker>` : ''}<MaxResults>${max}</MaxResults>` +
        `<Blobs>${items.join('')}</Blobs><NextMarker>${xmlEscape(next)}</NextMarker></EnumerationResults>`,
    );
  }

  private nextEtag(): string {
    return `"0x8DC${(++this.etagSeq).toString(16).toUpperCase().padStart(12, '0')}"`;
  }

  private metadataOf(req: IncomingMessage): Record<string, string> {
    const meta: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (k.startsWith('x-ms-meta-') && typeof v === 'string') meta[k.slice(10)] = v;
    return meta;
  }

  private sendProps(res: ServerResponse, b: StoredBlob): void {
    res.setHeader('ETag', b.etag);
    res.setHeader('Last-Modified', b.lastModified.toUTCString());
    res.setHeader('x-ms-creation-time', b.lastModified.toUTCString());
    res.setHeader('x-ms-blob-type', 'BlockBlob');
    res.setHeader('x-ms-lease-status', 'unlocked');
    res.setHeader('x-ms-lease-state', 'available');
    res.setHeader('x-ms-server-encrypted', 'true');
    res.setHeader('Accept-Ranges', 'bytes');
    res.setHeader('Content-Type', b.contentType);
    for (const [k, v] of Object.entries(b.metadata)) res.setHeader(`x-ms-meta-${k}`, v);
  }

  private written(res: ServerResponse, b: StoredBlob, status: number): void {
    res.statusCode = status;
    res.setHeader('ETag', b.etag);
    res.setHeader('Last-Modified', b.lastModified.toUTCString());
    res.setHeader('x-ms-request-server-encrypted', 'true');
    res.end();
  }

  private blobOp(
    req: IncomingMessage,
    res: ServerResponse,
    containerName: string,
    name: string,
    query: Map<string, string>,
    body: Buffer,
  ): void {
    if (!name) throw new HttpError(400, 'InvalidUri', 'no blob name');
    const blobs = this.container(containerName);
    const existing = blobs.get(name);
    const comp = query.get('comp');
    const method = req.method;
    const store = (data: Buffer, metadata: Record<string, string>, contentType: string): StoredBlob => {
      const b: StoredBlob = { data, etag: this.nextEtag(), lastModified: new Date(), contentType, metadata };
      blobs.set(name, b);
      return b;
    };
    if (method === 'PUT' && comp === undefined) {
      if (req.headers['x-ms-blob-type'] !== 'BlockBlob') throw new HttpError(400, 'InvalidHeaderValue', 'x-ms-blob-type must be BlockBlob');
      checkConditions(req, existing, true);
      const b = store(body, this.metadataOf(req), String(req.headers['x-ms-blob-content-type'] ?? 'application/octet-stream'));
      this.pendingBlocks.delete(`${containerName}/${name}`);
      res.setHeader('Content-MD5', createHash('md5').update(body).digest('base64'));
      return this.written(res, b, 201);
    }
    if (method === 'PUT' && comp === 'block') {
      const id = query.get('blockid');
      if (!id) throw new HttpError(400, 'InvalidQueryParameterValue', 'blockid is required');
      // Uncommitted blocks wait beside the blob until Put Block List commits them.
      const key = `${containerName}/${name}`;
      const blocks = this.pendingBlocks.get(key) ?? new Map<string, Buffer>();
      blocks.set(id, body);
      this.pendingBlocks.set(key, blocks);
      res.statusCode = 201;
      res.setHeader('x-ms-request-server-encrypted', 'true');
      return void res.end();
    }
    if (method === 'PUT' && comp === 'blocklist') {
      checkConditions(req, existing, true);
      const blocks = this.pendingBlocks.get(`${containerName}/${name}`) ?? new Map<string, Buffer>();
      const ids = [...body.toString('utf8').matchAll(/<(?:Latest|Uncommitted|Committed)>([^<]*)<\//g)].map((m) => m[1]!);
      const parts = ids.map((id) => {
        const part = blocks.get(id);
        if (!part) throw new HttpError(400, 'InvalidBlockList', `block ${id} was not uploaded`);
        return part;
      });
      const b = store(
        Buffer.concat(parts),
        this.metadataOf(req),
        String(req.headers['x-ms-blob-content-type'] ?? 'application/octet-stream'),
      );
      this.pendingBlocks.delete(`${containerName}/${name}`);
      return this.written(res, b, 201);
    }
    if (!existing) throw new HttpError(404, 'BlobNotFound', 'The specified blob does not exist.');
    if (method === 'PUT' && comp === 'metadata') {
      checkConditions(req, existing, false);
      const b = store(existing.data, this.metadataOf(req), existing.contentType);
      return this.written(res, b, 200);
    }
    if ((method === 'GET' || method === 'HEAD') && (comp === undefined || comp === 'metadata')) {
      checkConditions(req, existing, false);
      this.sendProps(res, existing);
      if (method === 'HEAD' || comp === 'metadata') {
        if (comp !== 'metadata') res.setHeader('Content-Length', existing.data.length);
        return void res.end();
      }
      const range = String(req.headers['x-ms-range'] ?? req.headers.range ?? '');
      const m = /^bytes=(\d+)-(\d*)$/.exec(range);
      if (m) {
        const start = Number(m[1]);
        const end = Math.min(m[2] ? Number(m[2]) : existing.data.length - 1, existing.data.length - 1);
        if (start >= existing.data.length && existing.data.length > 0)
          throw new HttpError(416, 'InvalidRange', 'The range specified is invalid for the current size of the resource.');
        res.statusCode = 206;
        res.setHeader('Content-Range', `bytes ${start}-${end}/${existing.data.length}`);
        res.setHeader('Content-Length', Math.max(0, end - start + 1));
        return void res.end(existing.data.subarray(start, end + 1));
      }
      res.setHeader('Content-Length', existing.data.length);
      return void res.end(existing.data);
    }
    if (method === 'DELETE' && comp === undefined) {
      checkConditions(req, existing, false);
      blobs.delete(name);
      res.statusCode = 202;
      res.setHeader('x-ms-delete-type-permanent', 'true');
      return void res.end();
    }
    throw new HttpError(400, 'UnsupportedHttpVerb', `blob operation ${method} ${comp ?? ''} is not supported by the test server`);
  }
}
