/**
 * CloudDesiredFeed: polls the cloud's `GET /v1/desired?site=&since=` (site token) and hands each
 * page to `apply`, which stores the documents together with the page's cursor in one transaction
 * and pushes the changes to devices. Polls again at once while pages come back non-empty, every
 * `desiredPollMs` when idle, and with jittered backoff while the cloud fails.
 *
 * Every poll (connect, headers and body) runs under one deadline of `timeoutMs` (DeadlinePool:
 * undici alone can leave a request pending forever behind a proxy that accepts and closes).
 */
import { Ajv } from 'ajv';
import { Backoff, sleep, type BackoffConfig } from '../../common/backoff.js';
import { DeadlineError, DeadlinePool } from '../../common/deadline-pool.js';
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
  private client: DeadlinePool | undefined;
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
    this.client = new DeadlinePool(this.origin, { connections: 1, timeoutMs: this.cfg.timeoutMs });
    this.loop = this.run();
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
    const client = this.client;
    if (!client) throw new EdgetwinError(ErrorCodes.TWIN, 'cloud desired feed is stopped');
    let res: { statusCode: number; text: string };
    try {
      res = await client.run(async (pool, signal) => {
        const r = await pool.request({ method: 'GET', path, headers, signal });
        return { statusCode: r.statusCode, text: await r.body.text() };
      }, 'cloud desired feed');
    } catch (cause) {
      if (cause instanceof DeadlineError && cause.timedOut) {
        throw new EdgetwinError(ErrorCodes.TWIN, `cloud desired feed did not answer within twin.feedTimeoutMs (${this.cfg.timeoutMs} ms)`, { cause, details: { timedOut: true } });
      }
      throw new EdgetwinError(ErrorCodes.TWIN, `cloud desired feed unreachable: ${errorMessage(cause)}`, { cause });
    }
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
    // Closing ends a poll in flight at once; an idle pool closes cleanly, a wedged one is destroyed.
    const client = this.client;
    this.client = undefined;
    await client?.close(this.cfg.timeoutMs);
    await this.loop?.catch(() => undefined);
  }
}
