/**
 * Sign-in failures go to the audit trail (and so to the hash-chained export): a refused token, a
 * missing one where one is needed, an OIDC identity with no role here. An attacker must not be able
 * to flood the audit table by hammering the API: at most `perMinute` entries per client address a
 * minute; the rest are counted and the next entry says how many were left out. Never the token
 * itself — its kind (jwt / static), the reason, the address, the route.
 */
import { ErrorCodes, errorCodeOf, isEdgetwinError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { counter, type Registry } from '../../common/metrics.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Store } from '../store/store.js';
import type { Principal } from './tokens.js';

const WINDOW_MS = 60_000;
const MAX_ADDRESSES = 10_000;

export type TokenKind = 'jwt' | 'static' | 'none';

export function tokenKind(authorization: string | undefined, queryToken: string | undefined): TokenKind {
  const t = authorization?.startsWith('Bearer ') ? authorization.slice(7).trim() : queryToken;
  if (!t) return 'none';
  return /^eyJ[\w-]*\.[\w-]*\.[\w-]*$/.test(t) ? 'jwt' : 'static';
}

export class SignInAudit {
  private readonly windows = new Map<string, { start: number; n: number; suppressed: number }>();
  private readonly mFailures;

  constructor(
    private readonly o: { audit: AuditLog; store: Store; log: Logger; registry: Registry; perMinute?: number; now?: () => number },
  ) {
    this.mFailures = counter(o.registry, 'edgetwin_cloud_auth_failures_total', 'Requests refused at sign-in, by reason', ['reason']);
  }

  /** True for the errors that are sign-in failures (not "your role may not do that"). */
  static isSignInFailure(err: unknown): boolean {
    if (!isEdgetwinError(err)) return false;
    return err.code === ErrorCodes.UNAUTHORIZED || (err.code === ErrorCodes.FORBIDDEN && err.details?.['reason'] === 'no_role_mapping');
  }

  /** Records one failure (fire and forget: auditing never delays or fails the 401 itself). */
  failed(err: unknown, ip: string, route: string, kind: TokenKind): void {
    if (!SignInAudit.isSignInFailure(err)) return;
    const reason = String((isEdgetwinError(err) && err.details?.['reason']) || (kind === 'none' ? 'missing_token' : 'unknown_token'));
    this.mFailures.inc({ reason });
    const now = (this.o.now ?? Date.now)();
    let w = this.windows.get(ip);
    if (!w || now - w.start >= WINDOW_MS) {
      if (this.windows.size >= MAX_ADDRESSES) this.windows.clear();
      w = { start: now, n: 0, suppressed: w?.suppressed ?? 0 };
      this.windows.set(ip, w);
    }
    if (w.n >= (this.o.perMinute ?? 10)) {
      w.suppressed++;
      return;
    }
    w.n++;
    const suppressed = w.suppressed;
    w.suppressed = 0;
    const who: Principal = { id: 'anonymous', name: `unauthenticated@${ip}`, role: 'viewer', site: null };
    const subject = isEdgetwinError(err) ? err.details?.['subject'] : undefined;
    const detail = {
      reason,
      code: errorCodeOf(err),
      ip,
      route,
      tokenKind: kind,
      ...(subject ? { subject } : {}),
      ...(suppressed ? { suppressedBefore: suppressed } : {}),
    };
    this.o.audit
      .record(this.o.store, who, 'auth.failed', {}, detail, now)
      .catch((e: unknown) => this.o.log.warn({ err: e }, 'sign-in failure not audited'));
  }
}
