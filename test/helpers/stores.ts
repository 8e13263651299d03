/**
 * Runs a store test against both backends (board decision D2: one contract suite, both engines).
 * SQLite: a fresh file in a temp dir. PostgreSQL: a fresh database on one real server per test
 * process (test/helpers/postgres.ts), started on first use and stopped at the end.
 *
 *   eachStore(t, 'desired patches are decided by the database', async (t, f) => {
 *     const a = await f.open();          // a store (applies migrations)
 *     const b = await f.replica();       // another replica on the same database (SQLite: the same store)
 *   });
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { PostgresStore } from '../../cloud/store/postgres-store.js';
import { SqliteStore } from '../../cloud/store/sqlite-store.js';
import type { Store, StoreKind } from '../../cloud/store/store.js';
import { startPostgres, type PgServer } from './postgres.js';

export interface StoreFixture {
  kind: StoreKind;
  /** The test's store (one per test; closed at its end). */
  open(): Promise<Store>;
  /** Another replica's store on the same database; with SQLite, the same store (one process owns the file). */
  replica(): Promise<Store>;
  /** The PostgreSQL server (undefined for SQLite): stop/start it for outage tests. */
  pg: PgServer | undefined;
  /** The database URL (PostgreSQL) or state dir (SQLite). */
  where: string;
}

let server: Promise<PgServer> | undefined;
/** The test process's PostgreSQL server, started once. */
export function sharedPostgres(): Promise<PgServer> {
  server ??= startPostgres().then((s) => {
    process.once('beforeExit', () => s.destroy());
    return s;
  });
  return server;
}

export const PG_TEST_OPTIONS = { poolMax: 8, connectTimeoutMs: 2000, statementTimeoutMs: 4000, notifyBatchMs: 2 };

export function eachStore(t: Test, name: string, fn: (t: Test, f: StoreFixture) => Promise<void>): void {
  for (const kind of ['sqlite', 'postgres'] as const) {
    t.test(`${name} [${kind}]`, async (t) => {
      const opened: Store[] = [];
      t.teardown(async () => {
        for (const s of opened.reverse()) await s.close().catch(() => undefined);
      });
      if (kind === 'sqlite') {
        const dir = mkdtempSync(join(tmpdir(), 'edgetwin-store-'));
        t.teardown(() => rmSync(dir, { recursive: true, force: true }));
        let first: SqliteStore | undefined;
        const open = async (): Promise<Store> => {
          const s = await SqliteStore.open({ stateDir: dir });
          opened.push(s);
          first ??= s;
          return s;
        };
        await fn(t, { kind, open, replica: async () => first ?? open(), pg: undefined, where: dir });
      } else {
        const pg = await sharedPostgres();
        const url = await pg.createDatabase();
        const open = async (): Promise<Store> => {
          const s = await PostgresStore.open({ url, ...PG_TEST_OPTIONS });
          opened.push(s);
          return s;
        };
        await fn(t, { kind, open, replica: open, pg, where: url });
      }
    });
  }
}
