/**
 * `edgetwin cloud migrate --to postgres`: copies a single-node cloud's SQLite state (`twins.db`)
 * into PostgreSQL, so that the same cloud can run as several replicas (docs/deploy.md).
 *
 * The cloud must be stopped (the state lock is taken: a copy of a moving database is not a copy).
 * The target gets the migrations first, then every table the two have in common is copied in
 * primary-key order, in chunks; each chunk commits together with its progress row, so a copy that
 * is interrupted (kill, network) resumes where it stopped when run again. Rows are upserted: the
 * SQLite file is the truth. At the end the identity sequences are moved past the copied ids and
 * the row counts of every table are compared; any difference fails the command.
 */
import { join } from 'node:path';
import type { CloudConfig } from '../cloud/config.js';
import { PostgresStore } from '../cloud/store/postgres-store.js';
import { openToolPostgres } from '../cloud/store/open-store.js';
import { SqliteStore } from '../cloud/store/sqlite-store.js';
import type { Store } from '../cloud/store/store.js';
import { EdgetwinError, ErrorCodes } from '../common/errors.js';
import { StateLock } from '../common/state-lock.js';

export interface MigrateReport {
  tables: { table: string; source: number; target: number; copied: number }[];
  resumed: boolean;
  ok: boolean;
}

const PROGRESS = 'edgetwin_migrate_progress';
/** Tools' bookkeeping, not state. */
const SKIP = new Set(['schema_migrations', PROGRESS]);

interface Column {
  name: string;
  pk: number;
}

const quote = (id: string): string => `"${id.replace(/"/g, '""')}"`;

async function sqliteTables(src: SqliteStore): Promise<Map<string, Column[]>> {
  const names = await src.all<{ name: string }>(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
  );
  const out = new Map<string, Column[]>();
  for (const { name } of names) if (!SKIP.has(name)) out.set(name, await src.all<Column>(`PRAGMA table_info(${quote(name)})`));
  return out;
}

async function postgresColumns(dst: Store): Promise<Map<string, Set<string>>> {
  const rows = await dst.all<{ table_name: string; column_name: string }>(
    'SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()',
  );
  const out = new Map<string, Set<string>>();
  for (const r of rows) {
    const set = out.get(r.table_name) ?? new Set<string>();
    set.add(r.column_name);
    out.set(r.table_name, set);
  }
  return out;
}

export async function migrateToPostgres(
  cfg: CloudConfig,
  opts: { url?: string | undefined; chunk?: number; progress?: (table: string, copied: number) => void },
): Promise<MigrateReport> {
  const url = opts.url ?? cfg.store.url;
  if (!url) throw new EdgetwinError(ErrorCodes.USAGE, 'edgetwin cloud migrate --to postgres needs --url or store.url');
  const lock = StateLock.acquire(cfg.stateDir, 'cloud migrate');
  let src: SqliteStore | undefined;
  let dst: PostgresStore | undefined;
  try {
    src = await SqliteStore.open({ stateDir: cfg.stateDir, path: join(cfg.stateDir, 'twins.db') });
    dst = await openToolPostgres(cfg.store, url, 'edgetwin-migrate');
    const target = dst;
    await target.run(`CREATE TABLE IF NOT EXISTS ${PROGRESS} (tbl TEXT PRIMARY KEY, last_key TEXT NOT NULL, copied BIGINT NOT NULL)`);
    const progress = new Map(
      (await target.all<{ tbl: string; last_key: string; copied: number }>(`SELECT * FROM ${PROGRESS}`)).map((r) => [r.tbl, r]),
    );
    const resumed = progress.size > 0;
    if (!resumed && ((await target.get<{ n: number }>('SELECT count(*) AS n FROM twins'))?.n ?? 0) > 0)
      throw new EdgetwinError(
        ErrorCodes.CONFLICT,
        'the target database already has twins and no copy in progress: migrate into an empty database',
      );
    const pgCols = await postgresColumns(target);
    const report: MigrateReport = { tables: [], resumed, ok: true };
    for (const [table, cols] of await sqliteTables(src)) {
      const have = pgCols.get(table);
      if (!have)
        throw new EdgetwinError(ErrorCodes.CONFLICT, `table ${table} is in the SQLite file but not in PostgreSQL (an older build?)`);
      const names = cols.map((c) => c.name).filter((n) => have.has(n));
      const pk = cols
        .filter((c) => c.pk > 0)
        .sort((a, b) => a.pk - b.pk)
        .map((c) => c.name);
      if (pk.length === 0) throw new EdgetwinError(ErrorCodes.INTERNAL, `table ${table} has no primary key: cannot copy it resumably`);
      const copied = await copyTable(src, target, table, names, pk, progress.get(table), opts);
      const source = (await src.get<{ n: number }>(`SELECT count(*) AS n FROM ${quote(table)}`))!.n;
      const dstCount = (await target.get<{ n: number }>(`SELECT count(*) AS n FROM ${quote(table)}`))!.n;
      report.tables.push({ table, source, target: dstCount, copied });
      if (source !== dstCount) report.ok = false;
    }
    // Identity columns continue after the copied ids (new staging, audit, change ids must not collide).
    const identities = await target.all<{ table_name: string; column_name: string }>(
      "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema() AND is_identity = 'YES'",
    );
    for (const { table_name: t, column_name: c } of identities) {
      await target.get(
        `SELECT setval(pg_get_serial_sequence(?, ?), GREATEST((SELECT coalesce(max(${quote(c)}), 0) FROM ${quote(t)}), 1))`,
        [t, c],
      );
    }
    if (report.ok) await target.run(`DROP TABLE ${PROGRESS}`);
    return report;
  } finally {
    await dst?.close();
    await src?.close();
    lock.release();
  }
}

async function copyTable(
  src: SqliteStore,
  dst: Store,
  table: string,
  cols: string[],
  pk: string[],
  done: { last_key: string; copied: number } | undefined,
  opts: { chunk?: number; progress?: (table: string, copied: number) => void },
): Promise<number> {
  const chunk = opts.chunk ?? 2000;
  let last: unknown[] | undefined = done ? (JSON.parse(done.last_key) as unknown[]) : undefined;
  let copied = done?.copied ?? 0;
  const order = pk.map(quote).join(', ');
  const colList = cols.map(quote).join(', ');
  const rest = cols.filter((c) => !pk.includes(c));
  const conflict = rest.length > 0 ? `DO UPDATE SET ${rest.map((c) => `${quote(c)} = excluded.${quote(c)}`).join(', ')}` : 'DO NOTHING';
  for (;;) {
    const where = last ? `WHERE (${order}) > (${pk.map(() => '?').join(', ')})` : '';
    const rows = await src.all<Record<string, unknown>>(`SELECT ${colList} FROM ${quote(table)} ${where} ORDER BY ${order} LIMIT ?`, [
      ...((last ?? []) as never[]),
      chunk,
    ]);
    if (rows.length === 0) return copied;
    const key = pk.map((c) => rows[rows.length - 1]![c]);
    await dst.tx(async (tx) => {
      // Bounded by PostgreSQL's 65,535 parameters per statement.
      const per = Math.max(1, Math.floor(60_000 / cols.length));
      for (let i = 0; i < rows.length; i += per) {
        const part = rows.slice(i, i + per);
        const values = part.map(() => `(${cols.map(() => '?').join(', ')})`).join(', ');
        const args = part.flatMap((r) => cols.map((c) => r[c] as never));
        await tx.run(`INSERT INTO ${quote(table)} (${colList}) VALUES ${values} ON CONFLICT (${order}) ${conflict}`, args);
      }
      await tx.run(
        `INSERT INTO ${PROGRESS} (tbl, last_key, copied) VALUES (?, ?, ?) ON CONFLICT (tbl) DO UPDATE SET last_key = excluded.last_key, copied = excluded.copied`,
        [table, JSON.stringify(key), copied + rows.length],
      );
    });
    copied += rows.length;
    last = key;
    opts.progress?.(table, copied);
  }
}
