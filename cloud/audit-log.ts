/**
 * AuditLog: every operator write (who, when, what) in the cloud's SQLite file, written in the same
 * transaction as the change it records, so no change exists without its entry.
 */
import type { SqliteDb } from '../common/sqlite.js';
import type { Principal } from './auth/tokens.js';

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

export interface AuditQuery {
  device?: string | undefined;
  site?: string | undefined;
  action?: string | undefined;
  /** Entries with id below this (pages go newest first). */
  before?: number | undefined;
  limit: number;
}

interface AuditRow {
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
  private readonly insert;

  constructor(private readonly db: SqliteDb) {
    this.insert = db.prepare('INSERT INTO audit (at, actor, actor_id, role, action, device, site, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
  }

  record(who: Principal, action: string, target: { device?: string | null; site?: string | null }, detail: unknown, at = Date.now()): number {
    return Number(this.insert.run(at, who.name, who.id, who.role, action, target.device ?? null, target.site ?? null, JSON.stringify(detail)).lastInsertRowid);
  }

  /** Newest first; `next` is the `before` of the following page, or null at the end. */
  list(q: AuditQuery): { items: AuditEntry[]; next: number | null } {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (q.device !== undefined) (where.push('device = ?'), args.push(q.device));
    if (q.site !== undefined) (where.push('site = ?'), args.push(q.site));
    if (q.action !== undefined) (where.push('action = ?'), args.push(q.action));
    if (q.before !== undefined) (where.push('id < ?'), args.push(q.before));
    const sql = `SELECT * FROM audit ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`;
    const rows = this.db.prepare(sql).all(...args, q.limit + 1) as AuditRow[];
    const more = rows.length > q.limit;
    const items = rows.slice(0, q.limit).map((r) => ({
      id: r.id,
      at: new Date(r.at).toISOString(),
      actor: r.actor,
      actorId: r.actor_id,
      role: r.role,
      action: r.action,
      device: r.device,
      site: r.site,
      detail: JSON.parse(r.detail) as unknown,
    }));
    return { items, next: more ? items[items.length - 1]!.id : null };
  }
}
