/**
 * TokenStore: bearer tokens for the cloud API, stored hashed (SHA-256) in the cloud's store.
 * The plain token is shown once, at creation; a lost token is revoked and replaced, never recovered.
 */
import { createHash, randomBytes } from 'node:crypto';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import { withTx, type Store, type Tx } from '../store/store.js';
import { SITE_ID_PATTERN } from '../../common/wire/ingest-envelope.js';

export const ROLES = ['viewer', 'operator', 'admin', 'collector'] as const;
export type Role = (typeof ROLES)[number];

export interface Principal {
  /** Token id (never the token); `open` and `anonymous` for the tokenless modes. */
  id: string;
  name: string;
  role: Role;
  /** A site-scoped principal sees and changes only that site. */
  site: string | null;
  /** When the credential stops being valid (ms since epoch); null or absent: never. */
  expiresAt?: number | null;
}

export interface TokenInfo extends Principal {
  createdAt: string;
  createdBy: string;
  revokedAt: string | null;
}

interface TokenRow {
  expires_at: number | null;
  id: string;
  name: string;
  role: Role;
  site: string | null;
  created_at: number;
  created_by: string;
  revoked_at: number | null;
}

/** The wire's site id rule (no `.` or `..`: a site id names folders in the lake and the audit). */
const SITE_PATTERN = new RegExp(SITE_ID_PATTERN);
/** Wake-up channel: a token was created or revoked (authenticators drop their caches at once). */
export const TOKENS_CHANNEL = 'tokens';

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export class TokenStore {
  constructor(private readonly store: Store) {}

  /** Creates a token (in `parent` when given: the caller's transaction, with its audit entry). */
  async create(
    opts: { role: Role; site?: string | null; name?: string; createdBy: string; expiresAt?: number | null },
    parent?: Tx,
  ): Promise<{ token: string; info: TokenInfo }> {
    if (!ROLES.includes(opts.role)) throw new EdgetwinError(ErrorCodes.USAGE, `role must be one of ${ROLES.join(', ')}`);
    const site = opts.site ?? null;
    if (site !== null && !SITE_PATTERN.test(site)) throw new EdgetwinError(ErrorCodes.USAGE, `site "${site}" is not a valid site id`);
    if (opts.role === 'collector' && site === null)
      throw new EdgetwinError(ErrorCodes.USAGE, 'a collector token needs --site (it may ingest for that site only)');
    const token = `etk_${randomBytes(32).toString('base64url')}`;
    const id = `t_${randomBytes(5).toString('hex')}`;
    const name = opts.name ?? `${opts.role}${site ? `@${site}` : ''}`;
    const now = Date.now();
    const expiresAt = opts.expiresAt ?? null;
    if (expiresAt !== null && !(Number.isSafeInteger(expiresAt) && expiresAt > now))
      throw new EdgetwinError(ErrorCodes.USAGE, 'a token must expire in the future');
    await withTx(this.store, parent, (tx) => {
      tx.afterCommit(() => this.store.bus.notify(TOKENS_CHANNEL));
      return tx.run('INSERT INTO tokens (id, hash, name, role, site, created_at, created_by, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', [
        id,
        hashToken(token),
        name,
        opts.role,
        site,
        now,
        opts.createdBy,
        expiresAt,
      ]);
    });
    return {
      token,
      info: {
        id,
        name,
        role: opts.role,
        site,
        expiresAt,
        createdAt: new Date(now).toISOString(),
        createdBy: opts.createdBy,
        revokedAt: null,
      },
    };
  }

  /** The active principal of a presented token (not revoked, not expired), or undefined. */
  async lookup(token: string, now = Date.now()): Promise<Principal | undefined> {
    const row = await this.store.get<TokenRow>('SELECT * FROM tokens WHERE hash = ?', [hashToken(token)]);
    if (!row || row.revoked_at !== null || (row.expires_at !== null && row.expires_at <= now)) return undefined;
    return { id: row.id, name: row.name, role: row.role, site: row.site, expiresAt: row.expires_at };
  }

  async list(): Promise<TokenInfo[]> {
    return (await this.store.all<TokenRow>('SELECT * FROM tokens ORDER BY created_at, id')).map((r) => ({
      id: r.id,
      name: r.name,
      role: r.role,
      site: r.site,
      expiresAt: r.expires_at,
      createdAt: new Date(r.created_at).toISOString(),
      createdBy: r.created_by,
      revokedAt: r.revoked_at === null ? null : new Date(r.revoked_at).toISOString(),
    }));
  }

  /** True when the token existed and was active. */
  async revoke(id: string, parent?: Tx): Promise<boolean> {
    const r = await withTx(this.store, parent, (tx) => {
      tx.afterCommit(() => this.store.bus.notify(TOKENS_CHANNEL));
      return tx.run('UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', [Date.now(), id]);
    });
    return r.changes > 0;
  }

  /** `fn` runs when a token is created or revoked here or (PostgreSQL) on another replica; returns the unsubscribe. */
  onChange(fn: () => void): () => void {
    return this.store.bus.on(TOKENS_CHANNEL, fn);
  }

  async activeCount(): Promise<number> {
    return (await this.store.get<{ n: number }>('SELECT count(*) AS n FROM tokens WHERE revoked_at IS NULL'))!.n;
  }

  /** Tokens ever created, revoked ones included: revoking the last token must not re-open the API. */
  async everCreated(): Promise<number> {
    return (await this.store.get<{ n: number }>('SELECT count(*) AS n FROM tokens'))!.n;
  }
}
