/**
 * How a file replay runs, shared by the CSV and C-MAPSS replays: in the background, once or (with
 * `loop`) again from the top until the source is stopped. A replay that ends on its own finishes
 * the source, so the agent does not start it again; one that throws fails it, so the agent starts
 * it again after a backoff.
 */
import type { SourceContext } from '../types.js';

export function runReplay(ctx: SourceContext, loop: boolean, replayOnce: () => Promise<void>): void {
  const run = async (): Promise<void> => {
    do {
      await replayOnce();
    } while (loop && !ctx.signal.aborted);
  };
  void run().then(
    () => {
      if (!ctx.signal.aborted) ctx.finished();
    },
    (err) => ctx.fail(err),
  );
}
