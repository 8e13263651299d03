/**
 * A job that runs again and again on a timer of its own, never two runs at once: when a run ends,
 * `next` picks the delay to the following one (undefined: none until schedule() is called, e.g. a
 * leased job whose lease is gone); schedule() during a run asks for one more run right after it
 * instead of a second run beside it; stop() waits for the run in flight. The timer is unref'd, so
 * the job never keeps a process alive. The alert engine and the audit exporter run on it.
 */
export class RerunTimer {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private again = false;
  private stopped = false;

  constructor(
    private readonly o: {
      run: () => Promise<unknown>;
      /** Delay to the next run once one has ended; undefined: none planned. */
      next: () => number | undefined;
      /** A failed run is reported here; the timer goes on. */
      onError: (err: unknown) => void;
    },
  ) {}

  /** Plans the next run in `ms` (replacing one already planned); while a run is in flight, one more right after it. */
  schedule(ms: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.fire(), ms);
    this.timer.unref();
  }

  /** Drops the planned run; a run in flight still ends and asks `next`. */
  cancel(): void {
    clearTimeout(this.timer);
  }

  /** No more runs; resolves once the one in flight has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private fire(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.o
      .run()
      .catch(this.o.onError)
      .finally(() => {
        this.running = undefined;
        const again = this.again;
        this.again = false;
        if (this.stopped) return;
        const next = this.o.next();
        if (next !== undefined) this.schedule(again ? 0 : next);
      });
  }
}
