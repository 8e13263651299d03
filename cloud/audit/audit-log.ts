/**
 * AuditLog: every operator write (who, when, what) in the cloud's store, written in the same
 * transaction as the change it records (`record(tx, …)`), so no change exists without its entry.
 */
import type { Queryable, Store } from '../store/store.js';
import { Where } from '../store/where.js';
import type { Principal } from '../auth/tokens.js';

export interface AuditEntry {
  id: number;
  at: string;
  actor: string;
  actorId: string;
  role: string;
  action: string;
  device: string | null;
  site: string | null;
  detail: unknown;
}

/** A table row as the API and the export show it (Number(): some drivers hand big integers over as strings). */
export function auditEntryOf(r: AuditRow): AuditEntry {
  return {
    id: Number(r.id),
    at: new Date(Number(r.at)).toISOString(),
    actor: r.actor,
    actorId: r.actor_id,
    role: r.role,
    action: r.action,
    device: r.device,
    site: r.site,
    detail: JSON.parse(r.detail) as unknown,
  };
}

export interface AuditQuery {
  device?: string | undefined;
  site?: string | undefined;
  action?: string | undefined;
  /** Entries with id below this (pages go newest first). */
  before?: number | undefined;
  limit: number;
}

/** One row of the `audit` table as the store returns it. */
export interface AuditRow {
  id: number;
  at: number;
  actor: string;
  actor_id: string;
  role: string;
  action: string;
  device: string | null;
  site: string | null;
  detail: string;
}

export class AuditLog {
  constructor(private readonly store: Store) {}

  /** Writes one entry through `q` (the transaction of the change it records); answers its id. */
  async record(
    q: Queryable,
    who: Principal,
    action: string,
    target: { device?: string | null; site?: string | null },
    detail: unknown,
    at = Date.now(),
  ): Promise<number> {
    const row = await q.get<{ id: number }>(
      'INSERT INTO audit (at, actor, actor_id, role, action, device, site, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id',
      [at, who.name, who.id, who.role, action, target.device ?? null, target.site ?? null, JSON.stringify(detail)],
    );
    return row!.id;
  }

  /** Newest first; `next` is the `before` of the following page, or null at the end. */
  async list(q: AuditQuery): Promise<{ items: AuditEntry[]; next: number | null }> {
    const where = new Where()
      .given('device = ?', q.device)
      .given('site = ?', q.site)
      .given('action = ?', q.action)
      .given('id < ?', q.before);
    const sql = `SELECT * FROM audit ${where.clause} ORDER BY id DESC LIMIT ?`;
    const rows = await this.store.all<AuditRow>(sql, [...where.params, q.limit + 1]);
    const more = rows.length > q.limit;
    const items = rows.slice(0, q.limit).map(auditEntryOf);
    return { items, next: more ? items[items.length - 1]!.id : null };
  }
}
