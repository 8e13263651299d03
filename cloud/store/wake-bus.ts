/**
 * Wake-ups between the parts of the cloud that share state: "something was committed on channel X,
 * go and read it". A wake-up carries no data — the reader reads the table — so a lost or merged
 * wake-up costs latency, never correctness (readers also poll).
 */
import type { WakeBus } from './store.js';

/** In-process only: what the SQLite store uses (one process owns the file). */
export class LocalBus implements WakeBus {
  private readonly subs = new Map<string, Set<() => void>>();

  notify(channel: string): void {
    this.fire(channel);
  }

  /** Runs every subscriber of `channel` (a throwing subscriber does not stop the others). */
  fire(channel: string): void {
    for (const fn of this.subs.get(channel) ?? []) {
      try {
        fn();
      } catch {
        // a subscriber's own failure; it logs its own errors
      }
    }
  }

  /** Wakes every channel (after a reconnect: notifications may have been missed). */
  fireAll(): void {
    for (const ch of this.subs.keys()) this.fire(ch);
  }

  on(channel: string, fn: () => void): () => void {
    let set = this.subs.get(channel);
    if (!set) this.subs.set(channel, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }
}
