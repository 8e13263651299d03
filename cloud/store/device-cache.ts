/**
 * A bounded per-device cache of what a store read, kept right across replicas: a local write drops
 * the device's entry at once and again at commit (a read may have raced the commit), and every
 * change naming the device — from any replica, through the change feed — drops it too. A read that
 * ran while any entry was dropped is not cached (it may have straddled a write). Nothing cached may
 * decide a conditional write: If-Match is checked against the locked row in the database.
 */
import type { ChangeFeed } from './change-feed.js';
import type { Tx } from './store.js';

const CACHE_MAX = 50_000;

export class DeviceCache<V> {
  private readonly entries = new Map<string, V>();
  /** Bumped by every invalidation: a read that raced one does not cache what it read. */
  private generation = 0;

  /** Drops entries of devices that changed anywhere: call once with the cloud's change feed. */
  watch(feed: ChangeFeed): void {
    feed.tap((c) => {
      if (c.device !== null) this.forget(c.device);
    });
  }

  forget(device: string): void {
    this.entries.delete(device);
    this.generation++;
  }

  /** A write to `device` in `tx`: its entry goes now and again once committed. */
  touch(tx: Tx, device: string): void {
    this.forget(device);
    tx.afterCommit(() => this.forget(device));
  }

  get(device: string): V | undefined {
    return this.entries.get(device);
  }

  /** Taken before a read; `set` keeps what the read found only if nothing was dropped since. */
  mark(): number {
    return this.generation;
  }

  set(device: string, value: V, mark: number): void {
    if (mark !== this.generation) return;
    // Oldest first out: a Map iterates in insertion order.
    if (this.entries.size >= CACHE_MAX) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(device, value);
  }
}
