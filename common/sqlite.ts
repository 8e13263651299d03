/**
 * Opening SQLite files that must survive kill -9 and power loss, and that must never turn a bad
 * file into a crash loop: an unreadable or corrupt database is moved aside and a fresh one made.
 */
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { EdgetwinError, ErrorCodes, JournalModeRefused, storeErrorCode } from './errors.js';
import type { Logger } from './log.js';

export type SqliteDb = Database.Database;

/**
 * `full`: every commit is fsynced — required wherever a commit is followed by an acknowledgement
 * to someone else (collector spool, cloud ingest). `normal`: in WAL mode a crash of the process
 * never loses a commit and the file never corrupts; a power cut may lose the last commits.
 */
export type SynchronousMode = 'full' | 'normal';

/**
 * `wal` (default): readers never block the writer. `delete`: a rollback journal, for files on a
 * network file system (Azure Files over SMB): WAL's index lives in shared memory (a mmapped -shm
 * file) that such file systems do not keep coherent, so WAL there can lose or corrupt commits.
 */
export type JournalMode = 'wal' | 'delete';

export interface OpenDbOptions {
  path: string;
  synchronous: SynchronousMode;
  log?: Logger | undefined;
  /** Statements run once on the fresh or existing file (CREATE TABLE IF NOT EXISTS …). */
  schema: string;
  /**
   * `incremental`: free pages can be handed back to the file system (`PRAGMA incremental_vacuum`),
   * which a store with a hard cap on its file size needs. An existing file in another mode is
   * converted once with VACUUM.
   */
  autoVacuum?: 'incremental';
  /**
   * SQLite page cache in KiB, set before the open-time quick_check: that check reads the whole file,
   * and pages it caches under better-sqlite3's 16 MiB default stay in the process's RSS afterwards
   * (lowering cache_size later does not give them back; measured in bench/agent.ts).
   */
  cacheKiB?: number;
  journalMode?: JournalMode;
}

export interface OpenedDb {
  db: SqliteDb;
  /** Where a corrupt file was moved to, when that happened during this open. */
  quarantinedTo?: string;
}

function tryOpen(opts: OpenDbOptions): SqliteDb {
  const db = new Database(opts.path);
  try {
    // First, so that switching the journal mode waits out another process's transaction.
    db.pragma('busy_timeout = 5000');
    if (opts.cacheKiB) db.pragma(`cache_size = -${opts.cacheKiB}`);
    const journal = opts.journalMode ?? 'wal';
    const got = db.pragma(`journal_mode = ${journal.toUpperCase()}`, { simple: true });
    // Leaving WAL needs the only connection to the file; another process still holding it is no
    // corruption, so this must not move the file aside (see openDatabase). A WAL request that the
    // file system refuses keeps running in rollback mode, as it always has.
    if (journal === 'delete' && got !== 'delete' && opts.path !== ':memory:') throw new JournalModeRefused(opts.path, journal, String(got));
    // A rollback journal with synchronous=NORMAL can corrupt the file on power loss (SQLite skips
    // the sync that orders journal before database writes), and on SMB an unsynced write may still
    // sit in the client's cache when the replica dies: every commit is synced in full.
    db.pragma(`synchronous = ${journal === 'delete' ? 'FULL' : opts.synchronous.toUpperCase()}`);
    const check = db.pragma('quick_check', { simple: true });
    if (check !== 'ok') throw new Error(`quick_check: ${String(check)}`);
    if (opts.autoVacuum === 'incremental' && db.pragma('auto_vacuum', { simple: true }) !== 2) {
      db.pragma('auto_vacuum = INCREMENTAL');
      // Once the file has a header (WAL mode writes one) the mode only changes through a rewrite.
      if (db.pragma('auto_vacuum', { simple: true }) !== 2) db.exec('VACUUM');
    }
    db.exec(opts.schema);
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/** Another process holding a lock is contention, not corruption: retried by the caller, never quarantined. */
function isContention(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return err instanceof JournalModeRefused || code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED';
}

export function openDatabase(opts: OpenDbOptions): OpenedDb {
  if (opts.path !== ':memory:') mkdirSync(dirname(opts.path), { recursive: true });
  try {
    return { db: tryOpen(opts) };
  } catch (err) {
    if (opts.path === ':memory:' || !existsSync(opts.path) || isContention(err)) throw err;
    // A full disk is no corruption: moving the file aside would hide every row it holds. Refused
    // with its own code (the daemon retries or stops); the file stays as it is.
    if (storeErrorCode(err) === ErrorCodes.DISK_FULL) {
      opts.log?.error({ code: ErrorCodes.DISK_FULL, path: opts.path, err }, 'database cannot be opened: the disk is full');
      throw new EdgetwinError(ErrorCodes.DISK_FULL, `${opts.path}: the disk is full`, { cause: err });
    }
    const quarantinedTo = `${opts.path}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    renameSync(opts.path, quarantinedTo);
    // A rollback journal belongs to its file: left behind, it would be "replayed" into the fresh one.
    for (const suffix of ['-wal', '-shm', '-journal']) {
      if (existsSync(opts.path + suffix)) renameSync(opts.path + suffix, quarantinedTo + suffix);
    }
    opts.log?.error(
      { code: 'EDGETWIN_ERR_STORE_CORRUPT', path: opts.path, quarantinedTo, err },
      'database unreadable or corrupt: moved aside, starting with a fresh one',
    );
    return { db: tryOpen(opts), quarantinedTo };
  }
}

/** A small key/value table for counters that must survive restarts (epoch, seq, cursors). */
export const META_SCHEMA = 'CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);';

export class MetaStore {
  private readonly getStmt;
  private readonly setStmt;
  constructor(db: SqliteDb) {
    db.exec(META_SCHEMA);
    this.getStmt = db.prepare<[string], { v: number }>('SELECT v FROM meta WHERE k = ?');
    this.setStmt = db.prepare('INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v');
  }
  get(k: string, fallback = 0): number {
    return this.getStmt.get(k)?.v ?? fallback;
  }
  set(k: string, v: number): void {
    this.setStmt.run(k, v);
  }
}
