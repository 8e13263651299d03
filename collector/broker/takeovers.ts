/**
 * Session takeovers: a device connecting while a connection of the same device id is open takes
 * its place (MQTT-3.1.4-2, as IoT Hub does). Once is normal — an agent reconnecting before the
 * broker noticed its old connection was dead. Again and again is two devices (two agents, a cloned
 * image with its state directory) sharing one id: they kick each other off in turn, and since both
 * number their readings (device, epoch, seq) from the same start, the cloud keeps one reading of each
 * identity and counts the other as a duplicate — readings lost without an error anywhere. The
 * collector cannot tell which copy is the right one, so it cannot refuse either; it says so loudly:
 * `edgetwin_broker_session_takeovers_total`, and an error log naming the device and both addresses
 * once `FLAPPING` takeovers happen within `WINDOW_MS` (at most once per window and device).
 */
import type { Socket } from 'node:net';
import type { Client } from 'aedes';
import { ErrorCodes } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { counter, type Registry } from '../../common/metrics.js';

const WINDOW_MS = 60_000;
const FLAPPING = 3;

/** The peer address of a client's connection (TCP, TLS or the socket under a WebSocket). */
function address(c: Client): string {
  const sock = (c.req?.socket ?? c.conn) as Partial<Socket>;
  return sock.remoteAddress ?? 'unknown';
}

export class TakeoverWatch {
  private readonly mTakeovers;
  /** Per device: takeovers in the current window, when it began, whether it was reported. */
  private readonly recent = new Map<string, { since: number; count: number; reported: boolean }>();

  constructor(
    registry: Registry,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.mTakeovers = counter(
      registry,
      'edgetwin_broker_session_takeovers_total',
      'Connections that replaced an open connection of the same device id; a steady rate means two devices share one id',
    );
  }

  /** `previous` is the open connection `next` (authenticated as `device`) is about to replace. */
  taken(device: string, previous: Client, next: Client): void {
    this.mTakeovers.inc();
    const now = this.now();
    let r = this.recent.get(device);
    if (!r || now - r.since > WINDOW_MS) {
      r = { since: now, count: 0, reported: false };
      this.recent.set(device, r);
    }
    r.count++;
    const where = { device, previous: address(previous), next: address(next) };
    if (r.count < FLAPPING || r.reported) return this.log.info(where, 'device connected again: its previous connection is closed');
    r.reported = true;
    this.log.error(
      { ...where, takeovers: r.count, windowS: WINDOW_MS / 1000, code: ErrorCodes.CONFLICT },
      'two connections keep taking this device id over from each other: two devices or agents seem to share this id, ' +
        'and readings with the same identity are stored once — give each its own deviceId',
    );
    // Bounded: windows that ended are forgotten.
    if (this.recent.size > 10_000) for (const [d, x] of this.recent) if (now - x.since > WINDOW_MS) this.recent.delete(d);
  }
}
