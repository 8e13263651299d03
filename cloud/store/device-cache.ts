/**
 * A bounded per-device cache of what a store read, kept right across replicas: a local write drops
 * the device's entry at once and again at commit (a read may have raced the commit), and every
 * change naming the device — from any replica, through the change feed — drops it too. A read that
 * ran while the device's entry was dropped is not cached (it may have straddled a write). Nothing
 * cached may decide a conditional write: If-Match is checked against the locked row in the database.
 *
 * The check is per device: with one generation for all devices, any change anywhere (continuous
 * ingest changes some device every few milliseconds) kept a read of every other device from being
 * cached, and the reads that should have been hits went to the database.
 */
import type { ChangeFeed } from './change-feed.js';
import type { Tx } from './store.js';

const CACHE_MAX = 50_000;
/** Devices whose last drop is remembered; beyond it only the newest generation forgotten is. */
const DROPPED_MAX = 100_000;

export class DeviceCache<V> {
  private readonly entries = new Map<string, V>();
  /** Bumped by every invalidation: a read taken before a device's drop does not cache what it read. */
  private generation = 0;
  /** Device → generation of its last drop, oldest drop first (re-inserted on every drop). */
  private readonly dropped = new Map<string, number>();
  /** The newest generation let go from `dropped`: a device not in it was last dropped at or before this. */
  private droppedFloor = 0;

  /** Drops entries of devices that changed anywhere: call once with the cloud's change feed. */
  watch(feed: ChangeFeed): void {
    feed.tap((c) => {
      if (c.device !== null) this.forget(c.device);
    });
  }

  forget(device: string): void {
    this.entries.delete(device);
    this.generation++;
    this.dropped.delete(device);
    this.dropped.set(device, this.generation);
    if (this.dropped.size > DROPPED_MAX) {
      const [oldest, at] = this.dropped.entries().next().value!;
      this.dropped.delete(oldest);
      this.droppedFloor = at;
    }
  }

  /** A write to `device` in `tx`: its entry goes now and again once committed. */
  touch(tx: Tx, device: string): void {
    this.forget(device);
    tx.afterCommit(() => this.forget(device));
  }

  get(device: string): V | undefined {
    return this.entries.get(device);
  }

  /** Taken before a read; `set` keeps what the read found only if the device was not dropped since. */
  mark(): number {
    return this.generation;
  }

  set(device: string, value: V, mark: number): void {
    if ((this.dropped.get(device) ?? this.droppedFloor) > mark) return;
    // Oldest first out: a Map iterates in insertion order.
    if (this.entries.size >= CACHE_MAX) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(device, value);
  }
}
