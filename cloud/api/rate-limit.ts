/**
 * HTTP rate limits (token buckets, common/token-bucket.ts): every authenticated request costs its
 * principal one token (a person, a script or a dashboard behind one token cannot flood the API),
 * and ingest is limited per site, by readings, in buckets of its own — so one site's backlog
 * flushing at full speed is slowed down with 429 + Retry-After while every other site's batches
 * still pass. Collectors retry a 429 (same batch id), so nothing is lost by being told to wait.
 *
 * Open loopback mode (no token exists: first start, tests) is not limited: there is nobody to tell
 * apart. The Event Hubs consumer pulls at its own pace and needs no limit.
 */
import Type, { type Static } from 'typebox';
import { configDefaults, Section } from '../../common/config.js';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import { counter, type Registry } from '../../common/metrics.js';
import { TokenBuckets } from '../../common/token-bucket.js';
import type { Principal } from '../auth/tokens.js';

export const rateLimitConfigSchema = Section({
  perPrincipal: Section({
    /** Requests per second per token / signed-in identity (anonymous callers: per address); 0 = no limit. */
    ratePerS: Type.Number({ minimum: 0, default: 50 }),
    /** Requests allowed at once after a quiet spell (a dashboard page load fires a dozen). */
    burst: Type.Integer({ minimum: 1, default: 200 }),
  }),
  ingestPerSite: Section({
    /** Readings per second each site may ingest over HTTP; 0 = no limit. */
    readingsPerS: Type.Number({ minimum: 0, default: 200_000 }),
    /** Readings a site may send at once (a collector's backlog after an outage drains at readingsPerS beyond it). */
    burstReadings: Type.Integer({ minimum: 1, default: 2_000_000 }),
  }),
});

export type RateLimitConfig = Static<typeof rateLimitConfigSchema>;
export const rateLimitDefaults: RateLimitConfig = configDefaults(rateLimitConfigSchema);

/** Readings in an ingest envelope (a message that is not telemetry counts as one). */
export function ingestCost(body: unknown): number {
  const messages = (body as { messages?: unknown } | undefined)?.messages;
  if (!Array.isArray(messages)) return 1;
  let n = 0;
  for (const m of messages) {
    const r = (m as { readings?: unknown } | null)?.readings;
    n += Array.isArray(r) ? Math.max(1, r.length) : 1;
  }
  return Math.max(1, n);
}

export class ApiRateLimiter {
  private readonly principals: TokenBuckets;
  private readonly sites: TokenBuckets;
  private readonly refused;

  constructor(cfg: RateLimitConfig, registry: Registry, now: () => number = Date.now) {
    this.principals = new TokenBuckets(cfg.perPrincipal.ratePerS, cfg.perPrincipal.burst, now, 50_000);
    this.sites = new TokenBuckets(cfg.ingestPerSite.readingsPerS, cfg.ingestPerSite.burstReadings, now, 50_000);
    this.refused = counter(registry, 'edgetwin_cloud_rate_limited_total', 'Requests answered 429 by the API rate limits', ['limit']);
  }

  /** Throws 429 when the principal is over its rate. `ip` keys callers without an identity. */
  principal(p: Principal, ip: string): void {
    if (p.id === 'open') return;
    const key = p.id === 'anonymous' ? `ip:${ip}` : p.id;
    const waitMs = this.principals.take(key);
    if (waitMs > 0) this.refuse('principal', waitMs, `too many requests for ${p.name}`);
  }

  /** Throws 429 when the site is over its ingest rate; `readings` is the batch's cost. */
  ingest(site: string, readings: number): void {
    const waitMs = this.sites.take(site, readings);
    if (waitMs > 0) this.refuse('ingest_site', waitMs, `site ${site} is over its ingest rate`, { site, readings });
  }

  private refuse(limit: 'principal' | 'ingest_site', waitMs: number, message: string, extra: Record<string, unknown> = {}): never {
    this.refused.inc({ limit });
    const retryAfterS = Math.max(1, Math.ceil(waitMs / 1000));
    throw new EdgetwinError(ErrorCodes.RATE_LIMITED, `${message}; retry after ${retryAfterS} s`, {
      details: { limit, retryAfterS, ...extra },
    });
  }
}
