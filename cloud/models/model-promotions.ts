/**
 * Promotions: "run this model version on these devices" — a site, a device group (a tag, `key` or
 * `key:value`, optionally within a site), or one device. A promotion is carried out by setting the
 * desired property `model` = `{ name, version, sha256 }` of every twin it covers, so the existing
 * desired feed brings it to the collectors and devices, and an operator sees it in the twin.
 *
 * When several promotions cover a device the most specific wins (device > site+tag > tag > site),
 * then the newest. Promotions are applied again every `models.reconcileIntervalMs`, so a device
 * that appears later, or is tagged later, gets its model too; withdrawing one hands its devices to
 * the next promotion that covers them, or removes desired `model` (the device's own model again).
 * Devices no promotion ever covered are left alone: a hand-set desired `model` stays.
 */
import { isPlainObject } from '../../common/config.js';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import type { DesiredModel } from '../../common/model-protocol.js';
import type { SqliteDb } from '../../common/sqlite.js';
import type { AuditLog } from '../audit-log.js';
import type { Principal } from '../auth/tokens.js';
import type { CloudEvents } from '../events.js';
import { TAG_KEY, type TwinStore, type TwinView } from '../twin-store.js';
import type { ModelRegistry } from './model-registry.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS model_promotions (
  id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, version TEXT NOT NULL, sha256 TEXT NOT NULL,
  site TEXT, tag TEXT, device TEXT, at INTEGER NOT NULL, by TEXT NOT NULL, withdrawn_at INTEGER, withdrawn_by TEXT
);
CREATE TABLE IF NOT EXISTS model_assignments (device TEXT PRIMARY KEY, promotion INTEGER NOT NULL) WITHOUT ROWID;
`;

export interface PromotionTarget {
  site?: string | undefined;
  tag?: string | undefined;
  device?: string | undefined;
}

export interface Promotion {
  id: number;
  name: string;
  version: string;
  sha256: string;
  site: string | null;
  tag: string | null;
  device: string | null;
  at: string;
  by: string;
  withdrawnAt: string | null;
  withdrawnBy: string | null;
}

interface Row {
  id: number;
  name: string;
  version: string;
  sha256: string;
  site: string | null;
  tag: string | null;
  device: string | null;
  at: number;
  by: string;
  withdrawn_at: number | null;
  withdrawn_by: string | null;
}

const toPromotion = (r: Row): Promotion => ({
  id: r.id,
  name: r.name,
  version: r.version,
  sha256: r.sha256,
  site: r.site,
  tag: r.tag,
  device: r.device,
  at: new Date(r.at).toISOString(),
  by: r.by,
  withdrawnAt: r.withdrawn_at === null ? null : new Date(r.withdrawn_at).toISOString(),
  withdrawnBy: r.withdrawn_by,
});

const SYSTEM: Principal = { id: 'model-promotions', name: 'model promotions (reconcile)', role: 'admin', site: null };
const PAGE = 1000;

function specificity(p: Row): number {
  return (p.device ? 4 : 0) + (p.tag ? 2 : 0) + (p.site ? 1 : 0);
}

function covers(p: Row, t: TwinView): boolean {
  if (p.device !== null && p.device !== t.deviceId) return false;
  if (p.site !== null && p.site !== t.site) return false;
  if (p.tag === null) return true;
  const i = p.tag.indexOf(':');
  return i < 0 ? p.tag in t.tags : t.tags[p.tag.slice(0, i)] === p.tag.slice(i + 1);
}

const desiredOf = (p: Row): DesiredModel => ({ name: p.name, version: p.version, sha256: p.sha256 });
/** Whether a twin's desired `model` names this promotion's model (other keys in it do not matter to agents). */
const names = (v: Record<string, unknown> | undefined, p: Row): boolean => v !== undefined && v['name'] === p.name && v['version'] === p.version && v['sha256'] === p.sha256;

interface DesiredChanged {
  device: string;
  site: string;
  version: number;
  patch: Record<string, unknown>;
}

export class ModelPromotions {
  constructor(
    private readonly db: SqliteDb,
    private readonly twins: TwinStore,
    private readonly registry: ModelRegistry,
    private readonly audit: AuditLog,
    private readonly events: CloudEvents,
  ) {
    db.exec(SCHEMA);
  }

  /** Records a promotion and applies it at once; answers it and the devices whose desired `model` changed. */
  promote(name: string, version: string, target: PromotionTarget, who: Principal): { promotion: Promotion; devices: string[] } {
    const model = this.registry.get(name, version);
    const t = this.checkTarget(target, who);
    return this.changeThenReconcile(() => {
      const at = Date.now();
      const id = Number(
        this.db
          .prepare('INSERT INTO model_promotions (name, version, sha256, site, tag, device, at, by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
          .run(name, version, model.sha256, t.site ?? null, t.tag ?? null, t.device ?? null, at, who.name).lastInsertRowid,
      );
      this.audit.record(who, 'model.promote', { site: t.site ?? null, device: t.device ?? null }, { id, name, version, sha256: model.sha256, ...t }, at);
      return id;
    });
  }

  /** Withdraws a promotion; its devices fall back to the next promotion covering them, or to their own model. */
  withdraw(id: number, who: Principal): { promotion: Promotion; devices: string[] } {
    const row = this.row(id);
    if (!row) throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no promotion ${id}`);
    if (who.site !== null && row.site !== who.site) throw new EdgetwinError(ErrorCodes.FORBIDDEN, `token is scoped to site ${who.site}; promotion ${id} is not`);
    return this.changeThenReconcile(() => {
      if (row.withdrawn_at === null) {
        const at = Date.now();
        this.db.prepare('UPDATE model_promotions SET withdrawn_at = ?, withdrawn_by = ? WHERE id = ?').run(at, who.name, id);
        this.audit.record(who, 'model.withdraw', { site: row.site, device: row.device }, { id, name: row.name, version: row.version }, at);
      }
      return id;
    });
  }

  /** Active promotions (all, or those that can cover devices of `site`); with `withdrawn`, the withdrawn ones too. */
  list(site?: string, withdrawn = false): Promotion[] {
    const rows = this.db.prepare<[], Row>(`SELECT * FROM model_promotions ${withdrawn ? '' : 'WHERE withdrawn_at IS NULL'} ORDER BY id`).all();
    return rows.filter((r) => site === undefined || this.inSite(r, site)).map(toPromotion);
  }

  private inSite(r: Row, site: string): boolean {
    if (r.site !== null) return r.site === site;
    return r.device === null || this.twins.siteOf(r.device) === site;
  }

  /** Sets desired `model` wherever the promotions say it differs; answers the devices changed. */
  reconcile(): string[] {
    return this.published(this.db.transaction(() => this.reconcileInTx())());
  }

  /** Desired patches are made as the system (a promotion may cover twins its promoter's token cannot write); the promotion itself is audited with its promoter. */
  private reconcileInTx(): DesiredChanged[] {
    const who = SYSTEM;
    const changed: DesiredChanged[] = [];
    const active = this.db.prepare<[], Row>('SELECT * FROM model_promotions WHERE withdrawn_at IS NULL').all();
    const assigned = new Map(this.db.prepare<[], { device: string; promotion: number }>('SELECT * FROM model_assignments').all().map((a) => [a.device, a.promotion]));
    const candidates = new Map<string, TwinView>();
    for (const p of active) for (const t of this.twinsOf(p)) candidates.set(t.deviceId, t);
    for (const device of assigned.keys()) {
      const t = candidates.has(device) ? undefined : this.twins.getTwin(device);
      if (t) candidates.set(device, t);
    }
    for (const t of candidates.values()) {
      const best = active.filter((p) => covers(p, t)).sort((a, b) => specificity(b) - specificity(a) || b.id - a.id)[0];
      const current = isPlainObject(t.desired['model']) ? t.desired['model'] : undefined;
      const was = assigned.get(t.deviceId);
      let patch: Record<string, unknown> | undefined;
      if (best) {
        if (!names(current, best)) patch = { model: desiredOf(best) };
        this.db.prepare('INSERT INTO model_assignments (device, promotion) VALUES (?, ?) ON CONFLICT(device) DO UPDATE SET promotion = excluded.promotion').run(t.deviceId, best.id);
      } else if (was !== undefined) {
        // Only undo what a promotion set: a value an operator put in by hand since then stays.
        const old = this.row(was);
        if (old && names(current, old)) patch = { model: null };
        this.db.prepare('DELETE FROM model_assignments WHERE device = ?').run(t.deviceId);
      }
      if (!patch) continue;
      const r = this.twins.patchDesired(t.deviceId, patch, '*', who);
      if (r.changed) changed.push({ device: t.deviceId, site: r.site, version: r.version, patch });
    }
    return changed;
  }

  /** Publishes desired events once their transaction has committed, as the twin API does. */
  private published(changed: DesiredChanged[]): string[] {
    for (const c of changed) this.events.publish('desired', c.site, c.device, { version: c.version, patch: c.patch, by: SYSTEM.name });
    return changed.map((c) => c.device);
  }

  private changeThenReconcile(change: () => number): { promotion: Promotion; devices: string[] } {
    // One transaction: the promotion and the desired changes it makes commit together.
    const { id, changed } = this.db.transaction(() => {
      const id = change();
      return { id, changed: this.reconcileInTx() };
    })();
    return { promotion: toPromotion(this.row(id)!), devices: this.published(changed) };
  }

  private *twinsOf(p: Row): Generator<TwinView> {
    if (p.device !== null) {
      const t = this.twins.getTwin(p.device);
      if (t) yield t;
      return;
    }
    let after: string | undefined;
    for (;;) {
      const page = this.twins.listTwins({ site: p.site ?? undefined, tags: p.tag === null ? undefined : [p.tag], after, limit: PAGE });
      yield* page.items;
      if (page.next === null) return;
      after = page.next;
    }
  }

  private checkTarget(target: PromotionTarget, who: Principal): PromotionTarget {
    const t: PromotionTarget = { ...target };
    if (t.site === undefined && t.tag === undefined && t.device === undefined) throw new EdgetwinError(ErrorCodes.BAD_REQUEST, 'a promotion needs a site, a tag or a device');
    if (t.tag !== undefined) {
      const key = t.tag.split(':', 1)[0]!;
      if (!TAG_KEY.test(key)) throw new EdgetwinError(ErrorCodes.BAD_REQUEST, `tag "${t.tag}": key must match ${TAG_KEY.source}`);
    }
    if (t.device !== undefined) {
      const site = this.twins.siteOf(t.device);
      if (site === undefined) throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no twin for device ${t.device}`);
      if (t.site !== undefined && t.site !== site) throw new EdgetwinError(ErrorCodes.BAD_REQUEST, `device ${t.device} is in site ${site}, not ${t.site}`);
      t.site = site;
    }
    if (who.site !== null) {
      // A site-scoped operator promotes within that site only.
      if (t.site !== undefined && t.site !== who.site) throw new EdgetwinError(ErrorCodes.FORBIDDEN, `token is scoped to site ${who.site}, not ${t.site}`);
      t.site = who.site;
    }
    return t;
  }

  private row(id: number): Row | undefined {
    return this.db.prepare<[number], Row>('SELECT * FROM model_promotions WHERE id = ?').get(id);
  }
}
