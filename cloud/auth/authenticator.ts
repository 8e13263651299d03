/**
 * Who is asking, and may they: bearer token → principal (role + optional site scope), then one
 * check per route. Tokens come from the TokenStore (hashed) and, for simple deployments, from
 * config (`ingest.tokens`, collector role).
 *
 * While no token was ever created and the API listens on loopback only, every request is served as
 * admin ("open" mode: first start, the test suite). The first token created ends that for good:
 * revoking every token later leaves the API closed.
 */
import { timingSafeEqual } from 'node:crypto';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import type { CloudConfig } from '../config.js';
import type { Principal, Role, TokenStore } from './tokens.js';

export type Action = 'read' | 'write' | 'ingest' | 'feed';

const ALLOWED: Record<Role, ReadonlySet<Action>> = {
  viewer: new Set(['read', 'feed']),
  operator: new Set(['read', 'write', 'feed']),
  admin: new Set(['read', 'write', 'ingest', 'feed']),
  collector: new Set(['ingest', 'feed']),
};

const OPEN: Principal = { id: 'open', name: 'open loopback mode (no tokens exist)', role: 'admin', site: null };
const ANONYMOUS: Principal = { id: 'anonymous', name: 'anonymous', role: 'viewer', site: null };
const CACHE_MS = 1000;
const CACHE_MAX = 10_000;

export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

interface ConfigToken {
  token: Buffer;
  principal: Principal;
}

function parseConfigTokens(list: readonly string[]): ConfigToken[] {
  return list.map((entry, i) => {
    const m = /^([A-Za-z0-9._-]{1,64}):(.+)$/.exec(entry);
    const site = m ? m[1]! : null;
    const token = m ? m[2]! : entry;
    return { token: Buffer.from(token), principal: { id: `config-${i}`, name: `ingest.tokens[${i}]`, role: 'collector', site } };
  });
}

export class Authenticator {
  private readonly configTokens: ConfigToken[];
  private readonly loopback: boolean;
  private readonly cache = new Map<string, { p: Principal | undefined; until: number }>();
  private openUntil = 0;
  private openNow = false;

  constructor(private readonly tokens: TokenStore, private readonly cfg: Pick<CloudConfig, 'auth' | 'ingest' | 'http'>) {
    this.configTokens = parseConfigTokens(cfg.ingest.tokens);
    this.loopback = isLoopbackHost(cfg.http.host);
  }

  /** True while no token was ever created and the API is loopback-only (re-checked at most once a second). */
  get open(): boolean {
    const now = Date.now();
    if (now >= this.openUntil) {
      this.openNow = this.cfg.auth.openWhenNoTokens && this.loopback && this.configTokens.length === 0 && this.tokens.everCreated() === 0;
      this.openUntil = now + CACHE_MS;
    }
    return this.openNow;
  }

  /** Resolves the caller; throws 401 for a missing (when required) or unknown token. */
  authenticate(authorization: string | undefined, queryToken?: string): Principal {
    const presented = authorization?.startsWith('Bearer ') ? authorization.slice(7).trim() : queryToken;
    if (!presented) {
      if (this.open) return OPEN;
      if (this.cfg.auth.anonymousRole === 'viewer') return ANONYMOUS;
      throw new EdgetwinError(ErrorCodes.UNAUTHORIZED, 'missing bearer token (Authorization: Bearer <token>)');
    }
    const p = this.resolve(presented);
    if (!p) {
      if (this.open) return OPEN;
      throw new EdgetwinError(ErrorCodes.UNAUTHORIZED, 'unknown or revoked token');
    }
    return p;
  }

  private resolve(token: string): Principal | undefined {
    const now = Date.now();
    const hit = this.cache.get(token);
    if (hit && hit.until > now) return hit.p;
    const buf = Buffer.from(token);
    const fromConfig = this.configTokens.find((t) => t.token.length === buf.length && timingSafeEqual(t.token, buf));
    const p = fromConfig?.principal ?? this.tokens.lookup(token);
    // Revocation takes effect within CACHE_MS; unknown tokens are cached too, so guessing costs no DB reads.
    if (this.cache.size >= CACHE_MAX) this.cache.clear();
    this.cache.set(token, { p, until: now + CACHE_MS });
    return p;
  }
}

/** Throws 403 unless the principal's role allows the action. */
export function requireAction(p: Principal, action: Action): void {
  if (!ALLOWED[p.role].has(action)) {
    if (p === ANONYMOUS) throw new EdgetwinError(ErrorCodes.UNAUTHORIZED, `a bearer token is needed to ${action}`);
    throw new EdgetwinError(ErrorCodes.FORBIDDEN, `role ${p.role} may not ${action}`, { details: { role: p.role, action } });
  }
}

/** Throws 403 when a site-scoped principal reaches for another site. */
export function requireSite(p: Principal, site: string): void {
  if (p.site !== null && p.site !== site) {
    throw new EdgetwinError(ErrorCodes.FORBIDDEN, `token is scoped to site ${p.site}, not ${site}`, { details: { scope: p.site, site } });
  }
}

/** The site filter a list query must use: the scope, or the requested one (403 if they differ). */
export function scopedSite(p: Principal, requested: string | undefined): string | undefined {
  if (requested !== undefined) requireSite(p, requested);
  return requested ?? p.site ?? undefined;
}
