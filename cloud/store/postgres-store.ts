/**
 * The scale-out store: PostgreSQL through `pg`, shared by every API replica. Queries run on a pool;
 * a transaction holds one pooled connection (READ COMMITTED; rows it will change are read with
 * `FOR UPDATE`, so the database — not a replica's memory — decides conflicts). LISTEN and leases
 * live on one session connection of their own (pg-session.ts): they need a real session, which a
 * transaction-mode pooler (PgBouncer) does not give — docs/deploy.md.
 *
 * Nothing waits longer than `statementTimeoutMs` (+ connect time): a database that does not
 * answer becomes EDGETWIN_ERR_STORE_UNAVAILABLE (503 + Retry-After), never a hang or a 500.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { postgresDialect } from './dialect.js';
import { DiskFullWatch } from './disk-full.js';
import type { DdlTx } from './migrate.js';
import { migrate } from './migrator.js';
import { PgSession } from './pg-session.js';
import { CHANGES_CHANNEL } from './store.js';
import type { ChangeInput, Lease, RunResult, SqlValue, Store, Tx, TxOptions } from './store.js';

export interface PostgresStoreOptions {
  /** `postgres://user@host:port/db?sslmode=…`; a password in it works but belongs in `password`. */
  url: string;
  password?: string | undefined;
  poolMax: number;
  /** Connections opened at start and kept open when idle (at most poolMax). */
  poolMin?: number | undefined;
  connectTimeoutMs: number;
  statementTimeoutMs: number;
  /** Wake-ups of one replica are merged over this window into one NOTIFY. */
  notifyBatchMs: number;
  log?: Logger | undefined;
  applicationName?: string | undefined;
  /** Told the migrations this open applied (edgetwin cloud setup-db prints them). */
  onMigrated?: ((ids: string[]) => void) | undefined;
}

/** int8 (counts, ids, millisecond times) and numeric (sums) as JS numbers: every value here is below 2^53. */
const TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === 20 || oid === 1700 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/** Advisory lock key (two-int form, first half) of `tx.ordered()`. */
const ORDER_LOCK = [7_140_000, 1] as const;
const RETRY_CODES = new Set(['40001', '40P01']);
const CHANGE_ROWS_PER_INSERT = 500;

const converted = new Map<string, string>();
/** `?` → `$n`, outside quoted strings and identifiers. */
export function toPgSql(sql: string): string {
  let out = converted.get(sql);
  if (out !== undefined) return out;
  out = '';
  let n = 0;
  let quote: string | null = null;
  for (const ch of sql) {
    if (quote) {
      if (ch === quote) quote = null;
      out += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      out += ch;
    } else out += ch === '?' ? `$${++n}` : ch;
  }
  if (converted.size < 5000) converted.set(sql, out);
  return out;
}

const UNAVAILABLE_NODE = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/** Whether an error means "the database cannot be used right now" (retry later), not "this statement is wrong". */
export function isUnavailable(err: unknown): boolean {
  const code = String((err as { code?: unknown } | null)?.code ?? '');
  if (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || code === '53300' || code === '57014')
    return true;
  if (UNAVAILABLE_NODE.has(code)) return true;
  const msg = err instanceof Error ? err.message : '';
  return /Connection terminated|timeout exceeded when trying to connect|Connection ended|Client has encountered a connection error|Query read timeout|not queryable/.test(
    msg,
  );
}

export function mapPgError(err: unknown): unknown {
  if (err instanceof EdgetwinError || !isUnavailable(err)) return err;
  return new EdgetwinError(ErrorCodes.STORE_UNAVAILABLE, `the database is unavailable: ${(err as Error).message}`, {
    cause: err,
    details: { retryAfterS: 1 },
  });
}

/**
 * A statement that could not even reach the database (refused, or the server starting or shutting
 * down) is tried again for this long before the request answers 503: a restart or an HA failover
 * of a few seconds then delays requests instead of failing them (chaos:cloud restarts PostgreSQL),
 * and a request still answers well within the 5 s the outage contract allows.
 */
const OUTAGE_WAIT_MS = 2500;
const OUTAGE_RETRY_MS = 150;
const notSent = (err: unknown): boolean => {
  const code = String((err as { code?: unknown } | null)?.code ?? '');
  return (
    code === 'ECONNREFUSED' || code === '57P03' || /timeout exceeded when trying to connect/.test(err instanceof Error ? err.message : '')
  );
};
/**
 * The URL with the password in it: `pg` lets a connection string's (empty) password override a
 * separate `password` option, so store.passwordFile was never sent (tests ran with trust
 * authentication; test/cloud/pg-least-privilege.test.ts checks SCRAM now). Never logged: describe() shows opts.url.
 */
export function withPassword(url: string, password: string | undefined): string {
  if (password === undefined) return url;
  const u = new URL(url);
  u.password = encodeURIComponent(password);
  return u.toString();
}

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const params = (p: readonly SqlValue[]): unknown[] => p.map((v) => (typeof v === 'bigint' ? v.toString() : v));

class PgTx implements DdlTx {
  readonly dialect = postgresDialect;
  readonly changes: ChangeInput[] = [];
  readonly hooks: (() => void)[] = [];
  private isOrdered = false;
  constructor(readonly client: pg.PoolClient) {}
  async all<T>(sql: string, p: readonly SqlValue[] = []): Promise<T[]> {
    return (await this.client.query(toPgSql(sql), params(p))).rows as T[];
  }
  async get<T>(sql: string, p: readonly SqlValue[] = []): Promise<T | undefined> {
    return (await this.client.query(toPgSql(sql), params(p))).rows[0] as T | undefined;
  }
  async run(sql: string, p: readonly SqlValue[] = []): Promise<RunResult> {
    return { changes: (await this.client.query(toPgSql(sql), params(p))).rowCount ?? 0 };
  }
  async exec(sql: string): Promise<void> {
    await this.client.query(sql);
  }
  emit(c: ChangeInput): void {
    this.changes.push(c);
  }
  async ordered(): Promise<void> {
    if (this.isOrdered) return;
    await this.client.query('SELECT pg_advisory_xact_lock($1, $2)', [ORDER_LOCK[0], ORDER_LOCK[1]]);
    this.isOrdered = true;
  }
  afterCommit(fn: () => void): void {
    this.hooks.push(fn);
  }
  async writeChanges(): Promise<void> {
    if (this.changes.length === 0) return;
    await this.ordered();
    const at = Date.now();
    for (let i = 0; i < this.changes.length; i += CHANGE_ROWS_PER_INSERT) {
      const chunk = this.changes.slice(i, i + CHANGE_ROWS_PER_INSERT);
      const values: unknown[] = [];
      const rows = chunk.map((c, k) => {
        values.push(at, c.type, c.site, c.device, JSON.stringify(c.data));
        const b = k * 5;
        return `($${b + 1}, $${b + 2}, $${b + 3}, $${b + 4}, $${b + 5})`;
      });
      await this.client.query(`INSERT INTO changes (at, type, site, device, data) VALUES ${rows.join(', ')}`, values);
    }
  }
}

export class PostgresStore implements Store {
  readonly kind = 'postgres' as const;
  readonly dialect = postgresDialect;
  readonly pool: pg.Pool;
  readonly session: PgSession;
  /** This process's id on the bus (its own notifications come back and are skipped). */
  readonly replicaId = randomUUID().slice(0, 8);
  private closed = false;
  readonly diskFull: DiskFullWatch;

  private readonly poolMin: number;

  private constructor(private readonly opts: PostgresStoreOptions) {
    this.poolMin = Math.min(opts.poolMin ?? 0, opts.poolMax);
    this.diskFull = new DiskFullWatch('cloud database (PostgreSQL)', opts.log);
    const conn: pg.ClientConfig = {
      connectionString: withPassword(opts.url, opts.password),
      connectionTimeoutMillis: opts.connectTimeoutMs,
      statement_timeout: opts.statementTimeoutMs,
      query_timeout: opts.statementTimeoutMs + 500,
      keepAlive: true,
      application_name: opts.applicationName ?? 'edgetwin-cloud',
      types: TYPES,
    };
    this.pool = new pg.Pool({ ...conn, max: opts.poolMax, min: this.poolMin, idleTimeoutMillis: 30_000 });
    // An idle pooled connection that dies (database restart) is dropped by the pool; this only keeps it from being fatal.
    this.pool.on('error', (err) => opts.log?.debug({ err: err.message }, 'postgres: idle connection closed'));
    // A connection the server ends (restart: FATAL 57P01, then the socket closes) can emit 'error'
    // twice, and pg-pool's own listeners are one-shot or gone once it is released: a second event
    // with no listener would kill the process (chaos:cloud found it). Every client keeps this one.
    this.pool.on('connect', (client) => client.on('error', (err) => opts.log?.debug({ err: err.message }, 'postgres: connection closed')));
    this.session = new PgSession(
      { ...conn, statement_timeout: false, query_timeout: undefined },
      this.replicaId,
      opts.notifyBatchMs,
      this.pool,
      opts.log,
    );
  }

  get bus(): PgSession['bus'] {
    return this.session.bus;
  }

  static async open(opts: PostgresStoreOptions): Promise<PostgresStore> {
    const s = new PostgresStore(opts);
    try {
      // Not `onMigrated?.(await migrate())`: an absent callback would skip evaluating its argument.
      const applied = await migrate(s, opts.log);
      opts.onMigrated?.(applied);
      await s.warm();
      s.session.start();
    } catch (err) {
      await s.close();
      throw mapPgError(err);
    }
    return s;
  }

  /**
   * Opens the pool's `min` connections before the first request. Opening one under load costs a
   * backend start and its catalog lookups while requests queue behind it: bench:cloud's first reads
   * after an ingest burst grew every pool to its maximum inside the read window.
   */
  private async warm(): Promise<void> {
    const clients = await Promise.all(Array.from({ length: this.poolMin }, () => this.pool.connect()));
    for (const c of clients) c.release();
  }

  describe(): string {
    try {
      const u = new URL(this.opts.url);
      return `postgres ${u.username ? `${decodeURIComponent(u.username)}@` : ''}${u.hostname}${u.port ? `:${u.port}` : ''}${u.pathname}`;
    } catch {
      return 'postgres (unparsable url)';
    }
  }

  private async query(sql: string, p: readonly SqlValue[]): Promise<pg.QueryResult> {
    if (this.closed) throw new EdgetwinError(ErrorCodes.CLOSED, 'store closed');
    const until = Date.now() + OUTAGE_WAIT_MS;
    for (;;) {
      try {
        return await this.pool.query(toPgSql(sql), params(p));
      } catch (err) {
        if (notSent(err) && Date.now() < until && !this.closed) {
          await pause(OUTAGE_RETRY_MS);
          continue;
        }
        throw this.diskFull.map(err) ?? mapPgError(err);
      }
    }
  }

  async all<T>(sql: string, p: readonly SqlValue[] = []): Promise<T[]> {
    return (await this.query(sql, p)).rows as T[];
  }

  async get<T>(sql: string, p: readonly SqlValue[] = []): Promise<T | undefined> {
    return (await this.query(sql, p)).rows[0] as T | undefined;
  }

  async run(sql: string, p: readonly SqlValue[] = []): Promise<RunResult> {
    return { changes: (await this.query(sql, p)).rowCount ?? 0 };
  }

  tx<T>(fn: (tx: Tx) => Promise<T>, opts: TxOptions = {}): Promise<T> {
    if (opts.parent) return fn(opts.parent);
    return this.ddlTx(fn);
  }

  async ddlTx<T>(fn: (tx: DdlTx) => Promise<T>): Promise<T> {
    const until = Date.now() + OUTAGE_WAIT_MS;
    for (let attempt = 1; ; attempt++) {
      if (this.closed) throw new EdgetwinError(ErrorCodes.CLOSED, 'store closed');
      let client: pg.PoolClient;
      try {
        client = await this.pool.connect();
      } catch (err) {
        if (notSent(err) && Date.now() < until) {
          await pause(OUTAGE_RETRY_MS);
          continue;
        }
        throw mapPgError(err);
      }
      const tx = new PgTx(client);
      // A checked-out connection that dies between statements (a database restart) emits 'error';
      // the pool listens only to idle ones. Noted here, it fails the transaction's next statement.
      let broken: Error | undefined;
      const onError = (err: Error): void => void (broken = err);
      client.on('error', onError);
      let result: T;
      let commitSent = false;
      try {
        await client.query('BEGIN');
        result = await fn(tx);
        await tx.writeChanges();
        commitSent = true;
        await client.query('COMMIT');
      } catch (err) {
        try {
          await client.query('ROLLBACK');
        } catch (e) {
          broken ??= e as Error;
        }
        client.off('error', onError);
        client.release(broken);
        const code = String((err as { code?: unknown }).code ?? '');
        // Deadlock or serialization failure: nothing was committed, the whole transaction runs again.
        if (RETRY_CODES.has(code) && attempt < 5) continue;
        // The server went away before COMMIT was sent (restart, failover): nothing was committed either.
        if (!commitSent && isUnavailable(err) && Date.now() < until && !this.closed) {
          await pause(OUTAGE_RETRY_MS);
          continue;
        }
        throw this.diskFull.map(err) ?? mapPgError(err);
      }
      this.diskFull.committed();
      client.off('error', onError);
      client.release(broken);
      for (const h of tx.hooks) h();
      if (tx.changes.length > 0) this.bus.notify(CHANGES_CHANNEL);
      return result;
    }
  }

  lease(name: string, retryMs = 1000): Lease {
    return this.session.lease(name, retryMs);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.session.stop();
    await this.pool.end().catch(() => undefined);
  }
}
