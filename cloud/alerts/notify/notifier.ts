/**
 * Notification delivery. The alert engine writes one row per (notification, destination) into
 * `alert_notifications` in the same transaction as the alert change (nothing decided is lost on a
 * crash); one loop per destination sends them in order. Each destination has its own loop, rate
 * limit and backoff, so a destination that is down (or slow: every send has a timeout) delays only
 * its own queue — never ingest, never the other destinations. Retryable failures back off with
 * full jitter (head of line: the queue keeps its order, `resolved` never overtakes `firing`); a
 * notification that fails for good, or past `maxAttempts` / `maxAgeMs`, goes to the dead letter
 * (state `dead`, with its last error): listed by `GET /v1/alert-notifications?state=dead`, counted,
 * and re-queued by `POST /v1/alert-notifications/{id}/retry`.
 */
import { Backoff, sleep } from '../../../common/backoff.js';
import { errorMessage } from '../../../common/errors.js';
import type { Logger } from '../../../common/log.js';
import { counter, type Registry } from '../../../common/metrics.js';
import { TokenBuckets } from '../../../common/token-bucket.js';
import type { Queryable, Store } from '../../store/store.js';
import { Where } from '../../store/where.js';
import type { NotificationBody } from '../types.js';
import { DESTINATION_DEFAULTS, type ResolvedDestination, type Severity } from './destinations.js';
import { createSender, DeliveryError, type Sender } from './senders.js';

export interface NotifyRetryConfig {
  initialMs: number;
  maxMs: number;
  maxAttempts: number;
  /** A notification older than this is dead-lettered instead of retried (an alert from yesterday is noise). */
  maxAgeMs: number;
}

export type NotificationState = 'pending' | 'sent' | 'dead';

export interface NotificationRecord {
  id: number;
  destination: string;
  alertId: string;
  event: 'firing' | 'resolved';
  state: NotificationState;
  attempts: number;
  createdAt: string;
  sentAt: string | null;
  nextAt: string;
  lastError: string | null;
}

interface Row {
  id: number;
  destination: string;
  alert_id: string;
  event: 'firing' | 'resolved';
  body: string;
  state: NotificationState;
  attempts: number;
  next_at: number;
  created_at: number;
  sent_at: number | null;
  last_error: string | null;
}

const RANK: Record<Severity, number> = { info: 0, warning: 1, critical: 2 };

/** Destination ids that take this alert: the rule's list (or all), filtered by each one's minSeverity. */
export function destinationsFor(all: readonly ResolvedDestination[], wanted: readonly string[], severity: Severity): string[] {
  return all
    .filter((d) => (wanted.length === 0 || wanted.includes(d.id)) && RANK[severity] >= RANK[d.minSeverity ?? 'info'])
    .map((d) => d.id);
}

/** Queues a notification for each destination, inside the caller's transaction. */
export async function enqueueNotification(q: Queryable, destinations: readonly string[], n: NotificationBody, now: number): Promise<void> {
  const body = JSON.stringify(n);
  for (const d of destinations) {
    await q.run(
      'INSERT INTO alert_notifications (destination, alert_id, event, body, state, attempts, next_at, created_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?)',
      [d, n.alert.id, n.event, body, 'pending', now, now],
    );
  }
}

export interface NotifierOptions {
  store: Store;
  destinations: readonly ResolvedDestination[];
  retry: NotifyRetryConfig;
  log: Logger;
  registry: Registry;
  /** Longest a loop sleeps without a poke (new rows from another replica are found within it). */
  pollMs?: number;
  now?: () => number;
}

export class Notifier {
  private readonly senders = new Map<string, Sender>();
  private readonly buckets = new Map<string, TokenBuckets>();
  private readonly wakers = new Map<string, () => void>();
  /** Destinations poked while busy: their next wait returns at once (a poke is never lost). */
  private readonly poked = new Set<string>();
  private readonly loops: Promise<void>[] = [];
  private readonly stopping = new AbortController();
  private readonly now: () => number;
  private readonly mSent;
  private readonly mFailed;

  constructor(private readonly o: NotifierOptions) {
    this.now = o.now ?? Date.now;
    for (const d of o.destinations) {
      this.senders.set(d.id, createSender(d, this.now));
      const perMin = d.ratePerMin ?? DESTINATION_DEFAULTS.ratePerMin;
      this.buckets.set(d.id, new TokenBuckets(perMin / 60, d.burst ?? DESTINATION_DEFAULTS.burst, this.now));
    }
    this.mSent = counter(o.registry, 'edgetwin_cloud_notifications_sent_total', 'Alert notifications delivered', ['destination', 'event']);
    this.mFailed = counter(
      o.registry,
      'edgetwin_cloud_notifications_failed_total',
      'Alert notification attempts that failed; outcome retry or dead (dead-lettered)',
      ['destination', 'outcome'],
    );
  }

  get destinationIds(): string[] {
    return [...this.senders.keys()];
  }

  start(): void {
    for (const id of this.senders.keys()) this.loops.push(this.loop(id));
  }

  /** New rows were queued: wake the loops now instead of at their next poll. */
  poke(): void {
    for (const id of this.senders.keys()) this.poked.add(id);
    for (const w of this.wakers.values()) w();
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    this.poke();
    await Promise.allSettled(this.loops);
    for (const s of this.senders.values()) s.close();
  }

  private async loop(destination: string): Promise<void> {
    const backoff = new Backoff({ initialMs: this.o.retry.initialMs, maxMs: this.o.retry.maxMs });
    const signal = this.stopping.signal;
    while (!signal.aborted) {
      let waitMs: number;
      try {
        waitMs = await this.deliverNext(destination, backoff);
      } catch (err) {
        // The database itself failed (PostgreSQL restarting): try again shortly, nothing is lost.
        this.o.log.warn({ err, destination }, 'notification queue unavailable');
        waitMs = backoff.next();
      }
      if (waitMs > 0) await this.wait(destination, waitMs, signal);
    }
  }

  private wait(destination: string, ms: number, signal: AbortSignal): Promise<void> {
    if (this.poked.delete(destination)) return Promise.resolve();
    const ac = new AbortController();
    const onAbort = (): void => ac.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    this.wakers.set(destination, onAbort);
    return sleep(ms, ac.signal).finally(() => signal.removeEventListener('abort', onAbort));
  }

  /** Sends the oldest due notification of one destination; answers how long to wait before the next try. */
  async deliverNext(
    destination: string,
    backoff = new Backoff({ initialMs: this.o.retry.initialMs, maxMs: this.o.retry.maxMs }),
  ): Promise<number> {
    const pollMs = this.o.pollMs ?? 5000;
    const row = await this.o.store.get<Row>(
      "SELECT * FROM alert_notifications WHERE destination = ? AND state = 'pending' ORDER BY id LIMIT 1",
      [destination],
    );
    if (!row) return pollMs;
    const now = this.now();
    if (row.next_at > now) return Math.min(pollMs, row.next_at - now);
    const limitWait = this.buckets.get(destination)!.take(destination);
    if (limitWait > 0) return limitWait;
    const sender = this.senders.get(destination);
    if (!sender) {
      await this.dead(row, `destination ${destination} is no longer configured`);
      return 0;
    }
    try {
      await sender.send(JSON.parse(row.body) as NotificationBody, `n${row.id}`);
    } catch (err) {
      const retryable = err instanceof DeliveryError ? err.retryable : true;
      const attempts = row.attempts + 1;
      const tooOld = this.now() - row.created_at > this.o.retry.maxAgeMs;
      if (!retryable || attempts >= this.o.retry.maxAttempts || tooOld) {
        const why = !retryable ? 'refused' : tooOld ? 'too old' : `${attempts} attempts`;
        await this.dead(row, `${errorMessage(err)} (${why})`, attempts);
        return 0;
      }
      const delay = Math.max(backoff.next(), err instanceof DeliveryError ? (err.retryAfterMs ?? 0) : 0);
      await this.o.store.run('UPDATE alert_notifications SET attempts = ?, next_at = ?, last_error = ? WHERE id = ?', [
        attempts,
        this.now() + delay,
        errorMessage(err).slice(0, 500),
        row.id,
      ]);
      this.mFailed.inc({ destination, outcome: 'retry' });
      this.o.log.warn({ destination, attempts, retryInMs: delay, err }, 'notification not delivered; will retry');
      return delay;
    }
    backoff.reset();
    await this.o.store.run("UPDATE alert_notifications SET state = 'sent', attempts = ?, sent_at = ?, last_error = NULL WHERE id = ?", [
      row.attempts + 1,
      this.now(),
      row.id,
    ]);
    this.mSent.inc({ destination, event: row.event });
    return 0;
  }

  private async dead(row: Row, error: string, attempts = row.attempts): Promise<void> {
    await this.o.store.run("UPDATE alert_notifications SET state = 'dead', attempts = ?, last_error = ? WHERE id = ?", [
      attempts,
      error.slice(0, 500),
      row.id,
    ]);
    this.mFailed.inc({ destination: row.destination, outcome: 'dead' });
    this.o.log.error(
      { destination: row.destination, alert: row.alert_id, code: 'EDGETWIN_ERR_NOTIFY', err: error },
      'notification dead-lettered',
    );
  }

  async list(q: { state?: NotificationState; alertId?: string; limit: number }): Promise<NotificationRecord[]> {
    const where = new Where();
    if (q.state) where.add('state = ?', q.state);
    if (q.alertId) where.add('alert_id = ?', q.alertId);
    const rows = await this.o.store.all<Row>(`SELECT * FROM alert_notifications ${where.clause} ORDER BY id DESC LIMIT ?`, [
      ...where.params,
      q.limit,
    ]);
    return rows.map((r) => ({
      id: r.id,
      destination: r.destination,
      alertId: r.alert_id,
      event: r.event,
      state: r.state,
      attempts: r.attempts,
      createdAt: new Date(r.created_at).toISOString(),
      sentAt: r.sent_at === null ? null : new Date(r.sent_at).toISOString(),
      nextAt: new Date(r.next_at).toISOString(),
      lastError: r.last_error,
    }));
  }

  /** Puts a dead-lettered notification back in its queue; false when there is no such dead letter. */
  async retry(id: number, q: Queryable = this.o.store): Promise<boolean> {
    const r = await q.run(
      "UPDATE alert_notifications SET state = 'pending', attempts = 0, next_at = ?, created_at = ? WHERE id = ? AND state = 'dead'",
      [this.now(), this.now(), id],
    );
    if (r.changes > 0 && q === this.o.store) this.poke();
    return r.changes > 0;
  }

  /** Forgets delivered notifications older than `ms` (dead letters stay until retried or handled). */
  async prune(ms: number): Promise<number> {
    return (await this.o.store.run("DELETE FROM alert_notifications WHERE state = 'sent' AND sent_at < ?", [this.now() - ms])).changes;
  }
}
