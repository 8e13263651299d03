import type { Writable } from 'node:stream';
import type { Counter } from '../../common/metrics.js';

/**
 * One group commit's PUBACKs: the sockets are corked while aedes writes them (one writev per
 * connection, not one write per PUBACK), and accepted readings are counted once per group.
 */
export class AckGroup {
  /** Sockets corked while one group commit's PUBACKs are written: one writev each, not one write per PUBACK. */
  private readonly corked = new Set<Writable>();
  /** Readings acknowledged in the current group, counted once per group rather than per message. */
  private acceptedInGroup = 0;
  private groupOpen = false;

  constructor(private readonly accepted: Counter<string>) {}

  /** The spool writer answers a whole group in one go; what follows it runs once, after the last PUBACK. */
  add(readings: number): void {
    this.acceptedInGroup += readings;
    this.openGroup();
  }

  private openGroup(): void {
    if (!this.groupOpen) {
      this.groupOpen = true;
      process.nextTick(() => {
        for (const c of this.corked) c.uncork();
        this.corked.clear();
        this.accepted.inc(this.acceptedInGroup);
        this.acceptedInGroup = 0;
        this.groupOpen = false;
      });
    }
  }

  /** aedes writes one PUBACK per publish; corked, a group's PUBACKs leave in one writev. */
  cork(conn: Writable): void {
    this.openGroup();
    if (this.corked.has(conn) || typeof conn.cork !== 'function') return;
    conn.cork();
    this.corked.add(conn);
  }
}
