/**
 * Versioned migrations for both engines. Each migration runs once, in its own transaction, and is
 * recorded in `schema_migrations` (id, applied_at). On PostgreSQL every replica may start at the
 * same time: each migration transaction first takes an advisory lock and re-reads what is applied.
 * A database that has migrations this build does not know (a newer replica ran first, during a
 * rolling upgrade) is used as it is: migrations only add.
 */
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { migrationTx, type DdlTx, type Migration } from './migrate.js';
import { MIGRATIONS } from './migrations/index.js';
import type { Store } from './store.js';

/** Advisory lock key of the migration runner (PostgreSQL). */
const MIGRATION_LOCK = 7_140_001;

/** Applies every migration not yet applied; answers the ids applied now. */
export async function migrate(
  store: Store & { ddlTx<T>(fn: (tx: DdlTx) => Promise<T>): Promise<T> },
  log?: Logger,
  list: readonly Migration[] = MIGRATIONS,
): Promise<string[]> {
  const appliedNow: string[] = [];
  const ids = new Set<string>();
  for (const m of list) {
    if (ids.has(m.id)) throw new Error(`migration ${m.id} is listed twice`);
    ids.add(m.id);
  }
  // Nothing to apply is the common case (every start, every CLI tool beside a running daemon): find
  // that out with a read first, so a tool opening a rollback-journal file beside a busy daemon does
  // not wait for the write lock it would never use.
  const applied = await appliedIds(store);
  if (applied && list.every((m) => applied.has(m.id))) {
    warnUnknown(
      [...applied].filter((id) => !ids.has(id)),
      log,
    );
    return appliedNow;
  }
  for (;;) {
    const next = await applyNext(store, list, ids, log, applied);
    if (next === undefined) break;
    appliedNow.push(next);
    log?.info({ migration: next }, 'database migration applied');
  }
  return appliedNow;
}

/** PostgreSQL's insufficient_privilege. */
const NO_PRIVILEGE = '42501';

/** Applies the first migration not yet applied (undefined: none left). */
async function applyNext(
  store: Store & { ddlTx<T>(fn: (tx: DdlTx) => Promise<T>): Promise<T> },
  list: readonly Migration[],
  ids: Set<string>,
  log: Logger | undefined,
  applied: Set<string> | undefined,
): Promise<string | undefined> {
  try {
    return await store.ddlTx(async (tx) => {
      const { int } = tx.dialect;
      if (tx.dialect.kind === 'postgres') await tx.get('SELECT pg_advisory_xact_lock(?)', [MIGRATION_LOCK]);
      await tx.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (id TEXT PRIMARY KEY, applied_at ${int} NOT NULL);`);
      const done = new Set((await tx.all<{ id: string }>('SELECT id FROM schema_migrations')).map((r) => r.id));
      const m = list.find((x) => !done.has(x.id));
      if (!m) {
        warnUnknown(
          [...done].filter((id) => !ids.has(id)),
          log,
        );
        return undefined;
      }
      await m.up(migrationTx(tx));
      await tx.run('INSERT INTO schema_migrations (id, applied_at) VALUES (?, ?)', [m.id, Date.now()]);
      return m.id;
    });
  } catch (err) {
    if ((err as { code?: unknown }).code !== NO_PRIVILEGE) throw err;
    // A least-privilege role (cloud/store/pg-roles.ts) meets a schema older than this build: say what to run instead of a bare SQL error.
    const pending = list.filter((m) => !applied?.has(m.id)).map((m) => m.id);
    throw new EdgetwinError(
      ErrorCodes.STORE_SCHEMA,
      `the database schema is behind this build (pending: ${pending.join(', ')}) and this role may not change it: ` +
        "run 'edgetwin cloud setup-db' with the owner's credentials, then start the cloud again",
      { cause: err, details: { pending } },
    );
  }
}

/** The ids in schema_migrations, or undefined when the table is not there yet (a new database). */
async function appliedIds(store: Store): Promise<Set<string> | undefined> {
  try {
    return new Set((await store.all<{ id: string }>('SELECT id FROM schema_migrations')).map((r) => r.id));
  } catch {
    return undefined;
  }
}

function warnUnknown(unknown: string[], log: Logger | undefined): void {
  if (unknown.length > 0)
    log?.warn({ unknown }, 'the database has migrations this build does not know (a newer version ran): using it as it is');
}
