/**
 * Group commit for the spool: publishes accepted within commitIntervalMs (0: within one turn of
 * the event loop), or until commitMaxMessages, share one transaction, and each PUBACK is released
 * only after that transaction is on disk — fsynced by SQLite itself, or, with a WalSync, by an
 * fsync of the WAL on the thread pool while the next group is already being committed. When the
 * spool is full (whenFull=block), writes wait and retry, which holds back PUBACKs: devices slow
 * down instead of anyone losing data.
 */
import { EdgetwinError, ErrorCodes, isEdgetwinError, storeErrorCode } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { OutboxItem, SqliteOutbox } from '../../common/outbox/outbox.js';
import type { WalSync } from './wal-sync.js';

interface Pending {
  /** Undefined: nothing to store, only an answer to give in turn (see after()). */
  item: OutboxItem | undefined;
  done: (err: Error | null) => void;
  /** Builds the body inside the commit's transaction (readings that get their seq from the spool). */
  build?: () => string;
}

export class SpoolWriter {
  private queue: Pending[] = [];
  private timer: { cancel(): void } | undefined;
  private closed = false;
  private fullSince = 0;
  /** Since when commits fail with EDGETWIN_ERR_DISK_FULL (undefined: they do not). */
  diskFullSince: number | undefined;

  constructor(
    private readonly spool: SqliteOutbox,
    private readonly opts: { commitIntervalMs: number; commitMaxMessages: number; retryFullMs?: number },
    private readonly log: Logger,
    private readonly onCommit: (n: number) => void,
    /** When the spool commits without fsync (synchronous=NORMAL), this makes each group durable before its PUBACKs. */
    private readonly walSync?: WalSync,
  ) {}

  /**
   * Queues one message for the next group commit; `done` runs after the fsync. With `build`, the
   * body is made inside the commit transaction (item.body is ignored until then).
   */
  write(item: OutboxItem, done: (err: Error | null) => void, build?: () => string): void {
    if (this.closed) return done(new EdgetwinError(ErrorCodes.CLOSED, 'collector is shutting down'));
    this.queue.push(build ? { item, done, build } : { item, done });
    if (this.queue.length >= this.opts.commitMaxMessages && this.fullSince === 0) this.commit();
    else if (!this.timer) this.schedule(this.opts.commitIntervalMs);
  }

  /**
   * Calls `done` in turn with the writes queued before it, once they are committed: a refused
   * publish is answered after the ones ahead of it, so PUBACKs keep the order of the PUBLISHes.
   */
  after(done: (err: Error | null) => void): void {
    if (this.closed) return done(new EdgetwinError(ErrorCodes.CLOSED, 'collector is shutting down'));
    this.queue.push({ item: undefined, done });
    if (!this.timer) this.schedule(this.opts.commitIntervalMs);
  }

  /**
   * 0 ms commits right after the event loop has handled all input that is ready (setImmediate): a
   * busy broker batches whatever arrived in one loop turn, an idle one acknowledges at once.
   */
  private schedule(ms: number): void {
    if (ms === 0) {
      const i = setImmediate(() => this.commit());
      this.timer = { cancel: () => clearImmediate(i) };
    } else {
      const t = setTimeout(() => this.commit(), ms);
      this.timer = { cancel: () => clearTimeout(t) };
    }
  }

  private cancel(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  /** Since when writes are held because the spool is full (undefined: they are not). */
  get spoolFullSince(): number | undefined {
    return this.fullSince === 0 ? undefined : this.fullSince;
  }

  get backlog(): number {
    return this.queue.length;
  }

  private commit(): void {
    this.cancel();
    if (this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    let refused: Set<Pending> | undefined;
    try {
      refused = this.append(batch);
    } catch (err) {
      if (isEdgetwinError(err, ErrorCodes.STORE_FULL) && !this.closed) {
        if (this.fullSince === 0) {
          this.fullSince = Date.now();
          this.log.warn({ code: err.code }, 'spool full: holding acknowledgements until sinks drain');
        }
        this.queue = batch.concat(this.queue);
        this.schedule(this.opts.retryFullMs ?? 100);
        return;
      }
      // Not written, so not acknowledged (the devices resend); a full disk has its own code and degrades /healthz.
      const code = storeErrorCode(err);
      const e = isEdgetwinError(err) ? err : new EdgetwinError(code, `spool write failed: ${(err as Error).message}`, { cause: err });
      if (code === ErrorCodes.DISK_FULL && this.diskFullSince === undefined) {
        this.diskFullSince = Date.now();
        this.log.error({ code, err }, 'spool write failed: the disk is full; publishes are not acknowledged until it has room');
      }
      for (const p of batch) p.done(e);
      return;
    }
    this.diskFullSince = undefined;
    if (this.fullSince !== 0) {
      this.log.info({ heldMs: Date.now() - this.fullSince }, 'spool has room again');
      this.fullSince = 0;
    }
    // In order: a refused write closes its connection only after the PUBACKs ahead of it.
    const answer = (err: Error | null): void => {
      for (const p of batch) p.done(refused?.has(p) ? this.tooLarge() : err);
      if (!err) this.onCommit(batch.length - (refused?.size ?? 0));
    };
    if (this.walSync) this.walSync.after(answer);
    else answer(null);
    if (this.queue.length > 0 && !this.timer) this.schedule(0);
  }

  /** Returns the writes refused because one alone is larger than the spool (drop_oldest only). */
  private append(batch: Pending[]): Set<Pending> | undefined {
    if (this.spool.cfg.whenFull === 'drop_oldest') return this.spool.transaction(() => this.appendSlices(batch));
    const items: OutboxItem[] = [];
    let build = false;
    for (const p of batch) {
      if (p.item) items.push(p.item);
      if (p.build) build = true;
    }
    if (!build) return void this.spool.append(items);
    this.spool.transaction(() => {
      for (const p of batch) if (p.build) p.item!.body = p.build();
      this.spool.appendInTx(items);
    });
    return undefined;
  }

  /**
   * drop_oldest: the outbox refuses one append larger than the whole spool, and a refused group
   * only grows while it waits, so it would be held forever. Slices that each fit go in instead,
   * in order, each dropping the oldest rows (earlier slices included): the spool ends with the
   * newest messages. A single message larger than the spool cannot be kept at all; it is refused
   * (unacknowledged), not dropped silently.
   */
  private appendSlices(batch: Pending[]): Set<Pending> | undefined {
    const max = this.spool.cfg.maxBytes;
    let refused: Set<Pending> | undefined;
    let slice: OutboxItem[] = [];
    let bytes = 0;
    for (const p of batch) {
      if (!p.item) continue;
      if (p.build) p.item.body = p.build();
      const b = Buffer.byteLength(p.item.body);
      if (b > max) {
        (refused ??= new Set()).add(p);
        continue;
      }
      if (bytes + b > max) {
        this.spool.appendInTx(slice);
        slice = [];
        bytes = 0;
      }
      slice.push(p.item);
      bytes += b;
    }
    if (slice.length > 0) this.spool.appendInTx(slice);
    return refused;
  }

  private tooLarge(): EdgetwinError {
    return new EdgetwinError(ErrorCodes.STORE_FULL, `message larger than spool.maxBytes (${this.spool.cfg.maxBytes} bytes)`);
  }

  /** Commits what is queued (best effort) and refuses new writes. */
  close(): void {
    if (this.closed) return;
    this.commitNowIgnoringFull();
    this.closed = true;
    this.walSync?.close();
  }

  private commitNowIgnoringFull(): void {
    this.cancel();
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    try {
      const refused = this.append(batch);
      this.walSync?.syncNow();
      for (const p of batch) p.done(refused?.has(p) ? this.tooLarge() : null);
      this.onCommit(batch.length - (refused?.size ?? 0));
    } catch (err) {
      // Not written, so not acknowledged: the devices still hold these and will resend.
      for (const p of batch) p.done(err as Error);
    }
  }
}
