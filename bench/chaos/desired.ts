/**
 * Operator traffic during the chaos: every few seconds a random device's desired properties are
 * changed (`PATCH /v1/twins/{id}/desired` with the twin's ETag in If-Match). The change flips
 * `sources.http-readings.enabled: true` in and out of the document: both states keep the agent's
 * one source running, so the readings are untouched, yet each is a new desired version the agent
 * must apply and report (`applied.inSync` on the twin). At the end every changed device must be in
 * sync with the last version set.
 */
import { request } from 'undici';
import { rng, type Rng } from './rng.js';

export interface DesiredFigures {
  changes: number;
  duringFaults: number;
  /** Attempts the cloud did not take (down, 412 after a race): not counted as changes. */
  refused: number;
}

interface TwinView {
  etag?: string;
  desired?: Record<string, unknown> & { $version?: number };
  applied?: { version?: number; inSync?: boolean } | null;
}

async function json(
  method: 'GET' | 'PATCH',
  url: string,
  token: string,
  body?: unknown,
  ifMatch?: string,
): Promise<{ status: number; body: unknown; etag?: string }> {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (ifMatch) headers['if-match'] = ifMatch;
  const r = await request(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  const text = await r.body.text();
  const etag = r.headers['etag'];
  return { status: r.statusCode, body: text ? (JSON.parse(text) as unknown) : undefined, ...(typeof etag === 'string' ? { etag } : {}) };
}

export class DesiredChanger {
  readonly figures: DesiredFigures = { changes: 0, duringFaults: 0, refused: 0 };
  /** The last desired $version set per device. */
  readonly lastVersion = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private readonly r: Rng;

  constructor(
    private readonly cloudUrl: string,
    private readonly token: string,
    private readonly devices: string[],
    seed: number,
    private readonly faultsActive: () => boolean,
  ) {
    this.r = rng(seed ^ 0x5eed);
  }

  start(everyMs: number): void {
    this.timer = setInterval(() => void this.once(), everyMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private async once(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    const device = this.devices[Math.floor(this.r() * this.devices.length)]!;
    try {
      const url = `${this.cloudUrl}/v1/twins/${encodeURIComponent(device)}`;
      const got = await json('GET', url, this.token);
      if (got.status !== 200 || !got.etag) {
        this.figures.refused++;
        return;
      }
      const twin = got.body as TwinView;
      const on = (twin.desired?.['sources'] as Record<string, unknown> | undefined)?.['http-readings'] !== undefined;
      const patch = on ? { sources: null } : { sources: { 'http-readings': { enabled: true } } };
      const during = this.faultsActive();
      const r = await json('PATCH', `${url}/desired`, this.token, patch, got.etag);
      const version = (r.body as TwinView | undefined)?.desired?.$version;
      if (r.status !== 200 || typeof version !== 'number') {
        this.figures.refused++;
        return;
      }
      this.lastVersion.set(device, version);
      this.figures.changes++;
      if (during) this.figures.duringFaults++;
    } catch {
      this.figures.refused++;
    } finally {
      this.busy = false;
    }
  }

  /** Devices whose twin does not (yet) show the last version applied. */
  async notInSync(): Promise<string[]> {
    const out: string[] = [];
    for (const [device, version] of this.lastVersion) {
      try {
        const got = await json('GET', `${this.cloudUrl}/v1/twins/${encodeURIComponent(device)}`, this.token);
        const a = (got.body as TwinView).applied;
        if (!(a?.inSync && (a.version ?? 0) >= version)) out.push(device);
      } catch {
        out.push(device);
      }
    }
    return out;
  }
}
