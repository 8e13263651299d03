/**
 * Device-bound messages in the cloud's store (`device_messages`): what an operator sent, and what
 * became of it. States: `pending` (stored here, not yet at the site), `queued` (in the site
 * collector's durable queue), then one of the feedback outcomes `delivered`, `expired`, `rejected`.
 * A message is stored before the API answers 202, so nothing accepted is lost; the collector of
 * the device's site takes pending messages over its channel (any replica's wake-up sends them).
 */
import { randomUUID } from 'node:crypto';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import type { DeviceBoundMessage, MessageFeedback, MessageOutcome } from '../../common/wire/c2d-protocol.js';
import { placeholders, type Queryable, type Store, type Tx } from '../store/store.js';
import { Where } from '../store/where.js';

export type MessageState = 'pending' | 'queued' | MessageOutcome;

/** A message as the API shows it. */
export interface MessageView {
  messageId: string;
  device: string;
  site: string;
  state: MessageState;
  /** When the message entered its state (ISO). */
  stateAt: string;
  createdAt: string;
  expiresAt: string;
  createdBy: string;
  properties: Record<string, string>;
  correlationId?: string;
  bytes: number;
  /** Why a message was rejected or expired early (stable code and text). */
  code?: string;
  reason?: string;
}

interface Row {
  seq: number;
  id: string;
  device: string;
  site: string;
  body: string;
  properties: string;
  correlation_id: string | null;
  created: number;
  expires: number;
  created_by: string;
  state: string;
  state_at: number;
  code: string | null;
  reason: string | null;
}

export interface NewMessage {
  device: string;
  site: string;
  body: string;
  properties: Record<string, string>;
  correlationId?: string | undefined;
  ttlMs: number;
  createdBy: string;
}

/** Bus channel woken after messages were added (the replica holding the site's channel sends them). */
export const MESSAGES_CHANNEL = 'c2d-messages';

const OPEN_STATES = "('pending', 'queued')";

export class CloudMessageStore {
  constructor(
    private readonly store: Store,
    private readonly maxPerDevice: number,
  ) {}

  /**
   * Stores a message as `pending` in `tx`; refuses it with EDGETWIN_ERR_DEVICE_QUEUE_FULL when the
   * device already has maxPerDevice messages not yet finished (IoT Hub's per-device queue of 50).
   */
  async add(tx: Tx, m: NewMessage, now = Date.now()): Promise<MessageView> {
    const open = await tx.get<{ n: number }>(`SELECT count(*) AS n FROM device_messages WHERE device = ? AND state IN ${OPEN_STATES}`, [
      m.device,
    ]);
    if (Number(open?.n ?? 0) >= this.maxPerDevice) {
      throw new EdgetwinError(ErrorCodes.DEVICE_QUEUE_FULL, `device ${m.device} has ${this.maxPerDevice} messages not yet delivered`, {
        details: { device: m.device, max: this.maxPerDevice },
      });
    }
    const id = randomUUID();
    const row = await tx.get<Row>(
      `INSERT INTO device_messages (id, device, site, body, properties, correlation_id, created, expires, created_by, state, state_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?) RETURNING *`,
      [id, m.device, m.site, m.body, JSON.stringify(m.properties), m.correlationId ?? null, now, now + m.ttlMs, m.createdBy, now],
    );
    tx.afterCommit(() => this.store.bus.notify(MESSAGES_CHANNEL));
    return view(row!);
  }

  async get(device: string, id: string): Promise<MessageView | undefined> {
    const r = await this.store.get<Row>('SELECT * FROM device_messages WHERE id = ? AND device = ?', [id, device]);
    return r ? view(r) : undefined;
  }

  /** Newest first; `next` is the `before` of the following page. */
  async list(
    device: string,
    q: { state?: MessageState | undefined; before?: number | undefined; limit: number },
  ): Promise<{
    items: MessageView[];
    next: number | null;
  }> {
    const where = new Where('device = ?', device);
    if (q.state) where.add('state = ?', q.state);
    where.given('seq < ?', q.before);
    const rows = await this.store.all<Row>(`SELECT * FROM device_messages WHERE ${where.sql} ORDER BY seq DESC LIMIT ?`, [
      ...where.params,
      q.limit + 1,
    ]);
    const more = rows.length > q.limit;
    const page = rows.slice(0, q.limit);
    return { items: page.map(view), next: more ? Number(page[page.length - 1]!.seq) : null };
  }

  /** Pending messages of a site after `afterSeq`, oldest first, as the channel sends them. */
  async pendingForSite(site: string, afterSeq: number, limit: number): Promise<{ seq: number; message: DeviceBoundMessage }[]> {
    const rows = await this.store.all<Row>(
      "SELECT * FROM device_messages WHERE site = ? AND state = 'pending' AND seq > ? ORDER BY seq LIMIT ?",
      [site, afterSeq, limit],
    );
    return rows.map((r) => ({
      seq: Number(r.seq),
      message: {
        id: r.id,
        device: r.device,
        body: r.body,
        properties: JSON.parse(r.properties) as Record<string, string>,
        ...(r.correlation_id !== null ? { correlationId: r.correlation_id } : {}),
        enqueuedAt: Number(r.created),
        expiresAt: Number(r.expires),
      },
    }));
  }

  /** The site's collector has these in its durable queue. Only the site's own messages move. */
  async queued(site: string, ids: readonly string[], now = Date.now()): Promise<void> {
    for (let i = 0; i < ids.length; i += 500) {
      const chunk = ids.slice(i, i + 500);
      await this.store.run(
        `UPDATE device_messages SET state = 'queued', state_at = ? WHERE site = ? AND state = 'pending' AND id IN (${placeholders(chunk.length)})`,
        [now, site, ...chunk],
      );
    }
  }

  /** Final outcomes from the site's collector (idempotent: a finished message keeps its first outcome). */
  async feedback(site: string, items: readonly MessageFeedback[]): Promise<void> {
    await this.store.tx(async (tx) => {
      for (const f of items) await finish(tx, site, f);
    });
  }

  /** Pending messages whose time ran out before they reached the site: expired here. */
  async expirePending(now = Date.now()): Promise<number> {
    const r = await this.store.run(
      "UPDATE device_messages SET state = 'expired', state_at = ?, reason = 'expired before it reached the site' WHERE state = 'pending' AND expires <= ?",
      [now, now],
    );
    return r.changes;
  }

  /** True when some message waits for a site (cheap: the sweep skips its UPDATE otherwise). */
  async anyPending(): Promise<boolean> {
    return (await this.store.get("SELECT 1 AS x FROM device_messages WHERE state = 'pending' LIMIT 1")) !== undefined;
  }
}

async function finish(q: Queryable, site: string, f: MessageFeedback): Promise<void> {
  await q.run(
    `UPDATE device_messages SET state = ?, state_at = ?, code = ?, reason = ? WHERE id = ? AND site = ? AND state IN ${OPEN_STATES}`,
    [f.outcome, f.at, f.code ?? null, f.reason ?? null, f.id, site],
  );
}

function view(r: Row): MessageView {
  return {
    messageId: r.id,
    device: r.device,
    site: r.site,
    state: r.state as MessageState,
    stateAt: new Date(Number(r.state_at)).toISOString(),
    createdAt: new Date(Number(r.created)).toISOString(),
    expiresAt: new Date(Number(r.expires)).toISOString(),
    createdBy: r.created_by,
    properties: JSON.parse(r.properties) as Record<string, string>,
    ...(r.correlation_id !== null ? { correlationId: r.correlation_id } : {}),
    bytes: Buffer.byteLength(r.body),
    ...(r.code !== null ? { code: r.code } : {}),
    ...(r.reason !== null ? { reason: r.reason } : {}),
  };
}
