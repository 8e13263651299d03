/**
 * The PostgreSQL store's one session connection: LISTEN for wake-ups from other replicas, and the
 * session advisory locks behind leases. Both die with the session — a killed replica's backend
 * exits when its socket closes, which frees its leases for the others — and both come back on
 * reconnect (wake-ups then fire once on every channel, since some may have been missed).
 *
 * NOTIFY takes a database-wide lock at commit, so wake-ups are not sent per transaction: the
 * channels woken within `notifyBatchMs` go out as one `pg_notify` on a pooled connection.
 */
import pg from 'pg';
import type { Logger } from '../../common/log.js';
import type { Lease } from './store.js';
import { LocalBus } from './wake-bus.js';

const CHANNEL = 'edgetwin_wake';
const LEASE_KEY = 7_140_002;
const RECONNECT_MS = [100, 250, 500, 1000];

/** 32-bit FNV-1a of a lease name: the second half of its advisory lock key. */
function leaseKey(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h | 0;
}

/** Coalesces notifications and forwards remote ones; local subscribers are woken at once. */
class PgBus extends LocalBus {
  private pending = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  constructor(
    private readonly replicaId: string,
    private readonly batchMs: number,
    private readonly pool: pg.Pool,
    private readonly log: Logger | undefined,
  ) {
    super();
  }

  override notify(channel: string): void {
    this.fire(channel);
    this.pending.add(channel);
    this.timer ??= setTimeout(() => this.send(), this.batchMs);
  }

  private send(): void {
    this.timer = undefined;
    const channels = [...this.pending].join(',');
    this.pending.clear();
    this.pool.query('SELECT pg_notify($1, $2)', [CHANNEL, `${this.replicaId}:${channels}`]).catch((err: unknown) => {
      // Readers also poll: a lost wake-up only delays them.
      this.log?.debug({ err }, 'postgres: NOTIFY failed');
    });
  }

  received(payload: string | undefined): void {
    const i = payload?.indexOf(':') ?? -1;
    if (!payload || i < 0 || payload.slice(0, i) === this.replicaId) return;
    for (const ch of payload.slice(i + 1).split(',')) this.fire(ch);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

class PgLease implements Lease {
  held = false;
  private readonly subs: ((held: boolean) => void)[] = [];
  timer: NodeJS.Timeout | undefined;
  released = false;
  constructor(
    readonly name: string,
    readonly key: number,
  ) {}
  onChange(fn: (held: boolean) => void): void {
    this.subs.push(fn);
  }
  set(held: boolean): void {
    if (held === this.held) return;
    this.held = held;
    for (const fn of this.subs) fn(held);
  }
  release!: () => Promise<void>;
}

export class PgSession {
  readonly bus: PgBus;
  private client: pg.Client | undefined;
  private connecting: Promise<pg.Client | undefined> | undefined;
  private readonly leases = new Set<PgLease>();
  private stopped = false;
  private failures = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly conn: pg.ClientConfig,
    replicaId: string,
    notifyBatchMs: number,
    pool: pg.Pool,
    private readonly log: Logger | undefined,
  ) {
    this.bus = new PgBus(replicaId, notifyBatchMs, pool, log);
  }

  start(): void {
    void this.connect();
  }

  private connect(): Promise<pg.Client | undefined> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= (async () => {
      const c = new pg.Client(this.conn);
      c.on('error', (err) => this.lost(c, err));
      c.on('end', () => this.lost(c, new Error('session ended')));
      c.on('notification', (n) => this.bus.received(n.payload));
      try {
        await c.connect();
        await c.query(`LISTEN ${CHANNEL}`);
      } catch (err) {
        c.removeAllListeners('end');
        await c.end().catch(() => undefined);
        this.lost(c, err);
        return undefined;
      }
      if (this.stopped) {
        await c.end().catch(() => undefined);
        return undefined;
      }
      this.client = c;
      if (this.failures > 0) this.log?.info('postgres: session connection back (LISTEN, leases)');
      this.failures = 0;
      // Wake-ups sent while this replica was not listening are lost: every reader looks once.
      this.bus.fireAll();
      return c;
    })().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private lost(c: pg.Client, err: unknown): void {
    if (this.client === c) this.client = undefined;
    for (const l of this.leases) if (l.held) l.set(false);
    if (this.stopped || this.reconnectTimer) return;
    if (this.failures++ === 0) this.log?.warn({ err }, 'postgres: session connection lost (LISTEN, leases); reconnecting');
    this.reconnectTimer = setTimeout(
      () => {
        this.reconnectTimer = undefined;
        void this.connect();
      },
      RECONNECT_MS[Math.min(this.failures - 1, RECONNECT_MS.length - 1)],
    );
    this.reconnectTimer.unref();
  }

  /** One statement at a time on the session: pg 8 queues overlapping ones with a deprecation warning, pg 9 refuses them. */
  private serial(c: pg.Client, sql: string, values?: unknown[]): Promise<pg.QueryResult> {
    const run = this.queue.then(() => c.query(sql, values));
    this.queue = run.catch(() => undefined);
    return run;
  }

  lease(name: string, retryMs: number): Lease {
    const l = new PgLease(name, leaseKey(name));
    this.leases.add(l);
    const attempt = async (): Promise<void> => {
      if (l.released || this.stopped) return;
      const c = await this.connect();
      if (!c) return;
      try {
        // Held: a cheap query proves the session (and so the lock) is still alive.
        if (l.held) await this.serial(c, 'SELECT 1');
        else if ((await this.serial(c, 'SELECT pg_try_advisory_lock($1, $2) AS ok', [LEASE_KEY, l.key])).rows[0]?.ok === true) l.set(true);
      } catch (err) {
        this.lost(c, err);
      }
    };
    const loop = (): void => {
      void attempt().finally(() => {
        if (l.released || this.stopped) return;
        l.timer = setTimeout(loop, retryMs);
        l.timer.unref();
      });
    };
    loop();
    l.release = async () => {
      l.released = true;
      if (l.timer) clearTimeout(l.timer);
      this.leases.delete(l);
      if (l.held && this.client)
        await this.serial(this.client, 'SELECT pg_advisory_unlock($1, $2)', [LEASE_KEY, l.key]).catch(() => undefined);
      l.set(false);
    };
    return l;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.bus.stop();
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    for (const l of [...this.leases]) await l.release();
    await this.connecting;
    const c = this.client;
    this.client = undefined;
    if (c) {
      c.removeAllListeners('end');
      await c.end().catch(() => undefined);
    }
  }
}
