/**
 * One daemon per state directory. Two copies of a daemon on the same state would each believe
 * they own its databases: readings stored twice, cursors moved under each other's feet, status
 * files overwritten. So every daemon (agent, collector, cloud, demo) takes this lock before it
 * opens anything, and `edgetwin restore` refuses while it is held.
 *
 * The lock is a kernel lock, not a pid file: an SQLite file (`edgetwin.lock`) held in exclusive
 * locking mode, i.e. a POSIX record lock on it. The kernel drops it when its process ends, however
 * it ends, so a kill -9 or a power cut never leaves a stale lock to clean up by hand, and a
 * recycled pid can never be mistaken for the holder. Who holds it (pid, since when, which command)
 * is written beside it in `edgetwin.lock.json`, only for the refusal message.
 */
import { hostname } from 'node:os';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { EdgetwinError, ErrorCodes } from './errors.js';

export const LOCK_FILE = 'edgetwin.lock';
export const LOCK_INFO_FILE = 'edgetwin.lock.json';

export interface LockHolder {
  pid: number;
  host: string;
  /** ISO time the lock was taken. */
  since: string;
  /** What holds it: `cloud`, `collector demo-site`, `agent pump-7`, `demo`, `restore`. */
  what: string;
}

function readHolder(dir: string): LockHolder | undefined {
  try {
    const h = JSON.parse(readFileSync(join(dir, LOCK_INFO_FILE), 'utf8')) as Partial<LockHolder>;
    if (typeof h.pid === 'number' && typeof h.since === 'string') return h as LockHolder;
  } catch {
    // missing (the holder is between its lock and its note) or half-written
  }
  return undefined;
}

export function describeHolder(h: LockHolder | undefined): string {
  if (!h) return 'another process (holder not recorded yet)';
  return `${h.what || 'a process'} (pid ${h.pid}${h.host && h.host !== hostname() ? ` on ${h.host}` : ''}, since ${h.since})`;
}

function isBusy(err: unknown): boolean {
  const code = (err as { code?: string }).code ?? '';
  return code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED');
}

/** Opens the lock file and takes its exclusive lock; undefined when another connection holds it. */
function tryLock(file: string): Database.Database | undefined {
  let db: Database.Database;
  try {
    db = new Database(file);
  } catch (err) {
    // Not a database (someone wrote over it): no edgetwin process can hold a lock on such a file.
    if ((err as { code?: string }).code !== 'SQLITE_NOTADB') throw err;
    renameSync(file, `${file}.corrupt-${Date.now()}`);
    db = new Database(file);
  }
  try {
    db.pragma('busy_timeout = 0');
    db.pragma('locking_mode = EXCLUSIVE');
    // The first write in exclusive locking mode takes the EXCLUSIVE lock and keeps it until close.
    db.exec('BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS lock (x INTEGER); COMMIT;');
    return db;
  } catch (err) {
    db.close();
    if (isBusy(err)) return undefined;
    if ((err as { code?: string }).code === 'SQLITE_NOTADB') {
      renameSync(file, `${file}.corrupt-${Date.now()}`);
      return tryLock(file);
    }
    throw err;
  }
}

export class StateLock {
  private released = false;

  private constructor(
    private dir: string,
    private readonly db: Database.Database,
    readonly holder: LockHolder,
    /** The note left by a holder that did not release the lock (killed, crashed), if any. */
    readonly previous: LockHolder | undefined,
  ) {}

  /**
   * Takes the lock on `dir` (created if missing) or throws EDGETWIN_ERR_STATE_LOCKED naming the
   * holder. `what` names this holder in the refusal another copy will see.
   */
  static acquire(dir: string, what: string): StateLock {
    mkdirSync(dir, { recursive: true });
    const db = tryLock(join(dir, LOCK_FILE));
    if (!db) {
      const h = readHolder(dir);
      throw new EdgetwinError(
        ErrorCodes.STATE_LOCKED,
        `state directory ${dir} is in use by ${describeHolder(h)}; stop it first, or give this one another stateDir`,
        { details: { dir, ...(h ? { holder: h } : {}) } },
      );
    }
    const previous = readHolder(dir);
    const holder: LockHolder = { pid: process.pid, host: hostname(), since: new Date().toISOString(), what };
    try {
      const tmp = join(dir, `${LOCK_INFO_FILE}.tmp`);
      writeFileSync(tmp, `${JSON.stringify(holder)}\n`);
      renameSync(tmp, join(dir, LOCK_INFO_FILE));
    } catch (err) {
      db.close();
      throw err;
    }
    return new StateLock(dir, db, holder, previous);
  }

  /** The directory was renamed while locked (restore swaps directories): the note is now there. */
  movedTo(dir: string): void {
    this.dir = dir;
  }

  /** Drops the note, then the lock. Idempotent. The lock file itself stays: deleting it would race a waiter. */
  release(): void {
    if (this.released) return;
    this.released = true;
    rmSync(join(this.dir, LOCK_INFO_FILE), { force: true });
    this.db.close();
  }
}
