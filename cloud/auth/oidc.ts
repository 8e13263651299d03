/**
 * Sign-in with OIDC bearer tokens (Microsoft Entra ID or any OIDC issuer): a JWT is verified with
 * `jose` against the issuer's JWKS (fetched once, cached, re-fetched when a token names a `kid` it
 * does not know: key rotation), its `iss` and `aud` checked, `exp`/`nbf` enforced with a small
 * clock tolerance, and its algorithm pinned to the configured asymmetric ones — `none` and HS*
 * never verify, so an HS256 token "signed" with the issuer's public key (alg confusion) is refused.
 *
 * The identity's app roles (`roles` claim) or group ids (`groups` claim) go through an ordered
 * mapping onto edgetwin's roles and site scopes: the first entry whose value the token carries
 * wins, so an administrator decides precedence by order. A valid token that matches no entry is
 * refused with 403 (the identity is known, it has no access here).
 */
import { createHash } from 'node:crypto';
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload, type RemoteJWKSet } from 'jose';
import Type, { type Static } from 'typebox';
import { configDefaults, Section } from '../../common/config.js';
import { request } from 'undici';
import { EdgetwinError, ErrorCodes, errorMessage } from '../../common/errors.js';
import { ROLES, type Principal, type Role } from './tokens.js';
import { SITE_ID_PATTERN } from '../../common/wire/ingest-envelope.js';

const ASYMMETRIC = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

export const oidcMappingSchema = Section({
  /** An app role name (Entra: the role's value) or a group object id, as it appears in the token. */
  value: Type.String({ minLength: 1 }),
  role: Type.Enum(ROLES),
  /** Scope to one site; absent: every site. */
  site: Type.Optional(Type.String({ pattern: SITE_ID_PATTERN })),
});

export const oidcConfigSchema = Section({
  enabled: Type.Boolean({ default: false }),
  /** The exact `iss` of accepted tokens (Entra v2: `https://login.microsoftonline.com/<tenant>/v2.0`). */
  issuer: Type.String({ default: '' }),
  /** Accepted `aud` values (Entra: the API's application id URI or client id). */
  audience: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
  /** JWKS URL; empty: the `jwks_uri` of `<issuer>/.well-known/openid-configuration`. */
  jwksUri: Type.String({ default: '' }),
  /** Signature algorithms accepted (asymmetric only). */
  algorithms: Type.Array(Type.Enum(ASYMMETRIC), { minItems: 1, default: ['RS256'] }),
  /** Claims whose values are matched against `mapping` (string or array of strings). */
  claims: Type.Array(Type.String({ minLength: 1 }), { minItems: 1, default: ['roles', 'groups'] }),
  /** Ordered: the first entry whose value the token carries gives the role and site. */
  mapping: Type.Array(oidcMappingSchema, { default: [] }),
  /** The claim shown as the principal's name (audit "who"); falls back to `sub`. */
  nameClaim: Type.String({ minLength: 1, default: 'preferred_username' }),
  clockToleranceS: Type.Integer({ minimum: 0, maximum: 300, default: 60 }),
  jwksCacheMaxAgeMs: Type.Integer({ minimum: 1000, default: 600_000 }),
  /** A token with an unknown `kid` re-fetches the JWKS at most this often (rotation without a fetch storm). */
  jwksCooldownMs: Type.Integer({ minimum: 0, default: 30_000 }),
  jwksTimeoutMs: Type.Integer({ minimum: 100, default: 5000 }),
});

export type OidcConfig = Static<typeof oidcConfigSchema>;
export type OidcMapping = Static<typeof oidcMappingSchema>;
export const oidcDefaults: OidcConfig = configDefaults(oidcConfigSchema);

/** Why a token was refused (metric label, audit detail); never the token itself. */
export type SignInFailure =
  | 'expired'
  | 'not_yet_valid'
  | 'wrong_issuer'
  | 'wrong_audience'
  | 'bad_signature'
  | 'alg_not_allowed'
  | 'unknown_key'
  | 'malformed'
  | 'no_role_mapping'
  | 'unknown_token'
  | 'missing_token';

export interface OidcPrincipal extends Principal {
  /** `exp` in ms: the token (and any stream opened with it) ends then. */
  expiresAt: number | null;
}

const JWT_SHAPE = /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/;
const CACHE_MAX = 10_000;
const CACHE_MS = 60_000;

const isLoopbackUrl = (u: URL): boolean => ['localhost', '127.0.0.1', '[::1]'].includes(u.hostname) || /^127\./.test(u.hostname);

/** Config checks beyond the schema; `fail(key, msg)` builds the CONFIG error. */
export function checkOidcConfig(c: OidcConfig, fail: (key: string, msg: string) => Error): void {
  if (!c.enabled) return;
  if (!c.issuer) throw fail('auth.oidc.issuer', 'is required when auth.oidc.enabled');
  if (c.audience.length === 0) throw fail('auth.oidc.audience', 'needs at least one accepted audience');
  for (const key of ['issuer', 'jwksUri'] as const) {
    if (!c[key]) continue;
    let u: URL;
    try {
      u = new URL(c[key]);
    } catch {
      throw fail(`auth.oidc.${key}`, 'is not a URL');
    }
    // Keys fetched in clear text could be swapped on the way: https everywhere but loopback (tests).
    if (u.protocol !== 'https:' && !(u.protocol === 'http:' && isLoopbackUrl(u))) throw fail(`auth.oidc.${key}`, 'must be https');
  }
  c.mapping.forEach((m, i) => {
    if (m.role === 'collector' && !m.site) throw fail(`auth.oidc.mapping[${i}].site`, 'is required for the collector role');
  });
}

export class OidcVerifier {
  private jwks: RemoteJWKSet | undefined;
  private discovering: Promise<RemoteJWKSet> | undefined;
  private discoveryFailedAt = 0;
  private readonly cache = new Map<string, { p: OidcPrincipal; until: number }>();

  constructor(
    private readonly cfg: OidcConfig,
    private readonly now: () => number = Date.now,
  ) {}

  static looksLikeJwt(token: string): boolean {
    return JWT_SHAPE.test(token);
  }

  /** The principal of a valid token; 401 (UNAUTHORIZED, details.reason) or 403 (no mapping) otherwise. */
  async verify(token: string): Promise<OidcPrincipal> {
    const now = this.now();
    const hit = this.cache.get(token);
    if (hit && hit.until > now) return hit.p;
    const keys = await this.keySet();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        issuer: this.cfg.issuer,
        audience: this.cfg.audience,
        algorithms: [...this.cfg.algorithms],
        clockTolerance: this.cfg.clockToleranceS,
        currentDate: new Date(now),
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (err) {
      throw refusal(err);
    }
    const p = this.principal(payload);
    if (this.cache.size >= CACHE_MAX) this.cache.clear();
    this.cache.set(token, { p, until: Math.min(p.expiresAt ?? now + CACHE_MS, now + CACHE_MS) });
    return p;
  }

  /** The role and scope of a verified payload, by the first mapping entry it carries. */
  principal(payload: JWTPayload): OidcPrincipal {
    const carried = new Set<string>();
    for (const claim of this.cfg.claims) {
      const v = payload[claim];
      if (typeof v === 'string') carried.add(v);
      else if (Array.isArray(v)) for (const x of v) if (typeof x === 'string') carried.add(x);
    }
    const m = this.cfg.mapping.find((e) => carried.has(e.value));
    const subject = String(payload['oid'] ?? payload.sub);
    const nameClaim = payload[this.cfg.nameClaim];
    const name = typeof nameClaim === 'string' && nameClaim ? nameClaim : String(payload.sub);
    if (!m) {
      throw new EdgetwinError(
        ErrorCodes.FORBIDDEN,
        `signed in as ${name}, but none of its ${this.cfg.claims.join('/')} maps to a role here`,
        {
          details: { reason: 'no_role_mapping' satisfies SignInFailure, subject: name },
        },
      );
    }
    // The id must not collide with a static token id (t_…) and stays stable across sign-ins.
    const id = `oidc_${createHash('sha256').update(`${payload.iss}|${subject}`).digest('hex').slice(0, 12)}`;
    return { id, name: `oidc:${name}`, role: m.role as Role, site: m.site ?? null, expiresAt: payload.exp ? payload.exp * 1000 : null };
  }

  private async keySet(): Promise<RemoteJWKSet> {
    if (this.jwks) return this.jwks;
    if (this.cfg.jwksUri) return (this.jwks = this.remote(this.cfg.jwksUri));
    // One discovery at a time; after a failure, wait a little before asking the issuer again.
    if (!this.discovering) {
      if (this.now() - this.discoveryFailedAt < 5000)
        throw new EdgetwinError(ErrorCodes.IDENTITY_PROVIDER, 'the identity provider could not be reached; retry shortly', {
          details: { retryAfterS: 5 },
        });
      this.discovering = this.discover().then(
        (uri) => (this.jwks = this.remote(uri)),
        (err: unknown) => {
          this.discovering = undefined;
          this.discoveryFailedAt = this.now();
          throw new EdgetwinError(ErrorCodes.IDENTITY_PROVIDER, `OIDC discovery failed: ${errorMessage(err)}`, {
            cause: err,
            details: { retryAfterS: 5 },
          });
        },
      );
    }
    return this.discovering;
  }

  private async discover(): Promise<string> {
    const url = `${this.cfg.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
    const res = await request(url, { headersTimeout: this.cfg.jwksTimeoutMs, bodyTimeout: this.cfg.jwksTimeoutMs });
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new Error(`${url} answered ${res.statusCode}`);
    }
    const doc = (await res.body.json()) as { issuer?: unknown; jwks_uri?: unknown };
    // A discovery document for another issuer would make us trust its keys for ours.
    if (doc.issuer !== this.cfg.issuer) throw new Error(`discovery document names issuer ${String(doc.issuer)}, not ${this.cfg.issuer}`);
    if (typeof doc.jwks_uri !== 'string') throw new Error('discovery document has no jwks_uri');
    const u = new URL(doc.jwks_uri);
    if (u.protocol !== 'https:' && !(u.protocol === 'http:' && isLoopbackUrl(u))) throw new Error('jwks_uri is not https');
    return doc.jwks_uri;
  }

  private remote(uri: string): RemoteJWKSet {
    return createRemoteJWKSet(new URL(uri), {
      cacheMaxAge: this.cfg.jwksCacheMaxAgeMs,
      cooldownDuration: this.cfg.jwksCooldownMs,
      timeoutDuration: this.cfg.jwksTimeoutMs,
    });
  }
}

/** jose's error → 401 with a stable reason (or 503 when the keys cannot be fetched). */
function refusal(err: unknown): EdgetwinError {
  const reason = ((): SignInFailure | 'jwks_unavailable' => {
    if (err instanceof joseErrors.JWTExpired) return 'expired';
    if (err instanceof joseErrors.JWTClaimValidationFailed) {
      if (err.claim === 'iss') return 'wrong_issuer';
      if (err.claim === 'aud') return 'wrong_audience';
      if (err.claim === 'nbf' || err.claim === 'iat') return 'not_yet_valid';
      return 'malformed';
    }
    if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'bad_signature';
    if (err instanceof joseErrors.JOSEAlgNotAllowed || err instanceof joseErrors.JOSENotSupported) return 'alg_not_allowed';
    if (err instanceof joseErrors.JWKSNoMatchingKey || err instanceof joseErrors.JWKSMultipleMatchingKeys) return 'unknown_key';
    if (err instanceof joseErrors.JWKSTimeout || err instanceof joseErrors.JWKSInvalid) return 'jwks_unavailable';
    if (err instanceof joseErrors.JOSEError) return 'malformed';
    return 'jwks_unavailable'; // fetch errors (connection refused, HTTP status) are not the caller's fault
  })();
  if (reason === 'jwks_unavailable')
    return new EdgetwinError(ErrorCodes.IDENTITY_PROVIDER, `the issuer's signing keys could not be fetched: ${errorMessage(err)}`, {
      cause: err,
      details: { retryAfterS: 5 },
    });
  return new EdgetwinError(ErrorCodes.UNAUTHORIZED, `bearer token refused: ${reason.replace(/_/g, ' ')}`, {
    cause: err,
    details: { reason },
  });
}
