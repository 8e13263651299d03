/**
 * ChangeFeed: this replica's reader of the `changes` table. Woken by the bus after any replica's
 * commit (and every `pollMs` in case a wake-up was lost), it reads the rows after the last one it
 * has seen, in id order, and hands each to its subscribers. Ids are global and become visible in
 * id order (`tx.ordered()`), so "everything after id N" is the same list on every replica: an SSE
 * client that reconnects to another replica with `Last-Event-ID: N` misses nothing and gets
 * nothing twice.
 */
import type { Logger } from '../../common/log.js';
import { CHANGES_CHANNEL, type Change, type Store } from './store.js';

interface ChangeRow {
  id: number;
  at: number;
  type: string;
  site: string;
  device: string | null;
  data: string;
}

export type ChangeListener = (c: Change) => void;

interface Subscriber {
  fn: ChangeListener;
  /** Highest id handed to it. */
  last: number;
  /** Live changes that arrived while its backlog was being read. */
  held: Change[] | undefined;
}

const PAGE = 1000;

const toChange = (r: ChangeRow): Change => ({
  id: r.id,
  at: new Date(r.at).toISOString(),
  type: r.type,
  site: r.site,
  device: r.device,
  data: JSON.parse(r.data) as Record<string, unknown>,
});

export interface ChangeFeedOptions {
  pollMs?: number;
  /** Rows older than this are deleted (by whichever replica gets there first). */
  retentionMs?: number;
  log?: Logger | undefined;
}

export class ChangeFeed {
  private last = 0;
  private readonly subs = new Set<Subscriber>();
  /** Listeners of every change (caches invalidated on other replicas' writes); not counted as clients. */
  private readonly taps = new Set<ChangeListener>();
  private reading: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private pruneTimer: NodeJS.Timeout | undefined;
  private offBus: (() => void) | undefined;
  private started = false;
  private failing = false;

  constructor(
    private readonly store: Store,
    private readonly opts: ChangeFeedOptions = {},
  ) {}

  /** Starts from the newest change: subscribers without a resume point get what is committed from now on. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.last = (await this.store.get<{ id: number | null }>('SELECT max(id) AS id FROM changes'))?.id ?? 0;
    this.offBus = this.store.bus.on(CHANGES_CHANNEL, () => this.wake());
    const poll = (): void => {
      this.timer = setTimeout(() => {
        this.wake();
        poll();
      }, this.opts.pollMs ?? 1000);
      this.timer.unref();
    };
    poll();
    const retention = this.opts.retentionMs ?? 0;
    if (retention > 0) {
      this.pruneTimer = setInterval(() => void this.prune(retention), Math.min(retention, 60_000));
      this.pruneTimer.unref();
    }
  }

  /** The id of the newest change this replica has read. */
  get lastId(): number {
    return this.last;
  }

  get count(): number {
    return this.subs.size;
  }

  /** Reads now (and once more if a read is already running). Resolves when caught up. */
  wake(): Promise<void> {
    if (this.reading) {
      this.again = true;
      return this.reading;
    }
    this.reading = (async () => {
      do {
        this.again = false;
        await this.readNew();
      } while (this.again);
    })().finally(() => (this.reading = undefined));
    return this.reading;
  }

  private async readNew(): Promise<void> {
    for (;;) {
      let rows: ChangeRow[];
      try {
        rows = await this.store.all<ChangeRow>('SELECT * FROM changes WHERE id > ? ORDER BY id LIMIT ?', [this.last, PAGE]);
      } catch (err) {
        if (!this.failing) this.opts.log?.warn({ err }, 'change feed: read failed; retrying');
        this.failing = true;
        return;
      }
      if (this.failing) this.opts.log?.info('change feed: reading again');
      this.failing = false;
      for (const r of rows) {
        const c = toChange(r);
        this.last = c.id;
        for (const t of this.taps) t(c);
        for (const s of this.subs) this.deliver(s, c);
      }
      if (rows.length < PAGE) return;
    }
  }

  private deliver(s: Subscriber, c: Change): void {
    if (s.held) s.held.push(c);
    else if (c.id > s.last) {
      s.last = c.id;
      s.fn(c);
    }
  }

  /** Every change read, before subscribers get it (cache invalidation). */
  tap(fn: ChangeListener): () => void {
    this.taps.add(fn);
    return () => this.taps.delete(fn);
  }

  /**
   * Hands `fn` every change after `after` (default: from now on), each once, in id order. With an
   * `after` older than the oldest row kept, `fn` gets what is kept (the caller may check `oldestId`).
   */
  async subscribe(fn: ChangeListener, after?: number): Promise<() => void> {
    const s: Subscriber = { fn, last: after ?? this.last, held: after !== undefined && after < this.last ? [] : undefined };
    this.subs.add(s);
    if (s.held) {
      try {
        let from = s.last;
        const upTo = this.last;
        for (;;) {
          const rows = await this.store.all<ChangeRow>('SELECT * FROM changes WHERE id > ? AND id <= ? ORDER BY id LIMIT ?', [
            from,
            upTo,
            PAGE,
          ]);
          for (const r of rows) {
            const c = toChange(r);
            if (c.id > s.last) {
              s.last = c.id;
              fn(c);
            }
          }
          if (rows.length < PAGE) break;
          from = rows[rows.length - 1]!.id;
        }
      } catch (err) {
        this.subs.delete(s);
        throw err;
      }
      const held = s.held;
      s.held = undefined;
      for (const c of held) this.deliver(s, c);
    }
    return () => this.subs.delete(s);
  }

  /** The oldest change id still kept (0 when none). */
  async oldestId(): Promise<number> {
    return (await this.store.get<{ id: number | null }>('SELECT min(id) AS id FROM changes'))?.id ?? 0;
  }

  private async prune(retentionMs: number): Promise<void> {
    try {
      await this.store.run('DELETE FROM changes WHERE at < ?', [Date.now() - retentionMs]);
    } catch (err) {
      this.opts.log?.debug({ err }, 'change feed: prune failed; next run retries');
    }
  }

  stop(): void {
    this.offBus?.();
    if (this.timer) clearTimeout(this.timer);
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    this.subs.clear();
    this.taps.clear();
  }
}
