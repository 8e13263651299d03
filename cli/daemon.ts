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

export async function runDaemon(name: string, daemon: Daemon, readyInfo: () => Record<string, unknown>): Promise<void> {
  let stopping = false;
  const sd = createSdNotifier();
  const stop = async (why: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    sd.stop();
    const force = setTimeout(() => {
      process.stderr.write(`${name}: shutdown took too long, exiting\n`);
      process.exit(1);
    }, 15_000);
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
