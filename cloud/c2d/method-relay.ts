/**
 * Method calls across replicas (store.kind postgres): the replica that took the API call may not
 * hold the channel of the device's site. It writes the call to `method_calls` and wakes the others
 * (bus `c2d-methods`); the replica holding the site's channel takes it (an UPDATE only one can win),
 * forwards it, writes the answer and wakes `c2d-method-results`; the caller's replica reads it. The
 * bus carries no data, so a lost wake-up costs one poll interval, never the call.
 *
 * `site_channels` says which replica holds which site (refreshed every few seconds): a call for a
 * site no replica holds fails at once with EDGETWIN_ERR_DEVICE_NOT_ONLINE when connectTimeoutS is 0.
 */
import { randomUUID } from 'node:crypto';
import { EdgetwinError, ErrorCodes, errorMessage, isErrorCode } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { placeholders, type Store } from '../store/store.js';
import type { MethodAnswer, MethodCall, SiteChannel } from './site-channel.js';

export const METHODS_CHANNEL = 'c2d-methods';
export const RESULTS_CHANNEL = 'c2d-method-results';
/** A holder row older than this is a replica that died without saying so. */
const HOLDER_STALE_MS = 15_000;
const HEARTBEAT_MS = 5000;
const POLL_MS = 500;
/** How long an unclaimed call waits for a replica to take it, beyond its connect timeout. */
const TAKE_GRACE_MS = 1500;
/** Finished and abandoned rows are deleted after this long. */
const KEEP_MS = 10 * 60_000;

interface CallRow {
  id: string;
  site: string;
  device: string;
  method: string;
  payload: string;
  response_timeout_ms: number;
  connect_timeout_ms: number;
  state: string;
  result: string | null;
}

interface Waiter {
  resolve: (a: MethodAnswer) => void;
  reject: (err: Error) => void;
}

export class MethodRelay {
  readonly replica = randomUUID();
  private readonly waiting = new Map<string, Waiter>();
  private readonly offs: (() => void)[] = [];
  private timer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private taking = false;
  private takeAgain = false;
  private collecting = false;
  private collectAgain = false;

  constructor(
    private readonly store: Store,
    private readonly channel: (site: string) => SiteChannel | undefined,
    private readonly mySites: () => string[],
    private readonly log: Logger,
  ) {}

  start(): void {
    this.offs.push(this.store.bus.on(METHODS_CHANNEL, () => void this.take()));
    this.offs.push(this.store.bus.on(RESULTS_CHANNEL, () => void this.collect()));
    this.timer = setInterval(() => {
      if (this.mySites().length > 0) void this.take();
      if (this.waiting.size > 0) void this.collect();
    }, POLL_MS);
    this.timer.unref();
    this.heartbeat = setInterval(() => void this.refresh(), HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  async stop(): Promise<void> {
    for (const off of this.offs) off();
    clearInterval(this.timer);
    clearInterval(this.heartbeat);
    for (const [id, w] of this.waiting) {
      this.waiting.delete(id);
      w.reject(new EdgetwinError(ErrorCodes.CLOSED, 'cloud stopping'));
    }
    await this.store.run('DELETE FROM site_channels WHERE replica = ?', [this.replica]).catch(() => undefined);
  }

  /** This replica now holds (or no longer holds) the site's channel. */
  async holding(site: string, held: boolean): Promise<void> {
    if (held) {
      await this.store.run(
        'INSERT INTO site_channels (site, replica, seen) VALUES (?, ?, ?) ON CONFLICT (site) DO UPDATE SET replica = excluded.replica, seen = excluded.seen',
        [site, this.replica, Date.now()],
      );
      void this.take();
    } else {
      await this.store.run('DELETE FROM site_channels WHERE site = ? AND replica = ?', [site, this.replica]);
    }
  }

  /** True when some replica (fresh) says it holds the site's channel. */
  async held(site: string): Promise<boolean> {
    const r = await this.store.get('SELECT 1 AS x FROM site_channels WHERE site = ? AND seen > ?', [site, Date.now() - HOLDER_STALE_MS]);
    return r !== undefined;
  }

  /** Hands a call to whichever replica holds the site's channel and waits for its answer. */
  async call(site: string, call: MethodCall): Promise<MethodAnswer> {
    const now = Date.now();
    await this.store.run(
      `INSERT INTO method_calls (id, site, device, method, payload, response_timeout_ms, connect_timeout_ms, created, state)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')`,
      [call.id, site, call.device, call.method, JSON.stringify(call.payload ?? null), call.responseTimeoutMs, call.connectTimeoutMs, now],
    );
    this.store.bus.notify(METHODS_CHANNEL);
    return new Promise<MethodAnswer>((resolve, reject) => {
      const untaken = setTimeout(() => {
        // Nobody took it: withdraw it (unless a replica took it just now).
        void this.store.run("UPDATE method_calls SET state = 'cancelled' WHERE id = ? AND state = 'pending'", [call.id]).then((r) => {
          if (r.changes === 0 || !this.waiting.delete(call.id)) return;
          clearTimeout(overall);
          reject(notOnline(site, call.device));
        });
      }, call.connectTimeoutMs + TAKE_GRACE_MS);
      const overall = setTimeout(
        () => {
          if (!this.waiting.delete(call.id)) return;
          clearTimeout(untaken);
          void this.store.run("UPDATE method_calls SET state = 'abandoned' WHERE id = ?", [call.id]).catch(() => undefined);
          reject(new EdgetwinError(ErrorCodes.METHOD_TIMEOUT, `no answer from site ${site} in time`, { details: { site } }));
        },
        call.connectTimeoutMs + call.responseTimeoutMs + TAKE_GRACE_MS + 2000,
      );
      this.waiting.set(call.id, {
        resolve: (a) => {
          clearTimeout(untaken);
          clearTimeout(overall);
          resolve(a);
        },
        reject: (e) => {
          clearTimeout(untaken);
          clearTimeout(overall);
          reject(e);
        },
      });
    });
  }

  /** Takes the pending calls of the sites whose channels this replica holds, and forwards them. */
  private async take(): Promise<void> {
    if (this.mySites().length === 0) return;
    // A wake-up during a run is not lost: the run goes round once more.
    if (this.taking) return void (this.takeAgain = true);
    this.taking = true;
    try {
      do {
        this.takeAgain = false;
        await this.takeOnce(this.mySites());
      } while (this.takeAgain);
    } finally {
      this.taking = false;
    }
  }

  private async takeOnce(sites: string[]): Promise<void> {
    if (sites.length === 0) return;
    try {
      const rows = await this.store.all<CallRow>(
        // A call whose caller has given up waiting for a taker (or died) is never run late.
        `SELECT * FROM method_calls WHERE state = 'pending' AND created + connect_timeout_ms + ? > ? AND site IN (${placeholders(sites.length)})
         ORDER BY created LIMIT 500`,
        [TAKE_GRACE_MS, Date.now(), ...sites],
      );
      for (const r of rows) {
        const won = await this.store.run("UPDATE method_calls SET state = 'taken', taken_by = ? WHERE id = ? AND state = 'pending'", [
          this.replica,
          r.id,
        ]);
        if (won.changes === 1) void this.forward(r);
      }
    } catch (err) {
      this.log.warn({ err }, 'method relay: taking calls failed (retried at the next poll)');
    }
  }

  private async forward(r: CallRow): Promise<void> {
    const ch = this.channel(r.site);
    let result: { status: number; payload: unknown } | { code: string; message: string };
    try {
      if (!ch) throw notOnline(r.site, r.device);
      result = await ch.invoke({
        id: r.id,
        device: r.device,
        method: r.method,
        payload: JSON.parse(r.payload) as unknown,
        responseTimeoutMs: Number(r.response_timeout_ms),
        connectTimeoutMs: Number(r.connect_timeout_ms),
      });
    } catch (err) {
      const code = err instanceof EdgetwinError ? err.code : ErrorCodes.GATEWAY;
      result = { code, message: errorMessage(err) };
    }
    await this.store.run("UPDATE method_calls SET state = 'done', result = ? WHERE id = ? AND state = 'taken'", [
      JSON.stringify(result),
      r.id,
    ]);
    this.store.bus.notify(RESULTS_CHANNEL);
  }

  /** Reads the answers of this replica's waiting calls. */
  private async collect(): Promise<void> {
    if (this.waiting.size === 0) return;
    if (this.collecting) return void (this.collectAgain = true);
    this.collecting = true;
    try {
      do {
        this.collectAgain = false;
        await this.collectOnce();
      } while (this.collectAgain && this.waiting.size > 0);
    } finally {
      this.collecting = false;
    }
  }

  private async collectOnce(): Promise<void> {
    try {
      const ids = [...this.waiting.keys()];
      for (let i = 0; i < ids.length; i += 500) {
        const chunk = ids.slice(i, i + 500);
        const rows = await this.store.all<CallRow>(
          `SELECT * FROM method_calls WHERE state = 'done' AND id IN (${placeholders(chunk.length)})`,
          chunk,
        );
        for (const r of rows) {
          const w = this.waiting.get(r.id);
          if (!w) continue;
          this.waiting.delete(r.id);
          const res = JSON.parse(r.result ?? '{}') as { status?: number; payload?: unknown; code?: string; message?: string };
          if (typeof res.status === 'number') w.resolve({ status: res.status, payload: res.payload });
          else
            w.reject(
              new EdgetwinError(isErrorCode(res.code) ? res.code : ErrorCodes.GATEWAY, res.message ?? 'failed', {
                details: { site: r.site },
              }),
            );
        }
        // Only the rows read: one that became done since the SELECT is collected next time, not deleted unread.
        const read = rows.map((r) => r.id);
        if (read.length > 0) await this.store.run(`DELETE FROM method_calls WHERE id IN (${placeholders(read.length)})`, read);
      }
    } catch (err) {
      this.log.warn({ err }, 'method relay: reading answers failed (retried at the next poll)');
    }
  }

  private async refresh(): Promise<void> {
    try {
      const now = Date.now();
      const sites = this.mySites();
      if (sites.length > 0)
        await this.store.run(`UPDATE site_channels SET seen = ? WHERE replica = ? AND site IN (${placeholders(sites.length)})`, [
          now,
          this.replica,
          ...sites,
        ]);
      await this.store.run('DELETE FROM method_calls WHERE created < ?', [now - KEEP_MS]);
    } catch (err) {
      this.log.debug({ err: errorMessage(err) }, 'method relay: heartbeat failed');
    }
  }
}

function notOnline(site: string, device: string): EdgetwinError {
  return new EdgetwinError(ErrorCodes.DEVICE_NOT_ONLINE, `device ${device} is not online: no collector of site ${site} is connected`, {
    details: { site, device },
  });
}
