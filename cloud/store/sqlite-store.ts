/**
 * The embedded store: one SQLite file (`<stateDir>/twins.db`, better-sqlite3, synchronous=FULL so
 * that a commit is on disk before the request that made it is answered). One connection, one
 * writer: a transaction holds the connection until it ends, and every other call waits for it
 * (better-sqlite3 is synchronous; only the awaits inside a transaction let others in).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { closeSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import type { Statement } from 'better-sqlite3';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { openDatabase, type JournalMode, type SqliteDb } from '../../common/sqlite.js';
import { sqliteDialect } from './dialect.js';
import { DiskFullWatch } from './disk-full.js';
import { splitStatements, type DdlTx } from './migrate.js';
import { migrate } from './migrator.js';
import { CHANGES_CHANNEL } from './store.js';
import type { ChangeInput, Lease, RunResult, SqlValue, Store, Tx, TxOptions } from './store.js';
import { LocalBus } from './wake-bus.js';

export interface SqliteStoreOptions {
  stateDir: string;
  /** `db.journalMode`; unset (tools that open the file beside the daemon): keep the file's own mode. */
  journalMode?: JournalMode | undefined;
  log?: Logger | undefined;
  /** `:memory:` for tests of the store alone. */
  path?: string;
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

const STATEMENT_CACHE = 500;

/**
 * SQLITE_BUSY past busy_timeout: another process (a CLI tool) holds the file; the caller may retry.
 * SQLITE_FULL / ENOSPC: EDGETWIN_ERR_DISK_FULL (disk-full.ts).
 */
function mapError(err: unknown, diskFull: DiskFullWatch): unknown {
  const full = diskFull.map(err);
  if (full) return full;
  const code = (err as { code?: unknown }).code;
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED')
    return new EdgetwinError(ErrorCodes.STORE_UNAVAILABLE, 'the database is locked by another process; retry', {
      cause: err,
      details: { retryAfterS: 1 },
    });
  return err;
}

class SqliteTx implements DdlTx {
  readonly dialect = sqliteDialect;
  readonly changes: ChangeInput[] = [];
  readonly hooks: (() => void)[] = [];
  constructor(private readonly s: SqliteStore) {}
  all<T>(sql: string, params: readonly SqlValue[] = []): Promise<T[]> {
    return Promise.resolve(this.s.stmt(sql).all(...params) as T[]);
  }
  get<T>(sql: string, params: readonly SqlValue[] = []): Promise<T | undefined> {
    return Promise.resolve(this.s.stmt(sql).get(...params) as T | undefined);
  }
  run(sql: string, params: readonly SqlValue[] = []): Promise<RunResult> {
    return Promise.resolve({ changes: this.s.stmt(sql).run(...params).changes });
  }
  exec(sql: string): Promise<void> {
    for (const s of splitStatements(sql)) this.s.db.prepare(s).run();
    return Promise.resolve();
  }
  emit(c: ChangeInput): void {
    this.changes.push(c);
  }
  ordered(): Promise<void> {
    return Promise.resolve();
  }
  afterCommit(fn: () => void): void {
    this.hooks.push(fn);
  }
}

class AlwaysHeld implements Lease {
  readonly held = true;
  constructor(readonly name: string) {}
  onChange(fn: (held: boolean) => void): void {
    queueMicrotask(() => fn(true));
  }
  release(): Promise<void> {
    return Promise.resolve();
  }
}

export class SqliteStore implements Store {
  readonly kind = 'sqlite' as const;
  readonly dialect = sqliteDialect;
  readonly bus = new LocalBus();
  readonly db: SqliteDb;
  readonly path: string;
  private readonly stmts = new Map<string, Statement>();
  /** Resolves when the running transaction ends; undefined when none runs. */
  private active: Promise<void> | undefined;
  private readonly inTx = new AsyncLocalStorage<SqliteTx>();
  readonly diskFull: DiskFullWatch;

  private constructor(opts: SqliteStoreOptions) {
    this.path = opts.path ?? join(opts.stateDir, 'twins.db');
    this.diskFull = new DiskFullWatch('cloud database', opts.log, this.path);
    const journalMode = opts.journalMode ?? (this.path === ':memory:' ? undefined : fileJournalMode(this.path)) ?? 'wal';
    this.db = openDatabase({ path: this.path, synchronous: 'full', log: opts.log, schema: '', journalMode }).db;
  }

  /** Opens (creating or upgrading) the file and applies pending migrations. */
  static async open(opts: SqliteStoreOptions): Promise<SqliteStore> {
    const s = new SqliteStore(opts);
    try {
      await migrate(s, opts.log);
    } catch (err) {
      s.db.close();
      throw err;
    }
    return s;
  }

  stmt(sql: string): Statement {
    let st = this.stmts.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      if (this.stmts.size >= STATEMENT_CACHE) this.stmts.delete(this.stmts.keys().next().value!);
      this.stmts.set(sql, st);
    }
    return st;
  }

  describe(): string {
    return `sqlite ${this.path}`;
  }

  private guard(): void {
    if (this.inTx.getStore())
      throw new Error('store called directly inside one of its transactions: use the transaction (tx) handed to the callback');
  }

  /** Runs `op` now when no transaction holds the connection, else once it ends. */
  private when<T>(op: () => T): Promise<T> {
    this.guard();
    if (!this.active) {
      try {
        return Promise.resolve(op());
      } catch (err) {
        return Promise.reject(mapError(err, this.diskFull));
      }
    }
    return this.idle().then(() => this.when(op));
  }

  private async idle(): Promise<void> {
    while (this.active) await this.active;
  }

  all<T>(sql: string, params: readonly SqlValue[] = []): Promise<T[]> {
    return this.when(() => this.stmt(sql).all(...params) as T[]);
  }

  get<T>(sql: string, params: readonly SqlValue[] = []): Promise<T | undefined> {
    return this.when(() => this.stmt(sql).get(...params) as T | undefined);
  }

  run(sql: string, params: readonly SqlValue[] = []): Promise<RunResult> {
    return this.when(() => {
      const changes = this.stmt(sql).run(...params).changes;
      this.diskFull.committed();
      return { changes };
    });
  }

  tx<T>(fn: (tx: Tx) => Promise<T>, opts: TxOptions = {}): Promise<T> {
    if (opts.parent) return fn(opts.parent);
    return this.ddlTx(fn);
  }

  async ddlTx<T>(fn: (tx: DdlTx) => Promise<T>): Promise<T> {
    this.guard();
    // Checked again after every wait, with no await between the check and taking the connection.
    while (this.active) await this.active;
    let release!: () => void;
    this.active = new Promise<void>((r) => (release = r));
    const tx = new SqliteTx(this);
    try {
      try {
        this.db.prepare('BEGIN IMMEDIATE').run();
      } catch (err) {
        throw mapError(err, this.diskFull);
      }
      let result: T;
      try {
        result = await this.inTx.run(tx, () => fn(tx));
        this.writeChanges(tx.changes);
        this.db.prepare('COMMIT').run();
        this.diskFull.committed();
      } catch (err) {
        if (this.db.inTransaction) this.db.prepare('ROLLBACK').run();
        throw mapError(err, this.diskFull);
      }
      // Before the next transaction may start: what a hook records (pending batches, cached ranges)
      // stays in commit order.
      for (const h of tx.hooks) h();
      this.active = undefined;
      release();
      if (tx.changes.length > 0) this.bus.notify(CHANGES_CHANNEL);
      return result;
    } finally {
      if (this.active) {
        this.active = undefined;
        release();
      }
    }
  }

  private writeChanges(changes: ChangeInput[]): void {
    if (changes.length === 0) return;
    const at = Date.now();
    const ins = this.stmt('INSERT INTO changes (at, type, site, device, data) VALUES (?, ?, ?, ?, ?)');
    for (const c of changes) ins.run(at, c.type, c.site, c.device, JSON.stringify(c.data));
  }

  lease(name: string): Lease {
    return new AlwaysHeld(name);
  }

  async close(): Promise<void> {
    await this.idle();
    this.db.close();
  }
}
