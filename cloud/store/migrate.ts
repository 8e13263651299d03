/**
 * What a migration is (cloud/store/migrations/NNNN-what.ts implement it); the runner that applies
 * them is migrator.ts.
 */
import type { Tx } from './store.js';

/** A transaction that may also run DDL. */
export interface MigrationTx extends Tx {
  /** Runs several `;`-terminated statements (no parameters). */
  exec(sql: string): Promise<void>;
  /** SQLite: `ALTER TABLE … ADD COLUMN` for each column the table lacks (older files). */
  addMissingColumns(table: string, columns: [string, string][]): Promise<void>;
}

export interface Migration {
  /** `NNNN-what`, unique; applied in list order. */
  id: string;
  up(tx: MigrationTx): Promise<void>;
}

/** What a store implementation hands the runner: its transaction, with DDL allowed. */
export type DdlTx = Tx & { exec(sql: string): Promise<void> };

export function splitStatements(sql: string): string[] {
  return sql
    .split(/;\s*(?:\n|$)/)
    .map((s) => s.trim())
    .filter(Boolean);
}

export function migrationTx(tx: DdlTx): MigrationTx {
  return Object.assign(Object.create(tx) as DdlTx, {
    exec: (sql: string) => tx.exec(sql),
    async addMissingColumns(table: string, columns: [string, string][]): Promise<void> {
      const have = new Set((await tx.all<{ name: string }>(`PRAGMA table_info(${table})`)).map((c) => c.name));
      for (const [name, decl] of columns) if (!have.has(name)) await tx.run(`ALTER TABLE ${table} ADD COLUMN ${name} ${decl}`);
    },
  });
}
