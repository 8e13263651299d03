/**
 * Durability for the spool without blocking the event loop. The spool connection commits with
 * `synchronous=NORMAL` (WAL frames written, not fsynced), and this fsyncs the WAL file on libuv's
 * thread pool; a group's PUBACKs go out only when an fsync that started after its commit has
 * finished. That is exactly what `synchronous=FULL` promises (the WAL is on disk before anyone is
 * told), but the next group is parsed and committed while the disk works, instead of the whole
 * broker waiting ~2 ms per commit. SQLite's own checkpoints still fsync the WAL before and the
 * database after copying, so frames that a checkpoint moved are durable in the database file.
 */
import { closeSync, fstatSync, fsync, fsyncSync, openSync, statSync } from 'node:fs';

type Done = (err: Error | null) => void;

export class WalSync {
  private fd: number | undefined;
  private inflight = false;
  private closing = false;
  private waiting: Done[] = [];

  constructor(readonly walPath: string) {}

  /** Calls `done` once everything committed before this call is on disk. */
  after(done: Done): void {
    this.waiting.push(done);
    if (!this.inflight) this.flush();
  }

  private flush(): void {
    const batch = this.waiting;
    this.waiting = [];
    let fd: number;
    try {
      fd = this.open();
    } catch (err) {
      for (const d of batch) d(err as Error);
      return;
    }
    this.inflight = true;
    fsync(fd, (err) => {
      this.inflight = false;
      for (const d of batch) d(err);
      if (this.closing) return this.closeFd();
      if (this.waiting.length > 0) this.flush();
    });
  }

  /** The WAL file SQLite writes now (it keeps one per open database; reopened if it was replaced). */
  private open(): number {
    if (this.fd !== undefined && fstatSync(this.fd).ino === statSync(this.walPath).ino) return this.fd;
    this.closeFd();
    this.fd = openSync(this.walPath, 'r');
    return this.fd;
  }

  /** At shutdown: makes what was committed durable now, synchronously. */
  syncNow(): void {
    fsyncSync(this.open());
  }

  private closeFd(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  close(): void {
    this.closing = true;
    if (!this.inflight) this.closeFd();
  }
}
