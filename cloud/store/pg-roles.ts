/**
 * Least privilege on PostgreSQL: the running cloud logs in as an application role that may read and
 * write rows, and nothing else. Schema changes (the migrations) and role management run once per
 * upgrade as the database owner (`edgetwin cloud setup-db`, a one-off job in Terraform), so a
 * replica that is taken over cannot drop or alter tables, create functions, rewrite the audit trail
 * or grant itself more.
 *
 * What the application role gets, per table of the schema (re-granted from nothing on every run, so
 * privileges granted by hand are narrowed again):
 * - SELECT, INSERT, UPDATE, DELETE on every table of the cloud;
 * - `audit`: SELECT and INSERT only — the audit trail is append-only for the service;
 * - `schema_migrations`: SELECT only (a replica checks that the schema is current, see migrator.ts);
 * - tools' bookkeeping tables (`edgetwin_migrate_progress`): nothing;
 * - USAGE and SELECT on the schema's sequences (identity columns); CONNECT and schema USAGE.
 * No TRUNCATE, REFERENCES, TRIGGER, CREATE or ownership. Advisory locks, LISTEN and NOTIFY need no grant.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import type { Store } from './store.js';
import type { PostgresStore } from './postgres-store.js';

/** PostgreSQL identifiers we create: lower case, so they never need quoting in a URL or a GRANT. */
export const ROLE_NAME_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;

const DML = 'SELECT, INSERT, UPDATE, DELETE';
/** Per-table exceptions to DML; `''` grants nothing. */
const TABLE_PRIVILEGES: Record<string, string> = {
  audit: 'SELECT, INSERT',
  schema_migrations: 'SELECT',
  edgetwin_migrate_progress: '',
};

export function appRolePrivileges(table: string): string {
  return TABLE_PRIVILEGES[table] ?? DML;
}

const SCRAM_ITERATIONS = 4096;

/**
 * The SCRAM-SHA-256 verifier PostgreSQL stores for a password (RFC 5802/7677, as psql's
 * \password computes it): only this reaches the server, so the clear password never appears in a
 * statement the server might log (log_statement = ddl).
 */
export function scramVerifier(password: string, salt: Buffer = randomBytes(16)): string {
  const salted = pbkdf2Sync(password.normalize('NFKC'), salt, SCRAM_ITERATIONS, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${SCRAM_ITERATIONS}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

export interface AppRoleReport {
  role: string;
  created: boolean;
  passwordSet: boolean;
  tables: { table: string; privileges: string }[];
}

/**
 * Creates the application role when it does not exist (a password is then required), sets its
 * password when one is given, and grants it exactly the privileges above on the schema the store
 * connects to. Runs as the owner of the tables, after the migrations.
 */
export async function grantAppRole(
  store: Store & Partial<Pick<PostgresStore, 'ddlTx'>>,
  role: string,
  password: string | undefined,
): Promise<AppRoleReport> {
  if (store.kind !== 'postgres' || !store.ddlTx)
    throw new EdgetwinError(ErrorCodes.USAGE, 'an application role exists only with store.kind postgres');
  if (!ROLE_NAME_PATTERN.test(role))
    throw new EdgetwinError(ErrorCodes.USAGE, `the application role must match ${ROLE_NAME_PATTERN.source}, got ${JSON.stringify(role)}`);
  const me = await store.get<{ me: string; db: string; schema: string }>(
    'SELECT current_user AS me, current_database() AS db, current_schema() AS schema',
  );
  if (!me) throw new EdgetwinError(ErrorCodes.INTERNAL, 'PostgreSQL did not say who is connected');
  if (role === me.me)
    throw new EdgetwinError(
      ErrorCodes.USAGE,
      `the application role must not be the owner that runs setup-db (${me.me}): it would keep every privilege`,
    );
  return store.ddlTx(async (tx) => {
    const existing = await tx.get<{ super: boolean; owns: boolean; member: boolean }>(
      `SELECT r.rolsuper AS super,
              EXISTS (SELECT 1 FROM pg_tables t WHERE t.schemaname = ? AND t.tableowner = r.rolname) AS owns,
              pg_has_role(r.rolname, ?, 'MEMBER') AS member
         FROM pg_roles r WHERE r.rolname = ?`,
      [me.schema, me.me, role],
    );
    // Each of these bypasses grants entirely; refusing is the only honest answer.
    if (existing?.super) throw new EdgetwinError(ErrorCodes.USAGE, `role ${role} is a superuser: grants cannot limit it`);
    if (existing?.owns)
      throw new EdgetwinError(ErrorCodes.USAGE, `role ${role} owns tables in schema ${me.schema}: an owner bypasses grants`);
    if (existing?.member)
      throw new EdgetwinError(ErrorCodes.USAGE, `role ${role} is a member of ${me.me} (the owner): it would inherit every privilege`);
    // The server quotes the identifiers (the role name already matched ROLE_NAME_PATTERN).
    const { quoted, schema, db } = (await tx.get<{ quoted: string; schema: string; db: string }>(
      'SELECT quote_ident(?) AS quoted, quote_ident(?) AS schema, quote_ident(?) AS db',
      [role, me.schema, me.db],
    ))!;
    const created = !existing;
    if (created) {
      if (password === undefined)
        throw new EdgetwinError(ErrorCodes.USAGE, `role ${role} does not exist: give its password (--app-password-file) to create it`);
      await tx.exec(`CREATE ROLE ${quoted} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD '${scramVerifier(password)}'`);
    } else if (password !== undefined) {
      await tx.exec(`ALTER ROLE ${quoted} PASSWORD '${scramVerifier(password)}'`);
    }
    await tx.exec(`GRANT CONNECT ON DATABASE ${db} TO ${quoted}`);
    await tx.exec(`GRANT USAGE ON SCHEMA ${schema} TO ${quoted}`);
    await tx.exec(`REVOKE ALL ON ALL TABLES IN SCHEMA ${schema} FROM ${quoted}`);
    await tx.exec(`REVOKE ALL ON ALL SEQUENCES IN SCHEMA ${schema} FROM ${quoted}`);
    await tx.exec(`GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA ${schema} TO ${quoted}`);
    const tables = await tx.all<{ t: string; q: string }>(
      'SELECT tablename AS t, quote_ident(tablename) AS q FROM pg_tables WHERE schemaname = ? ORDER BY tablename',
      [me.schema],
    );
    const report: AppRoleReport['tables'] = [];
    for (const { t, q } of tables) {
      const privileges = appRolePrivileges(t);
      if (privileges) await tx.exec(`GRANT ${privileges} ON ${schema}.${q} TO ${quoted}`);
      report.push({ table: t, privileges });
    }
    return { role, created, passwordSet: password !== undefined, tables: report };
  });
}
