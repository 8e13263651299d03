/**
 * TokenStore: bearer tokens for the cloud API, stored hashed (SHA-256) in the cloud's SQLite file.
 * The plain token is shown once, at creation; a lost token is revoked and replaced, never recovered.
 */
import { createHash, randomBytes } from 'node:crypto';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import type { SqliteDb } from '../../common/sqlite.js';

export const ROLES = ['viewer', 'operator', 'admin', 'collector'] as const;
export type Role = (typeof ROLES)[number];

export interface Principal {
  /** Token id (never the token); `open` and `anonymous` for the tokenless modes. */
  id: string;
  name: string;
  role: Role;
  /** A site-scoped principal sees and changes only that site. */
  site: string | null;
}

export interface TokenInfo extends Principal {
  createdAt: string;
  createdBy: string;
  revokedAt: string | null;
}

interface TokenRow {
  id: string;
  name: string;
  role: Role;
  site: string | null;
  created_at: number;
  created_by: string;
  revoked_at: number | null;
}

const SITE_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export class TokenStore {
  private readonly byHash;
  private readonly anyActive;
  private readonly anyEver;

  constructor(private readonly db: SqliteDb) {
    this.byHash = db.prepare<[string], TokenRow>('SELECT * FROM tokens WHERE hash = ?');
    this.anyActive = db.prepare<[], { n: number }>('SELECT count(*) AS n FROM tokens WHERE revoked_at IS NULL');
    this.anyEver = db.prepare<[], { n: number }>('SELECT count(*) AS n FROM tokens');
  }

  create(opts: { role: Role; site?: string | null; name?: string; createdBy: string }): { token: string; info: TokenInfo } {
    if (!ROLES.includes(opts.role)) throw new EdgetwinError(ErrorCodes.USAGE, `role must be one of ${ROLES.join(', ')}`);
    const site = opts.site ?? null;
    if (site !== null && !SITE_PATTERN.test(site)) throw new EdgetwinError(ErrorCodes.USAGE, `site "${site}" is not a valid site id`);
    if (opts.role === 'collector' && site === null) throw new EdgetwinError(ErrorCodes.USAGE, 'a collector token needs --site (it may ingest for that site only)');
    const token = `etk_${randomBytes(32).toString('base64url')}`;
    const id = `t_${randomBytes(5).toString('hex')}`;
    const name = opts.name ?? `${opts.role}${site ? `@${site}` : ''}`;
    const now = Date.now();
    this.db
      .prepare('INSERT INTO tokens (id, hash, name, role, site, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(id, hashToken(token), name, opts.role, site, now, opts.createdBy);
    return { token, info: { id, name, role: opts.role, site, createdAt: new Date(now).toISOString(), createdBy: opts.createdBy, revokedAt: null } };
  }

  /** The active principal of a presented token, or undefined. */
  lookup(token: string): Principal | undefined {
    const row = this.byHash.get(hashToken(token));
    if (!row || row.revoked_at !== null) return undefined;
    return { id: row.id, name: row.name, role: row.role, site: row.site };
  }

  list(): TokenInfo[] {
    return (this.db.prepare('SELECT * FROM tokens ORDER BY created_at, id').all() as TokenRow[]).map((r) => ({
      id: r.id,
      name: r.name,
      role: r.role,
      site: r.site,
      createdAt: new Date(r.created_at).toISOString(),
      createdBy: r.created_by,
      revokedAt: r.revoked_at === null ? null : new Date(r.revoked_at).toISOString(),
    }));
  }

  /** True when the token existed and was active. */
  revoke(id: string): boolean {
    return this.db.prepare('UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(Date.now(), id).changes > 0;
  }

  activeCount(): number {
    return this.anyActive.get()!.n;
  }

  /** Tokens ever created, revoked ones included: revoking the last token must not re-open the API. */
  everCreated(): number {
    return this.anyEver.get()!.n;
  }
}
