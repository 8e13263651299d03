/**
 * chaos:cloud's API clients, all through the load balancer in front of the replicas:
 *   ApiClient   one request per connection (so a retry reaches another replica), retried ONCE
 *               after a dropped connection or a 502/503/504 (after its Retry-After, at most 2 s);
 *               what still fails counts as requests_failed_after_retry.
 *   SseWatcher  one /v1/stream subscriber that reconnects with Last-Event-ID whenever its replica
 *               goes away; every change id it receives is counted, to compare with the changes table.
 *   EtagRounds  50 concurrent tag PATCHes with the same If-Match: exactly one may win, and the twin
 *               must then hold the winner's value (anything else is a lost update).
 */
import { request } from 'undici';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface ApiFigures {
  requests: number;
  retried: number;
  failedAfterRetry: number;
  failedSamples: string[];
}

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
  /** An earlier attempt was lost on the wire: a write may have happened before this answer. */
  inDoubt?: boolean;
}

export class ApiClient {
  readonly figures: ApiFigures = { requests: 0, retried: 0, failedAfterRetry: 0, failedSamples: [] };

  constructor(
    private readonly base: string,
    private readonly token: string,
  ) {}

  private async once(method: 'GET' | 'PATCH', path: string, body?: unknown, ifMatch?: string): Promise<Answer> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (ifMatch) headers['if-match'] = ifMatch;
    const r = await request(`${this.base}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      reset: true, // a new connection per request: the balancer picks the next replica
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
    const text = await r.body.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON: kept as text
    }
    return { status: r.statusCode, headers: r.headers, body: parsed };
  }

  /** The answer, after at most one retry; undefined when the retry failed too (counted). */
  async call(method: 'GET' | 'PATCH', path: string, body?: unknown, ifMatch?: string): Promise<Answer | undefined> {
    this.figures.requests++;
    let why = '';
    let dropped = false;
    for (let attempt = 0; attempt < 2; attempt++) {
      if (attempt > 0) this.figures.retried++;
      try {
        const a = await this.once(method, path, body, ifMatch);
        if (a.status < 502 || a.status > 504) return dropped ? { ...a, inDoubt: true } : a;
        why = `HTTP ${a.status} ${JSON.stringify(a.body).slice(0, 160)}`;
        const after = Number(a.headers['retry-after'] ?? 1);
        await sleep(Math.min(2000, Math.max(0, after * 1000)));
      } catch (err) {
        why = err instanceof Error ? err.message : String(err);
        dropped = true;
      }
    }
    this.fail(`${method} ${path}: ${why}`);
    return undefined;
  }

  fail(what: string): void {
    this.figures.failedAfterRetry++;
    if (this.figures.failedSamples.length < 10) this.figures.failedSamples.push(what);
  }
}

/** One SSE subscriber that follows the stream across replicas with Last-Event-ID. */
export class SseWatcher {
  /** Change id → times received. */
  readonly seen = new Map<number, number>();
  lastId = 0;
  reconnects = 0;
  private ac: AbortController | undefined;
  private stopped = false;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly base: string,
    private readonly token: string,
    private readonly api: ApiClient,
  ) {}

  /** Resolves once the first stream is open. */
  async start(): Promise<void> {
    let opened!: () => void;
    const ready = new Promise<void>((r) => (opened = r));
    this.loop = this.run(opened);
    await ready;
  }

  private async run(opened: () => void): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      this.ac = new AbortController();
      try {
        const headers: Record<string, string> = { authorization: `Bearer ${this.token}` };
        if (this.lastId > 0) headers['last-event-id'] = String(this.lastId);
        const res = await request(`${this.base}/v1/stream`, { headers, signal: this.ac.signal, reset: true, bodyTimeout: 0 });
        if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode} ${(await res.body.text()).slice(0, 160)}`);
        failures = 0;
        opened();
        let buf = '';
        for await (const chunk of res.body) {
          buf += (chunk as Buffer).toString('utf8');
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const id = /^id: (\d+)$/m.exec(buf.slice(0, i))?.[1];
            buf = buf.slice(i + 2);
            if (id === undefined) continue;
            const n = Number(id);
            this.seen.set(n, (this.seen.get(n) ?? 0) + 1);
            this.lastId = Math.max(this.lastId, n);
          }
        }
      } catch (err) {
        if (this.stopped) return;
        // The first failed connect is retried at once (the balancer picks another replica); a
        // second one in a row is a request that failed after its retry.
        if (++failures === 2) this.api.fail(`SSE connect: ${err instanceof Error ? err.message : String(err)}`);
        if (failures >= 2) await sleep(500);
      }
      if (!this.stopped) this.reconnects++;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.ac?.abort();
    await this.loop?.catch(() => undefined);
  }
}

export interface EtagFigures {
  rounds: number;
  /** Rounds whose writes could not all be settled (GET failed): not judged. */
  roundsUnjudged: number;
  winners: number;
  conflicts412: number;
  inDoubt: number;
  lostUpdates: number;
}

interface TwinTags {
  etag?: string;
  tags?: Record<string, string>;
}

/** Rounds of `writers` concurrent PATCHes with one ETag on one device, spread over the replicas by the balancer. */
export class EtagRounds {
  readonly figures: EtagFigures = { rounds: 0, roundsUnjudged: 0, winners: 0, conflicts412: 0, inDoubt: 0, lostUpdates: 0 };

  constructor(
    private readonly api: ApiClient,
    private readonly device: string,
    private readonly writers = 50,
  ) {}

  async round(): Promise<void> {
    const n = this.figures.rounds++;
    const path = `/v1/twins/${encodeURIComponent(this.device)}`;
    const before = await this.api.call('GET', path);
    const etag = before?.headers['etag'];
    if (before?.status !== 200 || typeof etag !== 'string') {
      this.figures.roundsUnjudged++;
      return;
    }
    const value = (w: number): string => `round-${n}-writer-${w}`;
    const answers = await Promise.all(
      Array.from({ length: this.writers }, (_, w) => this.api.call('PATCH', path, { tags: { probe: value(w) } }, etag)),
    );
    const won = answers.flatMap((a, w) => (a?.status === 200 ? [w] : []));
    const doubt = answers.flatMap((a, w) => (a === undefined || a.inDoubt || (a.status !== 200 && a.status !== 412) ? [w] : []));
    this.figures.winners += won.length;
    this.figures.conflicts412 += answers.filter((a) => a?.status === 412 && !a.inDoubt).length;
    this.figures.inDoubt += doubt.length;
    const after = await this.api.call('GET', path);
    if (after?.status !== 200) {
      this.figures.roundsUnjudged++;
      return;
    }
    const probe = (after.body as TwinTags).tags?.['probe'];
    // More than one 200 is a lost update by definition; one 200 must be the value kept; with none
    // (every winner's answer lost on the wire), the value kept must be one of the in-doubt writers'.
    if (won.length > 1) this.figures.lostUpdates += won.length - 1;
    else if (won.length === 1 && probe !== value(won[0]!)) this.figures.lostUpdates++;
    else if (won.length === 0 && probe !== (before.body as TwinTags).tags?.['probe'] && !doubt.some((w) => probe === value(w)))
      this.figures.lostUpdates++;
  }
}
