/**
 * Runs one daemon in the foreground: starts it, tells a parent process (demo, tests) it is ready
 * over IPC, and shuts it down gracefully on SIGINT/SIGTERM — or when the parent that spawned it
 * goes away, so a killed demo never leaves orphans behind.
 */
import { errorMessage } from '../common/errors.js';
import { createSdNotifier } from '../common/sd-notify.js';

export interface Daemon {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * `forceExitMs`: how long a graceful stop may take before the process exits anyway (code 1). The
 * cloud passes 9 s: SIGTERM must end it within 10 s whatever its lakehouse writer is doing (issue 13);
 * what it acknowledged is durable already, and an unfinished flush is redone at the next start.
 */
export async function runDaemon(
  name: string,
  daemon: Daemon,
  readyInfo: () => Record<string, unknown>,
  forceExitMs = 15_000,
): Promise<void> {
  let stopping = false;
  const sd = createSdNotifier();
  const stop = async (why: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    sd.stop();
    const force = setTimeout(() => {
      process.stderr.write(`${name}: shutdown took too long, exiting\n`);
      process.exit(1);
    }, forceExitMs);
    force.unref();
    try {
      await daemon.stop();
      process.exitCode = process.exitCode ?? 0;
    } catch (err) {
      process.stderr.write(`${name}: error during shutdown (${why}): ${errorMessage(err)}\n`);
      process.exitCode = 1;
    } finally {
      clearTimeout(force);
      if (process.connected) process.disconnect();
    }
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
  if (process.send) process.once('disconnect', () => void stop('parent gone'));
  await daemon.start();
  sd.ready();
  // The ping proves the event loop is not wedged. It is deliberately not tied to /healthz: a dead
  // sensor or an unreachable cloud must not make systemd restart a daemon that is buffering fine.
  sd.startWatchdog(() => !stopping);
  if (process.send) process.send({ type: 'ready', name, ...readyInfo() });
}
