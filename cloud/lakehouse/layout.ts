/**
 * The lakehouse on disk: one folder per table, Hive-style partitions `site=<site>/date=<YYYY-MM-DD>`,
 * Parquet files named after the staging-id range they hold: `part-<lo>-<hi>-<gen>.parquet`.
 *
 * The range in the name is what makes every step idempotent without a catalog: the writer names a
 * micro-batch's files after its staging ids, so files beyond the committed lake cursor are leftovers
 * of a flush that did not finish (deleted at start); compaction merges a contiguous run of files
 * into one whose range covers theirs, so a file whose range another covers (and that is newer) is
 * a leftover of a compaction that did not finish. Readers skip such files, cleanup deletes them.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const TABLES = {
  bronze: 'bronze/batches',
  silver: 'silver/readings',
  quarantine: 'silver/quarantine',
  rollup1m: 'gold/rollup_1m',
  rollup1h: 'gold/rollup_1h',
  anomalies: 'gold/anomalies',
} as const;
export type TableName = keyof typeof TABLES;
export const TABLE_NAMES = Object.keys(TABLES) as TableName[];
export type Layer = 'bronze' | 'silver' | 'gold';

export function layerOf(t: TableName): Layer {
  return TABLES[t].split('/')[0] as Layer;
}

export interface DataFile {
  table: TableName;
  site: string;
  date: string;
  path: string;
  lo: number;
  hi: number;
  /** 0 for files the writer made; the compaction time for merged files (newer wins). */
  gen: number;
  bytes: number;
}

const FILE = /^part-(\d+)-(\d+)-(c?)([0-9a-z]+)\.parquet$/;

export function writerFileName(lo: number, hi: number, index: string | number): string {
  return `part-${lo}-${hi}-${index}.parquet`;
}

export function mergedFileName(lo: number, hi: number, gen: number): string {
  return `part-${lo}-${hi}-c${gen.toString(36)}.parquet`;
}

export function parseFileName(name: string): { lo: number; hi: number; gen: number } | undefined {
  const m = FILE.exec(name);
  if (!m) return undefined;
  return { lo: Number(m[1]), hi: Number(m[2]), gen: m[3] ? parseInt(m[4]!, 36) : 0 };
}

const dirsOf = (dir: string, prefix: string): string[] => {
  try {
    return readdirSync(dir).filter((d) => d.startsWith(prefix));
  } catch {
    return [];
  }
};

export interface FileFilter {
  site?: string | undefined;
  /** Inclusive date range (YYYY-MM-DD). */
  fromDate?: string | undefined;
  toDate?: string | undefined;
}

/** Every data file of a table (matching the filter), live or not. */
export function listFiles(root: string, table: TableName, f: FileFilter = {}): DataFile[] {
  const base = join(root, TABLES[table]);
  const out: DataFile[] = [];
  for (const sd of f.site === undefined ? dirsOf(base, 'site=') : [`site=${f.site}`]) {
    const site = sd.slice(5);
    for (const dd of dirsOf(join(base, sd), 'date=')) {
      const date = dd.slice(5);
      if ((f.fromDate && date < f.fromDate) || (f.toDate && date > f.toDate)) continue;
      const dir = join(base, sd, dd);
      for (const name of dirsOf(dir, 'part-')) {
        const p = parseFileName(name);
        if (!p) continue;
        const path = join(dir, name);
        let bytes = 0;
        try {
          bytes = statSync(path).size;
        } catch {
          continue; // removed by a concurrent compaction
        }
        out.push({ table, site, date, path, ...p, bytes });
      }
    }
  }
  return out;
}

function supersedes(b: DataFile, a: DataFile): boolean {
  if (b === a || b.lo > a.lo || b.hi < a.hi) return false;
  return b.lo !== a.lo || b.hi !== a.hi || b.gen > a.gen;
}

/** Splits files into live ones and leftovers that a covering, newer file replaces (per partition). */
export function liveAndSuperseded(files: DataFile[]): { live: DataFile[]; superseded: DataFile[] } {
  const byPartition = new Map<string, DataFile[]>();
  for (const f of files) {
    const k = `${f.site}\u0000${f.date}`;
    const list = byPartition.get(k);
    if (list) list.push(f);
    else byPartition.set(k, [f]);
  }
  const live: DataFile[] = [];
  const superseded: DataFile[] = [];
  for (const list of byPartition.values()) {
    // Merged files are few; checking each file against them only keeps this linear in practice.
    const merged = list.filter((f) => f.gen > 0);
    for (const f of list) (merged.some((m) => supersedes(m, f)) ? superseded : live).push(f);
  }
  return { live, superseded };
}

export function liveFiles(root: string, table: TableName, f: FileFilter = {}): DataFile[] {
  return liveAndSuperseded(listFiles(root, table, f)).live;
}

/** A SQL string literal (DuckDB): paths and values that cannot be bound as parameters. */
export function sqlString(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

export function sqlFileList(files: readonly DataFile[]): string {
  return `[${files.map((f) => sqlString(f.path)).join(', ')}]`;
}

/**
 * Serialises lakehouse maintenance (compaction, retention) across processes: the daemon's schedule
 * and `edgetwin cloud compact|retention` may run at once. A lock whose owner is gone is taken over.
 */
export function withMaintenanceLock<T>(root: string, fn: () => Promise<T>): Promise<T | undefined> {
  mkdirSync(root, { recursive: true });
  const lock = join(root, '_maintenance.lock');
  const take = (): boolean => {
    try {
      writeFileSync(lock, String(process.pid), { flag: 'wx' });
      return true;
    } catch {
      return false;
    }
  };
  if (!take()) {
    const pid = Number(readFileSync(lock, 'utf8').trim());
    let alive = Number.isInteger(pid) && pid > 0;
    if (alive) {
      try {
        process.kill(pid, 0);
      } catch {
        alive = false;
      }
    }
    if (alive) return Promise.resolve(undefined);
    unlinkSync(lock);
    if (!take()) return Promise.resolve(undefined);
  }
  return fn().finally(() => {
    if (existsSync(lock)) unlinkSync(lock);
  });
}

export function partitionDir(root: string, table: TableName, site: string, date: string): string {
  return join(root, TABLES[table], `site=${site}`, `date=${date}`);
}

/** Every Parquet file under `dir`, at any depth (a flush's scratch folder). */
export function* walkParquet(dir: string): Generator<string> {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return;
  }
  for (const e of entries) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) yield* walkParquet(p);
    else if (e.endsWith('.parquet')) yield p;
  }
}
