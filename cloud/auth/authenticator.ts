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
import { OidcVerifier } from './oidc.js';
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
    // The site prefix follows the wire's site id rule (never `.` or `..`: site ids name lake folders).
    const m = /^((?!\.{1,2}:)[A-Za-z0-9._-]{1,64}):(.+)$/.exec(entry);
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
  /** OIDC/JWT sign-in (auth.oidc), beside the static tokens. */
  private readonly oidc: OidcVerifier | undefined;

  constructor(
    private readonly tokens: TokenStore,
    private readonly cfg: Pick<CloudConfig, 'auth' | 'ingest' | 'http'>,
  ) {
    this.configTokens = parseConfigTokens(cfg.ingest.tokens);
    this.loopback = isLoopbackHost(cfg.http.host);
    this.oidc = cfg.auth.oidc.enabled ? new OidcVerifier(cfg.auth.oidc) : undefined;
    // A token created or revoked through this store takes effect at once (other processes on the same
    // SQLite file: within CACHE_MS); the caches below only bound the database reads between changes.
    tokens.onChange(() => {
      this.cache.clear();
      this.openUntil = 0;
    });
  }

  /** True while no token was ever created and the API is loopback-only (as of the last check; `isOpen()` re-checks). */
  get open(): boolean {
    return this.openNow;
  }

  /** Re-checks open mode at most once a second, or at once after a token change (any replica may have created the first token). */
  async isOpen(): Promise<boolean> {
    const now = Date.now();
    if (now >= this.openUntil) {
      // A cloud set up for enterprise sign-in is never open, even before its first static token.
      const could = this.cfg.auth.openWhenNoTokens && this.loopback && this.configTokens.length === 0 && !this.oidc;
      this.openNow = could && (await this.tokens.everCreated()) === 0;
      this.openUntil = now + CACHE_MS;
    }
    return this.openNow;
  }

  /**
   * The principal of a token `authenticate` resolved less than CACHE_MS ago, without a promise (the
   * hot read path); undefined otherwise — then `authenticate` decides (unknown tokens, open mode, JWTs).
   */
  cached(authorization: string | undefined, queryToken?: string): Principal | undefined {
    const presented = authorization?.startsWith('Bearer ') ? authorization.slice(7).trim() : queryToken;
    if (!presented || (this.oidc && OidcVerifier.looksLikeJwt(presented))) return undefined;
    const hit = this.cache.get(presented);
    return hit?.p !== undefined && hit.until > Date.now() ? hit.p : undefined;
  }

  /** Resolves the caller; throws 401 for a missing (when required) or unknown token. */
  async authenticate(authorization: string | undefined, queryToken?: string): Promise<Principal> {
    const presented = authorization?.startsWith('Bearer ') ? authorization.slice(7).trim() : queryToken;
    if (!presented) {
      if (await this.isOpen()) return OPEN;
      if (this.cfg.auth.anonymousRole === 'viewer') return ANONYMOUS;
      throw new EdgetwinError(ErrorCodes.UNAUTHORIZED, 'missing bearer token (Authorization: Bearer <token>)');
    }
    // A JWT goes to the OIDC verifier (its own cache; 401/403 with a reason, 503 when the issuer is unreachable).
    if (this.oidc && OidcVerifier.looksLikeJwt(presented)) return this.oidc.verify(presented);
    const hit = this.cache.get(presented);
    // Unknown tokens are cached too, so guessing costs no database reads.
    const p = hit && hit.until > Date.now() ? hit.p : await this.resolve(presented);
    if (!p) {
      if (await this.isOpen()) return OPEN;
      throw new EdgetwinError(ErrorCodes.UNAUTHORIZED, 'unknown or revoked token');
    }
    return p;
  }

  private async resolve(token: string): Promise<Principal | undefined> {
    const now = Date.now();
    const buf = Buffer.from(token);
    const fromConfig = this.configTokens.find((t) => t.token.length === buf.length && timingSafeEqual(t.token, buf));
    const p = fromConfig?.principal ?? (await this.tokens.lookup(token));
    // Revocation elsewhere takes effect within CACHE_MS (here: at once, onChange); unknown tokens are cached too, so guessing costs no DB reads.
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

// Site scope (requireSite, scopedSite, device ownership) is cloud/auth/site-policy.ts.
