/**
 * The collector's durable queue of device-bound messages (`<stateDir>/c2d.db`, synchronous FULL:
 * the cloud forgets a message's routing once the collector says it is queued). Per device in
 * arrival order, bounded per device; every message ends in exactly one feedback entry
 * (delivered, expired, rejected) that waits here until the cloud has stored it. Ids of finished
 * messages are kept (tombstones) until the message would have expired anyway, so a message the
 * cloud sends again — a resend after a reconnect that crossed our acknowledgement — is never
 * delivered twice.
 */
import type { Logger } from '../../common/log.js';
import { ErrorCodes } from '../../common/errors.js';
import { openDatabase, type SqliteDb } from '../../common/sqlite.js';
import type { DeviceBoundMessage, MessageFeedback, MessageOutcome } from '../../common/wire/c2d-protocol.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS messages (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, device TEXT NOT NULL, body TEXT NOT NULL,
  properties TEXT NOT NULL, correlation_id TEXT, enqueued_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_device ON messages (device, seq);
CREATE INDEX IF NOT EXISTS messages_expiry ON messages (expires_at);
CREATE TABLE IF NOT EXISTS feedback (
  id TEXT PRIMARY KEY, device TEXT NOT NULL, outcome TEXT NOT NULL, at INTEGER NOT NULL, code TEXT, reason TEXT
);
CREATE TABLE IF NOT EXISTS finished (id TEXT PRIMARY KEY, until INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS finished_until ON finished (until);
`;

interface Row {
  seq: number;
  id: string;
  device: string;
  body: string;
  properties: string;
  correlation_id: string | null;
  enqueued_at: number;
  expires_at: number;
  attempts: number;
}

export interface QueuedMessage extends DeviceBoundMessage {
  attempts: number;
}

export interface AcceptResult {
  /** Every id of the batch: each is now queued or has its feedback here. */
  ids: string[];
  /** Devices with new messages to deliver. */
  devices: Set<string>;
  /** Feedback created on arrival (already expired, queue full, unknown device). */
  feedback: MessageFeedback[];
}

export class MessageStore {
  readonly db: SqliteDb;
  private readonly s;

  constructor(
    path: string,
    private readonly maxPerDevice: number,
    log?: Logger,
  ) {
    this.db = openDatabase({ path, synchronous: 'full', log, schema: SCHEMA }).db;
    const db = this.db;
    this.s = {
      known: db.prepare<[string, string, string], { n: number }>(
        'SELECT (SELECT count(*) FROM messages WHERE id = ?) + (SELECT count(*) FROM feedback WHERE id = ?) + (SELECT count(*) FROM finished WHERE id = ?) AS n',
      ),
      depthOf: db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM messages WHERE device = ?'),
      insert: db.prepare(
        'INSERT INTO messages (id, device, body, properties, correlation_id, enqueued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      forDevice: db.prepare<[string, number], Row>('SELECT * FROM messages WHERE device = ? ORDER BY seq LIMIT ?'),
      one: db.prepare<[string], Row>('SELECT * FROM messages WHERE id = ?'),
      del: db.prepare('DELETE FROM messages WHERE id = ?'),
      attempt: db.prepare('UPDATE messages SET attempts = attempts + 1 WHERE id = ?'),
      feedback: db.prepare('INSERT OR IGNORE INTO feedback (id, device, outcome, at, code, reason) VALUES (?, ?, ?, ?, ?, ?)'),
      finish: db.prepare('INSERT OR REPLACE INTO finished (id, until) VALUES (?, ?)'),
      expired: db.prepare<[number], Row>('SELECT * FROM messages WHERE expires_at <= ? ORDER BY seq'),
      nextExpiry: db.prepare<[], { t: number | null }>('SELECT min(expires_at) AS t FROM messages'),
      unsent: db.prepare<[number], { id: string; device: string; outcome: string; at: number; code: string | null; reason: string | null }>(
        'SELECT * FROM feedback ORDER BY at, id LIMIT ?',
      ),
      ackFeedback: db.prepare('DELETE FROM feedback WHERE id = ?'),
      purge: db.prepare('DELETE FROM finished WHERE until <= ?'),
      depth: db.prepare<[], { rows: number; devices: number }>('SELECT count(*) AS rows, count(DISTINCT device) AS devices FROM messages'),
      feedbackDepth: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM feedback'),
    };
  }

  /**
   * Takes a batch from the cloud in one transaction. A message already known (queued, finished,
   * or with feedback) is only acknowledged again; one that expired on the way, or that does not
   * fit its device's queue, or whose device `refuse` names, gets its feedback at once.
   */
  accept(items: readonly DeviceBoundMessage[], now: number, refuse?: (device: string) => string | undefined): AcceptResult {
    const out: AcceptResult = { ids: [], devices: new Set(), feedback: [] };
    this.db.transaction(() => {
      for (const m of items) {
        out.ids.push(m.id);
        if (this.s.known.get(m.id, m.id, m.id)!.n > 0) continue;
        const refusal = refuse?.(m.device);
        if (m.expiresAt <= now) out.feedback.push(this.finishNew(m, 'expired', now));
        else if (refusal !== undefined) out.feedback.push(this.finishNew(m, 'rejected', now, ErrorCodes.NOT_FOUND, refusal));
        else if (this.s.depthOf.get(m.device)!.n >= this.maxPerDevice) {
          out.feedback.push(
            this.finishNew(
              m,
              'rejected',
              now,
              ErrorCodes.DEVICE_QUEUE_FULL,
              `the device's queue holds ${this.maxPerDevice} messages already`,
            ),
          );
        } else {
          this.s.insert.run(m.id, m.device, m.body, JSON.stringify(m.properties), m.correlationId ?? null, m.enqueuedAt, m.expiresAt);
          out.devices.add(m.device);
        }
      }
    })();
    return out;
  }

  /** The oldest `limit` queued messages of a device. */
  queued(device: string, limit: number): QueuedMessage[] {
    return this.s.forDevice.all(device, limit).map(toMessage);
  }

  /** Counts a delivery attempt (a PUBLISH written to the device). */
  attempted(id: string): void {
    this.s.attempt.run(id);
  }

  /** The device acknowledged the message (PUBACK): it leaves the queue with feedback `delivered`. */
  delivered(id: string, now: number): MessageFeedback | undefined {
    let fb: MessageFeedback | undefined;
    this.db.transaction(() => {
      const row = this.s.one.get(id);
      if (!row) return;
      this.s.del.run(id);
      fb = this.finishNew(toMessage(row), 'delivered', now);
    })();
    return fb;
  }

  /** Messages whose time is up leave the queue with feedback `expired`. */
  expire(now: number): MessageFeedback[] {
    const out: MessageFeedback[] = [];
    this.db.transaction(() => {
      for (const row of this.s.expired.all(now)) {
        this.s.del.run(row.id);
        out.push(this.finishNew(toMessage(row), 'expired', now));
      }
      this.s.purge.run(now);
    })();
    return out;
  }

  /** When the next queued message expires (ms since the epoch), if any. */
  nextExpiry(): number | undefined {
    return this.s.nextExpiry.get()?.t ?? undefined;
  }

  /** Feedback the cloud has not confirmed yet, oldest first. */
  unsentFeedback(limit: number): MessageFeedback[] {
    return this.s.unsent.all(limit).map((r) => ({
      id: r.id,
      device: r.device,
      outcome: r.outcome as MessageOutcome,
      at: r.at,
      ...(r.code ? { code: r.code } : {}),
      ...(r.reason ? { reason: r.reason } : {}),
    }));
  }

  /** The cloud stored this feedback: forget it (the tombstone stays). */
  ackFeedback(ids: readonly string[]): void {
    this.db.transaction(() => {
      for (const id of ids) this.s.ackFeedback.run(id);
    })();
  }

  depth(): { messages: number; devices: number; feedback: number } {
    const d = this.s.depth.get()!;
    return { messages: d.rows, devices: d.devices, feedback: this.s.feedbackDepth.get()!.n };
  }

  close(): void {
    this.db.close();
  }

  private finishNew(m: DeviceBoundMessage, outcome: MessageOutcome, now: number, code?: string, reason?: string): MessageFeedback {
    this.s.feedback.run(m.id, m.device, outcome, now, code ?? null, reason ?? null);
    // Kept until the message could no longer be delivered anyway (and at least an hour).
    this.s.finish.run(m.id, Math.max(m.expiresAt, now + 3600_000));
    return { id: m.id, device: m.device, outcome, at: now, ...(code ? { code } : {}), ...(reason ? { reason } : {}) };
  }
}

function toMessage(r: Row): QueuedMessage {
  return {
    id: r.id,
    device: r.device,
    body: r.body,
    properties: JSON.parse(r.properties) as Record<string, string>,
    ...(r.correlation_id !== null ? { correlationId: r.correlation_id } : {}),
    enqueuedAt: r.enqueued_at,
    expiresAt: r.expires_at,
    attempts: r.attempts,
  };
}
