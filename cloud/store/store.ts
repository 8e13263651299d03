/**
 * The cloud's one door to its database (board decision D2). Every cloud module reads and writes
 * state through a `Store`: SQLite (`store.kind: sqlite`, the embedded default, one file in
 * stateDir) or PostgreSQL (`store.kind: postgres`, shared by any number of API replicas).
 *
 * SQL is written once, with `?` placeholders, in the subset both engines speak (UPSERT with
 * `ON CONFLICT … DO UPDATE`, `RETURNING`, row values); the few places that differ ask the
 * `Dialect` (types in DDL, `greatest`, JSON fields, `FOR UPDATE`). Tables come from versioned
 * migrations (cloud/store/migrations/), never from `CREATE TABLE IF NOT EXISTS` in a module.
 *
 * Besides SQL the store carries what replicas need to cooperate: a change feed written in the same
 * transaction as each change (`tx.emit`, read by `ChangeFeed`), a wake-up bus (in-process for SQLite,
 * LISTEN/NOTIFY for PostgreSQL) and leases (one holder at a time, e.g. the lakehouse writer).
 */
import type { DiskFullWatch } from './disk-full.js';
import type { Dialect, StoreKind } from './dialect.js';

export type { StoreKind };

/** What a placeholder may be bound to. Booleans are stored as 0/1 integers. */
export type SqlValue = string | number | bigint | Buffer | null;

export interface RunResult {
  /** Rows inserted, updated or deleted. */
  changes: number;
}

/** Runs SQL: the store itself (each call on its own) or a transaction. */
export interface Queryable {
  readonly dialect: Dialect;
  all<T = Record<string, unknown>>(sql: string, params?: readonly SqlValue[]): Promise<T[]>;
  get<T = Record<string, unknown>>(sql: string, params?: readonly SqlValue[]): Promise<T | undefined>;
  run(sql: string, params?: readonly SqlValue[]): Promise<RunResult>;
}

/** One entry of the change feed (`changes` table): what `GET /v1/stream` sends, from any replica. */
export interface ChangeInput {
  type: string;
  site: string;
  device: string | null;
  data: Record<string, unknown>;
}

export interface Change extends ChangeInput {
  /** Global, increasing in commit order (the SSE `id`, valid on every replica). */
  id: number;
  /** ISO time of the commit. */
  at: string;
}

export interface Tx extends Queryable {
  /** Adds a change-feed row, written in this transaction just before it commits (and only if it commits). */
  emit(change: ChangeInput): void;
  /**
   * Orders this transaction's commit after every earlier caller's: ids taken after this call (the
   * staging and changes tables) become visible in id order, so a reader that has seen id N has seen
   * every id below N. PostgreSQL: a transaction-scoped advisory lock; SQLite: nothing (one writer).
   */
  ordered(): Promise<void>;
  /** Runs after a successful commit (in-memory caches, wake-ups); never after a rollback. */
  afterCommit(fn: () => void): void;
}

export interface TxOptions {
  /** Joins this transaction instead of opening one (a store method called from inside another's transaction). */
  parent?: Tx | undefined;
}

/** Wakes this and (PostgreSQL) every other replica; notifications are coalesced, never carry data. */
export interface WakeBus {
  notify(channel: string): void;
  /** `fn` runs on every wake-up of `channel`, and once after a reconnect (wake-ups may have been missed). */
  on(channel: string, fn: () => void): () => void;
}

/** At most one holder at a time across replicas (PostgreSQL: a session advisory lock; SQLite: always held). */
export interface Lease {
  readonly name: string;
  readonly held: boolean;
  /** Called with true when acquired and false when lost (connection gone). */
  onChange(fn: (held: boolean) => void): void;
  /** Gives the lease up (others may take it within their retry interval). */
  release(): Promise<void>;
}

export interface Store extends Queryable {
  readonly kind: StoreKind;
  /** Runs `fn` in one transaction; PostgreSQL retries it (from the start) on a deadlock or serialization failure. */
  tx<T>(fn: (tx: Tx) => Promise<T>, opts?: TxOptions): Promise<T>;
  readonly bus: WakeBus;
  /** Tries to take lease `name` now and again every `retryMs` until it is held or released. */
  lease(name: string, retryMs?: number): Lease;
  /** Where it points, for logs (never a password). */
  describe(): string;
  /** Writes failing because the disk under the database is full (EDGETWIN_ERR_DISK_FULL): /healthz reports it. */
  readonly diskFull: DiskFullWatch;
  close(): Promise<void>;
}

/** Bus channel woken after every commit that wrote change-feed rows. */
export const CHANGES_CHANNEL = 'changes';
/** Bus channel woken after every commit that staged an ingest batch. */
export const STAGING_CHANNEL = 'staging';

/** Runs `fn` in `parent` when there is one, else in a new transaction of `store`. */
export function withTx<T>(store: Store, parent: Tx | undefined, fn: (tx: Tx) => Promise<T>): Promise<T> {
  return parent ? fn(parent) : store.tx(fn);
}

/** `?, ?, ?` for an IN list or a VALUES row. */
export function placeholders(n: number): string {
  return new Array<string>(n).fill('?').join(', ');
}
