/**
 * systemd readiness and watchdog. Node cannot send unix datagrams itself, so this calls
 * `systemd-notify` (the units set NotifyAccess=all for that reason). A watchdog ping is sent only
 * while `healthy()` holds, so a wedged daemon is restarted by systemd.
 */
import { execFile } from 'node:child_process';

export interface SdNotifier {
  ready(): void;
  /** Starts pinging at half the watchdog interval while `healthy()` is true. */
  startWatchdog(healthy: () => boolean): void;
  stop(): void;
}

function notify(state: string): void {
  execFile('systemd-notify', [state], { timeout: 5000 }, () => {
    // Best effort: a missed ping is what the watchdog is for.
  });
}

export function createSdNotifier(env: NodeJS.ProcessEnv = process.env, send: (state: string) => void = notify): SdNotifier {
  const active = Boolean(env['NOTIFY_SOCKET']);
  const watchdogUs = Number(env['WATCHDOG_USEC'] ?? 0);
  let timer: NodeJS.Timeout | undefined;
  return {
    ready() {
      if (active) send('--ready');
    },
    startWatchdog(healthy) {
      if (!active || !(watchdogUs > 0)) return;
      timer = setInterval(
        () => {
          if (healthy()) send('WATCHDOG=1');
        },
        Math.max(1000, Math.floor(watchdogUs / 2000)),
      );
      timer.unref();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
      if (active) send('STOPPING=1');
    },
  };
}
