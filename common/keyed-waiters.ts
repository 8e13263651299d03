/**
 * Calls waiting, per key, for something to become available (a site's channel in the cloud, a
 * device's client in the collector), each for at most its own time. Whoever makes it available
 * wakes the key's waiters; a waiter resolves to what `current(key)` gives at the moment it is
 * woken or times out (still nothing, after a timeout or a wake-all at shutdown), so the caller
 * never acts on a stale value.
 */
export class KeyedWaiters<T> {
  private readonly waiters = new Map<string, Set<() => void>>();

  constructor(private readonly current: (key: string) => T) {}

  wait(key: string, ms: number): Promise<T> {
    return new Promise((resolve) => {
      let set = this.waiters.get(key);
      if (!set) this.waiters.set(key, (set = new Set()));
      const wake = (): void => {
        clearTimeout(timer);
        set.delete(wake);
        if (set.size === 0 && this.waiters.get(key) === set) this.waiters.delete(key);
        resolve(this.current(key));
      };
      const timer = setTimeout(wake, ms);
      set.add(wake);
    });
  }

  has(key: string): boolean {
    return this.waiters.has(key);
  }

  wake(key: string): void {
    for (const wake of this.waiters.get(key) ?? []) wake();
  }

  /** Wakes every waiter (shutdown): each gets what is there now. */
  wakeAll(): void {
    for (const set of this.waiters.values()) for (const wake of set) wake();
  }
}
