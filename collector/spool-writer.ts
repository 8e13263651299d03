/**
 * Group commit for the spool: publishes accepted within commitIntervalMs (or until
 * commitMaxMessages) share one fsynced transaction, and each PUBACK is released only after that
 * transaction commits. When the spool is full (whenFull=block), writes wait and retry, which holds
 * back PUBACKs: devices slow down instead of anyone losing data.
 */
import { EdgetwinError, ErrorCodes, isEdgetwinError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { OutboxItem, SqliteOutbox } from '../common/outbox.js';

interface Pending {
  item: OutboxItem;
  done: (err: Error | null) => void;
}

export class SpoolWriter {
  private queue: Pending[] = [];
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private fullSince = 0;

  constructor(
    private readonly spool: SqliteOutbox,
    private readonly opts: { commitIntervalMs: number; commitMaxMessages: number; retryFullMs?: number },
    private readonly log: Logger,
    private readonly onCommit: (n: number) => void,
  ) {}

  write(item: OutboxItem, done: (err: Error | null) => void): void {
    if (this.closed) return done(new EdgetwinError(ErrorCodes.CLOSED, 'collector is shutting down'));
    this.queue.push({ item, done });
    if (this.queue.length >= this.opts.commitMaxMessages && this.fullSince === 0) this.commit();
    else if (!this.timer) this.timer = setTimeout(() => this.commit(), this.opts.commitIntervalMs);
  }

  get backlog(): number {
    return this.queue.length;
  }

  private commit(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    try {
      this.spool.append(batch.map((p) => p.item));
    } catch (err) {
      if (isEdgetwinError(err, ErrorCodes.STORE_FULL) && !this.closed) {
        if (this.fullSince === 0) {
          this.fullSince = Date.now();
          this.log.warn({ code: err.code }, 'spool full: holding acknowledgements until sinks drain');
        }
        this.queue = batch.concat(this.queue);
        this.timer = setTimeout(() => this.commit(), this.opts.retryFullMs ?? 100);
        return;
      }
      for (const p of batch) p.done(err as Error);
      return;
    }
    if (this.fullSince !== 0) {
      this.log.info({ heldMs: Date.now() - this.fullSince }, 'spool has room again');
      this.fullSince = 0;
    }
    for (const p of batch) p.done(null);
    this.onCommit(batch.length);
    if (this.queue.length > 0 && !this.timer) this.timer = setTimeout(() => this.commit(), 0);
  }

  /** Commits what is queued (best effort) and refuses new writes. */
  close(): void {
    if (this.closed) return;
    this.commitNowIgnoringFull();
    this.closed = true;
  }

  private commitNowIgnoringFull(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    try {
      this.spool.append(batch.map((p) => p.item));
      for (const p of batch) p.done(null);
      this.onCommit(batch.length);
    } catch (err) {
      // Not written, so not acknowledged: the devices still hold these and will resend.
      for (const p of batch) p.done(err as Error);
    }
  }
}
