/**
 * The collector's client of the cloud model registry (`/v1/models`, site token): which versions
 * are promoted for this site, and one version's entry and file.
 */
import { EdgetwinError, ErrorCodes, errorMessage } from '../../common/errors.js';
import { isStoredModel, type StoredModel } from '../../common/models/files.js';
import type { CloudClient } from '../cloud/cloud-client.js';

export interface PromotedModel {
  name: string;
  version: string;
  sha256: string;
}

export class CloudModelsClient {
  /** Ends requests in flight when the cache stops (the shared client itself stays open). */
  private readonly stopping = new AbortController();

  /** `cloud`: the collector's shared client; `timeoutMs` bounds each whole exchange (a wedged connection cannot hang a rollout or the shutdown). */
  constructor(
    private readonly cloud: CloudClient,
    private readonly cfg: { timeoutMs: number },
  ) {}

  private async get(path: string, maxBytes: number): Promise<Buffer> {
    let res: { statusCode: number; body: Buffer };
    try {
      res = await this.cloud.request({
        method: 'GET',
        path,
        timeoutMs: this.cfg.timeoutMs,
        what: 'cloud model registry',
        maxBytes,
        signal: this.stopping.signal,
      });
    } catch (cause) {
      if (cause instanceof EdgetwinError) throw cause; // over models.maxBytes
      throw new EdgetwinError(ErrorCodes.UPLINK, `cloud model registry unreachable: ${errorMessage(cause)}`, { cause });
    }
    const body = res.body;
    if (res.statusCode === 200) return body;
    const code =
      res.statusCode === 404
        ? ErrorCodes.NOT_FOUND
        : res.statusCode === 401 || res.statusCode === 403
          ? ErrorCodes.UNAUTHORIZED
          : ErrorCodes.UPLINK;
    throw new EdgetwinError(code, `cloud model registry answered ${res.statusCode} for ${path}: ${body.toString('utf8').slice(0, 200)}`, {
      details: { status: res.statusCode },
    });
  }

  private async json(path: string): Promise<unknown> {
    const body = await this.get(path, 16 * 1024 * 1024);
    try {
      return JSON.parse(body.toString('utf8'));
    } catch (cause) {
      throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, `cloud model registry sent invalid JSON for ${path}`, { cause });
    }
  }

  /** Versions that active promotions for this site (or for all sites) name. */
  async promoted(site: string): Promise<PromotedModel[]> {
    const page = (await this.json(`/v1/models/promotions?site=${encodeURIComponent(site)}`)) as { items?: unknown };
    if (!Array.isArray(page.items)) throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, 'cloud promotions page has no items');
    return page.items.filter(
      (p): p is PromotedModel => typeof p?.name === 'string' && typeof p?.version === 'string' && typeof p?.sha256 === 'string',
    );
  }

  async entry(name: string, version: string): Promise<StoredModel> {
    const v = (await this.json(`/v1/models/${encodeURIComponent(name)}/${encodeURIComponent(version)}`)) as Record<string, unknown>;
    const stored = { entry: v['entry'], ...(typeof v['signature'] === 'string' ? { signature: v['signature'] } : {}) };
    if (!isStoredModel(stored)) throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, `cloud entry of ${name} ${version} is not a model entry`);
    return stored;
  }

  file(name: string, version: string, maxBytes: number): Promise<Buffer> {
    return this.get(`/v1/models/${encodeURIComponent(name)}/${encodeURIComponent(version)}/file`, maxBytes);
  }

  async close(): Promise<void> {
    this.stopping.abort();
  }
}
