import Type from 'typebox';
import { Section } from './config.js';

export interface BackoffConfig {
  initialMs: number;
  maxMs: number;
}

/** The one schema of a `backoff` config section; each retry loop passes its own defaults. */
export function backoffConfigSchema(defaults: BackoffConfig) {
  return Section({
    /** First wait; each failure doubles the bound up to maxMs, and the wait is drawn in [initialMs/2, bound]. */
    initialMs: Type.Integer({ minimum: 1, default: defaults.initialMs }),
    maxMs: Type.Integer({ minimum: 1, default: defaults.maxMs }),
  });
}

/**
 * Exponential backoff with "full jitter": thousands of devices that lost the same link must not
 * come back in lockstep and knock the collector over again.
 */
export class Backoff {
  private attempt = 0;
  constructor(
    private readonly cfg: BackoffConfig,
    private readonly random: () => number = Math.random,
  ) {}

  next(): number {
    const cap = Math.min(this.cfg.maxMs, this.cfg.initialMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return Math.round(this.cfg.initialMs / 2 + this.random() * (cap - this.cfg.initialMs / 2));
  }

  reset(): void {
    this.attempt = 0;
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
