/**
 * An undici keep-alive pool whose every exchange (connect, headers and the body read by `io`) runs
 * under its own deadline (the pool's `timeoutMs`, or the call's). undici's own timeouts are not
 * enough: when a process's first connection is accepted and closed at once (an L4 proxy whose
 * backend is down), a request can stay pending with no socket and ignore its AbortSignal. On a
 * deadline the caller is answered at once and a fresh pool takes the old one's place for new
 * exchanges; the old pool is closed in the background, letting the other exchanges in flight on it
 * finish within their own deadlines, and destroyed without waiting after the longest of them — a
 * wedged pool's destroy() may never resolve. Several users (the collector's ingest, feed,
 * heartbeat and model downloads) can so share one pool without one's timeout cutting another's
 * exchange short. `close` ends everything at once.
 */
import { Pool } from 'undici';
import { DeadlineError } from './errors.js';

export class DeadlinePool {
  private pool: Pool | undefined;
  private readonly stop = new AbortController();

  constructor(
    private readonly origin: string,
    private readonly opts: { connections: number; timeoutMs: number; keepAliveTimeoutMs?: number },
  ) {}

  private current(): Pool {
    this.pool ??= new Pool(this.origin, {
      connections: this.opts.connections,
      connectTimeout: this.opts.timeoutMs,
      headersTimeout: this.opts.timeoutMs,
      bodyTimeout: this.opts.timeoutMs,
      ...(this.opts.keepAliveTimeoutMs ? { keepAliveTimeout: this.opts.keepAliveTimeoutMs } : {}),
    });
    return this.pool;
  }

  /** The longest deadline of any exchange so far: how long a retired pool may still have exchanges in flight. */
  private longestMs = 0;

  /** New exchanges go to a fresh pool; this one closes once its exchanges are done, and is destroyed after the longest deadline. */
  private retire(pool: Pool): void {
    if (this.pool !== pool) return;
    this.pool = undefined;
    const timer = setTimeout(() => pool.destroy().catch(() => undefined), this.longestMs);
    timer.unref();
    pool.close().then(
      () => clearTimeout(timer),
      () => undefined,
    );
  }

  /**
   * Runs `io` on the pool; rejects with DeadlineError when it outlasts its deadline (`timeoutMs`,
   * default the pool's), when `signal` aborts (the caller is stopping) or when the pool is closed.
   */
  async run<T>(
    io: (pool: Pool, signal: AbortSignal) => Promise<T>,
    what: string,
    opts: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<T> {
    if (this.stop.signal.aborted || opts.signal?.aborted) throw new DeadlineError(`${what}: client closed`, false);
    const timeoutMs = opts.timeoutMs ?? this.opts.timeoutMs;
    this.longestMs = Math.max(this.longestMs, timeoutMs);
    const pool = this.current();
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    let onStop: (() => void) | undefined;
    const cut = new Promise<never>((_, reject) => {
      const fail = (err: DeadlineError, retire: boolean): void => {
        ac.abort(err);
        if (retire) this.retire(pool);
        reject(err);
      };
      timer = setTimeout(() => fail(new DeadlineError(`${what} did not complete within ${timeoutMs} ms`, true), true), timeoutMs);
      onStop = () => fail(new DeadlineError(`${what}: client closed`, false), false);
      this.stop.signal.addEventListener('abort', onStop, { once: true });
      opts.signal?.addEventListener('abort', onStop, { once: true });
    });
    try {
      return await Promise.race([io(pool, ac.signal), cut]);
    } finally {
      clearTimeout(timer);
      if (onStop) {
        this.stop.signal.removeEventListener('abort', onStop);
        opts.signal?.removeEventListener('abort', onStop);
      }
    }
  }

  /** Ends exchanges in flight and closes the pool, waiting at most `graceMs` for an orderly close. */
  async close(graceMs = 1000): Promise<void> {
    this.stop.abort();
    const pool = this.pool;
    this.pool = undefined;
    if (!pool) return;
    let timer: NodeJS.Timeout | undefined;
    const closed = await Promise.race([
      pool.close().then(
        () => true,
        () => false,
      ),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), graceMs))),
    ]);
    clearTimeout(timer);
    if (!closed) pool.destroy().catch(() => undefined);
  }
}
