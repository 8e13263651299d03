/**
 * Group commit for the audit entries of direct-method calls. Every call is audited, and each
 * commit costs an fsync (several ms, and on SQLite the event loop waits for it): one transaction
 * per call would make the audit, not the device, the bottleneck. Entries that arrive while a
 * commit runs go into the next one together, so an idle cloud commits at once and a busy one
 * commits many calls per fsync. Each `record` resolves once its entry is committed.
 */
import type { AuditLog } from '../audit/audit-log.js';
import type { Principal } from '../auth/tokens.js';
import type { Store } from '../store/store.js';

interface Entry {
  who: Principal;
  action: string;
  target: { device?: string | null; site?: string | null };
  detail: unknown;
  at: number;
  done: (err?: unknown) => void;
}

/** Entries per transaction, at most. */
const MAX_BATCH = 500;

export class AuditBatch {
  private queue: Entry[] = [];
  private running = false;

  constructor(
    private readonly store: Store,
    private readonly audit: AuditLog,
  ) {}

  record(who: Principal, action: string, target: Entry['target'], detail: unknown): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ who, action, target, detail, at: Date.now(), done: (err) => (err === undefined ? resolve() : reject(err)) });
      if (!this.running) void this.run();
    });
  }

  private async run(): Promise<void> {
    this.running = true;
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, MAX_BATCH);
      try {
        await this.store.tx(async (tx) => {
          for (const e of batch) await this.audit.record(tx, e.who, e.action, e.target, e.detail, e.at);
        });
        for (const e of batch) e.done();
      } catch (err) {
        for (const e of batch) e.done(err);
      }
    }
    this.running = false;
  }
}
