/**
 * An undici keep-alive pool whose every exchange (connect, headers and the body read by `io`) runs
 * under one deadline. undici's own timeouts are not enough: when a process's first connection is
 * accepted and closed at once (an L4 proxy whose backend is down), a request can stay pending with
 * no socket and ignore its AbortSignal. On the deadline (or `stop`) the pool is destroyed without
 * waiting — a wedged pool's destroy() may never resolve — and a fresh one takes its place.
 */
import { Pool } from 'undici';

export class DeadlineError extends Error {
  constructor(message: string, readonly timedOut: boolean) {
    super(message);
    this.name = 'DeadlineError';
  }
}

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

  private retire(pool: Pool): void {
    if (this.pool === pool) this.pool = undefined;
    pool.destroy().catch(() => undefined);
  }

  /** Runs `io` on the pool; rejects with DeadlineError when it outlasts `timeoutMs` or the pool is closed. */
  async run<T>(io: (pool: Pool, signal: AbortSignal) => Promise<T>, what: string): Promise<T> {
    if (this.stop.signal.aborted) throw new DeadlineError(`${what}: client closed`, false);
    const pool = this.current();
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    let onStop: (() => void) | undefined;
    const cut = new Promise<never>((_, reject) => {
      const fail = (err: DeadlineError): void => {
        ac.abort(err);
        this.retire(pool);
        reject(err);
      };
      timer = setTimeout(() => fail(new DeadlineError(`${what} did not complete within ${this.opts.timeoutMs} ms`, true)), this.opts.timeoutMs);
      onStop = () => fail(new DeadlineError(`${what}: client closed`, false));
      this.stop.signal.addEventListener('abort', onStop, { once: true });
    });
    try {
      return await Promise.race([io(pool, ac.signal), cut]);
    } finally {
      clearTimeout(timer);
      if (onStop) this.stop.signal.removeEventListener('abort', onStop);
    }
  }

  /** Ends exchanges in flight and closes the pool, waiting at most `graceMs` for an orderly close. */
  async close(graceMs = 1000): Promise<void> {
    this.stop.abort();
    const pool = this.pool;
    this.pool = undefined;
    if (!pool) return;
    let timer: NodeJS.Timeout | undefined;
    const closed = await Promise.race([pool.close().then(() => true, () => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), graceMs)))]);
    clearTimeout(timer);
    if (!closed) pool.destroy().catch(() => undefined);
  }
}
