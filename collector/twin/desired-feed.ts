/**
 * CloudDesiredFeed: polls the cloud's `GET /v1/desired?site=&since=` (site token) and hands each
 * page to `apply`, which stores the documents together with the page's cursor in one transaction
 * and pushes the changes to devices. Polls again at once while pages come back non-empty, every
 * `desiredPollMs` when idle, and with jittered backoff while the cloud fails.
 *
 * Every poll (connect, headers and body) runs under one deadline of `timeoutMs`. undici's own
 * timeouts are not enough: when the first connection of a process is accepted and closed at once
 * (an L4 proxy whose backend is down), the request can stay pending with no socket and ignore its
 * AbortSignal, so on the deadline the pool is destroyed (which settles the request) and replaced.
 */
import { Ajv } from 'ajv';
import { Pool } from 'undici';
import { Backoff, sleep, type BackoffConfig } from '../../common/backoff.js';
import { EdgetwinError, ErrorCodes, errorMessage, isEdgetwinError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { counter, gauge, type Registry } from '../../common/metrics.js';
import { DEVICE_ID_PATTERN } from '../../common/record.js';
import type { DesiredUpdate } from './twin-store.js';

export interface DesiredFeedConfig {
  /** Base URL of the cloud API. */
  url: string;
  token?: string | undefined;
  siteId: string;
  pollMs: number;
  timeoutMs: number;
  backoff: BackoffConfig;
}

export interface DesiredFeedPage {
  items: (DesiredUpdate & { cursor: number })[];
  next: number;
}

const pageSchema = {
  type: 'object',
  required: ['items', 'next'],
  properties: {
    next: { type: 'integer', minimum: 0 },
    items: {
      type: 'array',
      items: {
        type: 'object',
        required: ['device', 'desired', 'version'],
        properties: {
          device: { type: 'string', pattern: DEVICE_ID_PATTERN },
          desired: { type: 'object' },
          version: { type: 'integer', minimum: 0 },
          cursor: { type: 'integer', minimum: 0 },
        },
      },
    },
  },
} as const;

const validatePage = new Ajv({ strict: false }).compile<DesiredFeedPage>(pageSchema);

export class CloudDesiredFeed {
  private pool: Pool | undefined;
  private readonly origin: string;
  private readonly basePath: string;
  private readonly backoff: Backoff;
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private failingSince = 0;
  private wake: (() => void) | undefined;
  private readonly mPolls;
  private readonly mCursor;
  private readonly mFailing;

  constructor(
    private readonly cfg: DesiredFeedConfig,
    private readonly deps: {
      log: Logger;
      registry: Registry;
      cursor: () => number;
      apply: (updates: DesiredUpdate[], next: number) => void;
    },
  ) {
    const u = new URL(cfg.url);
    this.origin = u.origin;
    this.basePath = u.pathname.replace(/\/$/, '');
    this.backoff = new Backoff(cfg.backoff);
    this.mPolls = counter(deps.registry, 'edgetwin_twin_feed_polls_total', 'Desired-feed polls of the cloud, by result', ['result']);
    this.mCursor = gauge(deps.registry, 'edgetwin_twin_feed_cursor', 'Last desired-feed cursor stored');
    this.mCursor.set(deps.cursor());
    this.mFailing = gauge(deps.registry, 'edgetwin_twin_feed_failing', '1 while desired-feed polls fail or time out, else 0');
  }

  /** True when the last poll succeeded (or none failed yet). */
  get healthy(): boolean {
    return this.failingSince === 0;
  }

  start(): void {
    this.pool = this.newPool();
    this.loop = this.run();
  }

  private newPool(): Pool {
    const ms = this.cfg.timeoutMs;
    return new Pool(this.origin, { connections: 1, connectTimeout: ms, headersTimeout: ms, bodyTimeout: ms });
  }

  /** Swaps in a fresh pool and destroys the old one without waiting: a wedged pool's destroy() may never resolve. */
  private retire(pool: Pool): void {
    if (this.pool === pool) this.pool = this.abort.signal.aborted ? undefined : this.newPool();
    pool.destroy().catch(() => undefined);
  }

  /** Runs one poll's I/O under the feed's deadline and its stop signal, retiring the pool when either fires first. */
  private async withDeadline<T>(io: (pool: Pool, signal: AbortSignal) => Promise<T>): Promise<T> {
    const pool = this.pool;
    if (!pool) throw new EdgetwinError(ErrorCodes.TWIN, 'cloud desired feed is stopped');
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    let onStop: (() => void) | undefined;
    const cut = new Promise<never>((_, reject) => {
      const fail = (err: EdgetwinError): void => {
        ac.abort(err);
        this.retire(pool);
        reject(err);
      };
      timer = setTimeout(
        () => fail(new EdgetwinError(ErrorCodes.TWIN, `cloud desired feed did not answer within twin.feedTimeoutMs (${this.cfg.timeoutMs} ms)`, { details: { timedOut: true } })),
        this.cfg.timeoutMs,
      );
      onStop = () => fail(new EdgetwinError(ErrorCodes.TWIN, 'cloud desired feed stopped'));
      if (this.abort.signal.aborted) onStop();
      else this.abort.signal.addEventListener('abort', onStop, { once: true });
    });
    try {
      return await Promise.race([io(pool, ac.signal), cut]);
    } finally {
      clearTimeout(timer);
      if (onStop) this.abort.signal.removeEventListener('abort', onStop);
    }
  }

  /** Polls now instead of at the end of the idle wait. */
  poke(): void {
    this.wake?.();
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      let waitMs: number;
      try {
        const before = this.deps.cursor();
        const page = await this.pollOnce();
        if (this.failingSince !== 0) this.deps.log.info({ failedMs: Date.now() - this.failingSince }, 'desired feed reachable again');
        this.failingSince = 0;
        this.mFailing.set(0);
        this.backoff.reset();
        // A full page may have more behind it; a cursor that did not move must not spin.
        waitMs = page.items.length > 0 && this.deps.cursor() > before ? 0 : this.cfg.pollMs;
      } catch (err) {
        if (signal.aborted) break;
        const code = isEdgetwinError(err) ? err.code : ErrorCodes.TWIN;
        this.mPolls.inc({ result: isEdgetwinError(err) && err.details?.['timedOut'] ? 'timeout' : 'error' });
        this.mFailing.set(1);
        // Log the first failure of a run at warn and the rest at debug: an offline site polls for hours.
        const level = this.failingSince === 0 ? 'warn' : 'debug';
        if (this.failingSince === 0) this.failingSince = Date.now();
        this.deps.log[level]({ code, err: errorMessage(err) }, 'desired feed poll failed; retrying with backoff');
        waitMs = this.backoff.next();
      }
      if (waitMs > 0) {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          void sleep(waitMs, signal).then(resolve);
        });
        this.wake = undefined;
      }
    }
  }

  /** One request: fetches the page after the stored cursor and applies it. */
  async pollOnce(): Promise<DesiredFeedPage> {
    const since = this.deps.cursor();
    const path = `${this.basePath}/v1/desired?site=${encodeURIComponent(this.cfg.siteId)}&since=${since}`;
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.cfg.token) headers['authorization'] = `Bearer ${this.cfg.token}`;
    const res = await this.withDeadline(async (pool, signal) => {
      try {
        const r = await pool.request({ method: 'GET', path, headers, signal });
        return { statusCode: r.statusCode, text: await r.body.text() };
      } catch (cause) {
        if (isEdgetwinError(cause)) throw cause;
        throw new EdgetwinError(ErrorCodes.TWIN, `cloud desired feed unreachable: ${errorMessage(cause)}`, { cause });
      }
    });
    const text = res.text;
    if (res.statusCode !== 200) {
      const code = res.statusCode === 401 || res.statusCode === 403 ? ErrorCodes.UNAUTHORIZED : ErrorCodes.TWIN;
      throw new EdgetwinError(code, `cloud desired feed answered ${res.statusCode}: ${text.slice(0, 200)}`);
    }
    let page: unknown;
    try {
      page = JSON.parse(text);
    } catch (cause) {
      throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, 'cloud desired feed sent invalid JSON', { cause });
    }
    if (!validatePage(page)) {
      const e = validatePage.errors?.[0];
      throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, `cloud desired feed page invalid at ${e?.instancePath || '/'}: ${e?.message ?? 'schema mismatch'}`);
    }
    const valid = page;
    this.deps.apply(
      valid.items.map((i) => ({ device: i.device, desired: i.desired, version: i.version })),
      Math.max(valid.next, since),
    );
    this.mPolls.inc({ result: valid.items.length > 0 ? 'changes' : 'empty' });
    this.mCursor.set(this.deps.cursor());
    return valid;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.wake?.();
    await this.loop?.catch(() => undefined);
    const pool = this.pool;
    this.pool = undefined;
    if (!pool) return;
    // An idle pool closes at once; one that does not within the deadline is destroyed instead.
    const waited = new AbortController();
    const closed = await Promise.race([pool.close().then(() => true, () => true), sleep(this.cfg.timeoutMs, waited.signal).then(() => false)]);
    waited.abort(); // the timer must not hold the process open after a clean close
    if (!closed) pool.destroy().catch(() => undefined);
  }
}
