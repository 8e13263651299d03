/**
 * The cloud's SQLite file (`<stateDir>/twins.db`): twin state for fast point reads, the landing
 * (staging) table that makes an ingest durable before it is answered, the identity index, batch
 * quality, audit log and tokens. One file, so that one fsynced transaction covers an ingest's
 * landing, its dedup state and its twin updates together.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../common/log.js';
import { MetaStore, openDatabase, type JournalMode, type SqliteDb } from '../common/sqlite.js';

/** Twin columns beyond the spine's; older files get them added in place (ALTER TABLE ADD COLUMN). */
const TWIN_COLUMNS: [string, string][] = [
  ['device_type', 'TEXT'],
  ['tags', "TEXT NOT NULL DEFAULT '{}'"],
  ['version', 'INTEGER NOT NULL DEFAULT 1'],
  ['desired', "TEXT NOT NULL DEFAULT '{}'"],
  ['desired_version', 'INTEGER NOT NULL DEFAULT 0'],
  ['desired_cursor', 'INTEGER NOT NULL DEFAULT 0'],
  ['desired_at', 'INTEGER'],
  ['reported', "TEXT NOT NULL DEFAULT '{}'"],
  ['reported_version', 'INTEGER NOT NULL DEFAULT 0'],
  ['reported_at', 'INTEGER'],
  ['applied_version', 'INTEGER'],
  ['applied_at', 'INTEGER'],
  ['anomalous', 'INTEGER NOT NULL DEFAULT 0'],
  ['anomaly_score', 'REAL'],
  ['anomaly_metric', 'TEXT'],
  ['anomaly_ts', 'INTEGER'],
  ['model', 'TEXT'],
];
const METRIC_COLUMNS: [string, string][] = [
  ['alert', 'INTEGER NOT NULL DEFAULT 0'],
  ['model', 'TEXT'],
];
const BATCH_COLUMNS: [string, string][] = [
  ['readings', 'INTEGER NOT NULL DEFAULT 0'],
  ['passed', 'INTEGER NOT NULL DEFAULT 0'],
  ['quarantined', 'INTEGER NOT NULL DEFAULT 0'],
  ['rejected', 'INTEGER NOT NULL DEFAULT 0'],
  ['duplicates', 'INTEGER NOT NULL DEFAULT 0'],
  ['score', 'REAL'],
];

const SCHEMA = `
CREATE TABLE IF NOT EXISTS twins (
  device TEXT PRIMARY KEY, site TEXT NOT NULL, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,
  readings INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS twin_metrics (
  device TEXT NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL, unit TEXT NOT NULL, ts INTEGER NOT NULL,
  epoch INTEGER NOT NULL, seq INTEGER NOT NULL, score REAL,
  PRIMARY KEY (device, metric)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (batch_id TEXT PRIMARY KEY, site TEXT NOT NULL, received INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seq_ranges (
  device TEXT NOT NULL, epoch INTEGER NOT NULL, ranges TEXT NOT NULL, PRIMARY KEY (device, epoch)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS staging (
  id INTEGER PRIMARY KEY AUTOINCREMENT, site TEXT NOT NULL, batch_id TEXT NOT NULL, received INTEGER NOT NULL,
  encoding TEXT NOT NULL, body BLOB NOT NULL, bytes INTEGER NOT NULL, extra TEXT
);
CREATE TABLE IF NOT EXISTS audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, actor TEXT NOT NULL, actor_id TEXT NOT NULL,
  role TEXT NOT NULL, action TEXT NOT NULL, device TEXT, site TEXT, detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_device ON audit (device, id);
CREATE INDEX IF NOT EXISTS audit_site ON audit (site, id);
CREATE TABLE IF NOT EXISTS tokens (
  id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, name TEXT NOT NULL, role TEXT NOT NULL, site TEXT,
  created_at INTEGER NOT NULL, created_by TEXT NOT NULL, revoked_at INTEGER
);
`;

const INDEXES = `
CREATE INDEX IF NOT EXISTS twins_site ON twins (site, device);
CREATE INDEX IF NOT EXISTS twins_desired ON twins (site, desired_cursor);
CREATE INDEX IF NOT EXISTS batches_received ON batches (received);
CREATE INDEX IF NOT EXISTS batches_site ON batches (site, received);
`;

function ensureColumns(db: SqliteDb, table: string, columns: [string, string][]): void {
  const have = new Set((db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((c) => c.name));
  for (const [name, decl] of columns) if (!have.has(name)) db.exec(`ALTER TABLE ${table} ADD COLUMN ${name} ${decl}`);
}

export interface CloudDb {
  db: SqliteDb;
  meta: MetaStore;
  close(): void;
}

export interface CloudDbOptions {
  /** `db.journalMode`; unset (tools that open the file beside the daemon): keep the file's own mode. */
  journalMode?: JournalMode;
}

/**
 * The journal mode an existing file is in, from its header (bytes 18-19: 1 = rollback journal,
 * 2 = WAL), or undefined for a new file. A tool opening the cloud's file without its config must
 * not turn a file that the daemon keeps in `delete` mode on a network share back to WAL.
 */
export function fileJournalMode(path: string): JournalMode | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const header = Buffer.alloc(20);
    if (readSync(fd, header, 0, 20, 0) < 20) return undefined;
    return header[18] === 1 && header[19] === 1 ? 'delete' : 'wal';
  } finally {
    closeSync(fd);
  }
}

export function openCloudDb(stateDir: string, log?: Logger, opts: CloudDbOptions = {}): CloudDb {
  const path = join(stateDir, 'twins.db');
  const journalMode = opts.journalMode ?? fileJournalMode(path) ?? 'wal';
  const { db } = openDatabase({ path, synchronous: 'full', log, schema: SCHEMA, journalMode });
  ensureColumns(db, 'twins', TWIN_COLUMNS);
  ensureColumns(db, 'twin_metrics', METRIC_COLUMNS);
  ensureColumns(db, 'batches', BATCH_COLUMNS);
  db.exec(INDEXES);
  return { db, meta: new MetaStore(db), close: () => db.close() };
}
