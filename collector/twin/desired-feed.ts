/**
 * CloudDesiredFeed: polls the cloud's `GET /v1/desired?site=&since=` (site token) and hands each
 * page to `apply`, which stores the documents together with the page's cursor in one transaction
 * and pushes the changes to devices. Polls again at once while pages come back non-empty, every
 * `desiredPollMs` when idle, and with jittered backoff while the cloud fails.
 *
 * Every poll (connect, headers and body) runs under one deadline of `timeoutMs` on the collector's
 * shared cloud client (collector/cloud/cloud-client.ts, common/deadline-pool.ts: undici alone can
 * leave a request pending forever behind a proxy that accepts and closes).
 */
import { Ajv } from 'ajv';
import { Backoff, sleep, type BackoffConfig } from '../../common/backoff.js';
import { DeadlineError, EdgetwinError, ErrorCodes, errorMessage, isEdgetwinError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { counter, gauge, type Registry } from '../../common/metrics.js';
import { desiredFeedPageSchema, type DesiredFeedPage } from '../../common/wire/desired-feed.js';
import { CloudClient, type CloudEndpoint } from '../cloud/cloud-client.js';
import type { DesiredUpdate } from './twin-docs-store.js';

/** The endpoint (url, token) is used only when no shared client is given. */
export interface DesiredFeedConfig extends CloudEndpoint {
  siteId: string;
  pollMs: number;
  timeoutMs: number;
  backoff: BackoffConfig;
}

const validatePage = new Ajv({ strict: false }).compile<DesiredFeedPage>(desiredFeedPageSchema);

export class CloudDesiredFeed {
  private readonly cloud: CloudClient;
  private readonly ownsClient: boolean;
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
      /** The collector's shared client; without one the feed makes its own from cfg's endpoint. */
      cloud?: CloudClient | undefined;
    },
  ) {
    this.ownsClient = !deps.cloud;
    this.cloud = deps.cloud ?? new CloudClient(cfg, { connections: 1 });
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
        this.deps.log[level]({ code, err }, 'desired feed poll failed; retrying with backoff');
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
    if (this.abort.signal.aborted) throw new EdgetwinError(ErrorCodes.TWIN, 'cloud desired feed is stopped');
    let res: { statusCode: number; text: string };
    try {
      const r = await this.cloud.request({
        method: 'GET',
        path: `/v1/desired?site=${encodeURIComponent(this.cfg.siteId)}&since=${since}`,
        headers: { accept: 'application/json' },
        timeoutMs: this.cfg.timeoutMs,
        what: 'cloud desired feed',
        signal: this.abort.signal,
      });
      res = { statusCode: r.statusCode, text: r.body.toString('utf8') };
    } catch (cause) {
      if (cause instanceof DeadlineError && cause.timedOut) {
        throw new EdgetwinError(ErrorCodes.TWIN, `cloud desired feed did not answer within twin.feedTimeoutMs (${this.cfg.timeoutMs} ms)`, {
          cause,
          details: { timedOut: true },
        });
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
      throw new EdgetwinError(
        ErrorCodes.BAD_PAYLOAD,
        `cloud desired feed page invalid at ${e?.instancePath || '/'}: ${e?.message ?? 'schema mismatch'}`,
      );
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
    // The abort ends a poll in flight at once; a client of the feed's own closes (a wedged pool is destroyed).
    if (this.ownsClient) await this.cloud.close(this.cfg.timeoutMs);
    await this.loop?.catch(() => undefined);
  }
}
