/**
 * SQL on a throw-away in-memory DuckDB, for tests that read Parquet the cloud wrote. Apart from
 * helpers/cloud.ts (which re-exports it) so that a test that only reads files does not load, and
 * compile, the whole cloud.
 */
import { DuckDBInstance } from '@duckdb/node-api';

export async function duckSql(sql: string): Promise<Record<string, unknown>[]> {
  const inst = await DuckDBInstance.create(':memory:');
  const con = await inst.connect();
  try {
    const rows = (await con.runAndReadAll(sql)).getRowObjectsJS() as Record<string, unknown>[];
    return rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'bigint' ? Number(v) : v])));
  } finally {
    con.closeSync();
    inst.closeSync();
  }
}
