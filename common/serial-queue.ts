/**
 * Runs tasks one at a time, in the order they were queued: a scorer's per-stream state must see
 * readings in order, and a model swap or close must fall between batches, never inside one. A
 * failed task rejects only its own caller; the tasks behind it still run.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => T | Promise<T>): Promise<T> {
    const run = this.tail.then(task);
    this.tail = run.catch(() => undefined);
    return run;
  }
}
