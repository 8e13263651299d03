/**
 * Promotions: "run this model version on these devices" — a site, a device group (a tag, `key` or
 * `key:value`, optionally within a site), or one device. A promotion is carried out by setting the
 * desired property `model` = `{ name, version, sha256 }` (a failure model's: `failureModel`; a device
 * runs one model of each kind) of every twin it covers, so the existing
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
import { DESIRED_MODEL_KEY, type DesiredModel } from '../../common/wire/model-protocol.js';
import type { ModelKind } from '../../common/models/manifest.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Principal } from '../auth/tokens.js';
import type { Queryable, Store, Tx } from '../store/store.js';
import { TAG_KEY, type TwinStore, type TwinView } from '../twins/twin-store.js';
import type { ModelRegistry } from './model-registry.js';

export interface PromotionTarget {
  site?: string | undefined;
  tag?: string | undefined;
  device?: string | undefined;
}

export interface Promotion {
  id: number;
  name: string;
  kind: ModelKind;
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
  kind: ModelKind;
}

const toPromotion = (r: Row): Promotion => ({
  id: r.id,
  name: r.name,
  kind: r.kind,
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
const names = (v: Record<string, unknown> | undefined, p: Row): boolean =>
  v !== undefined && v['name'] === p.name && v['version'] === p.version && v['sha256'] === p.sha256;

export class ModelPromotions {
  constructor(
    private readonly store: Store,
    private readonly twins: TwinStore,
    private readonly registry: ModelRegistry,
    private readonly audit: AuditLog,
  ) {}

  /** Records a promotion and applies it at once; answers it and the devices whose desired `model` changed. */
  async promote(
    name: string,
    version: string,
    target: PromotionTarget,
    who: Principal,
  ): Promise<{ promotion: Promotion; devices: string[] }> {
    const model = await this.registry.get(name, version);
    // The target comes scoped from the route (cloud/auth/site-policy.ts, scopedPromotionTarget).
    const t = await this.checkTarget(target);
    return this.changeThenReconcile(async (tx) => {
      const at = Date.now();
      const id = (await tx.get<{ id: number }>(
        'INSERT INTO model_promotions (name, version, sha256, site, tag, device, at, by, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id',
        [name, version, model.sha256, t.site ?? null, t.tag ?? null, t.device ?? null, at, who.name, model.kind],
      ))!.id;
      await this.audit.record(
        tx,
        who,
        'model.promote',
        { site: t.site ?? null, device: t.device ?? null },
        { id, name, version, kind: model.kind, sha256: model.sha256, ...t },
        at,
      );
      return id;
    });
  }

  /** Withdraws a promotion; its devices fall back to the next promotion covering them, or to their own model. */
  async withdraw(id: number, who: Principal): Promise<{ promotion: Promotion; devices: string[] }> {
    // Whether `who` may withdraw it is the route's to check (cloud/auth/site-policy.ts).
    const row = await this.row(this.store, id);
    if (!row) throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no promotion ${id}`);
    return this.changeThenReconcile(async (tx) => {
      const r = await tx.run('UPDATE model_promotions SET withdrawn_at = ?, withdrawn_by = ? WHERE id = ? AND withdrawn_at IS NULL', [
        Date.now(),
        who.name,
        id,
      ]);
      if (r.changes > 0)
        await this.audit.record(
          tx,
          who,
          'model.withdraw',
          { site: row.site, device: row.device },
          { id, name: row.name, version: row.version },
        );
      return id;
    });
  }

  /** Active promotions (all, or those that can cover devices of `site`); with `withdrawn`, the withdrawn ones too. */
  async list(site?: string, withdrawn = false): Promise<Promotion[]> {
    const rows = await this.store.all<Row>(`SELECT * FROM model_promotions ${withdrawn ? '' : 'WHERE withdrawn_at IS NULL'} ORDER BY id`);
    const out: Promotion[] = [];
    for (const r of rows) if (site === undefined || (await this.inSite(r, site))) out.push(toPromotion(r));
    return out;
  }

  private async inSite(r: Row, site: string): Promise<boolean> {
    if (r.site !== null) return r.site === site;
    return r.device === null || (await this.twins.siteOf(r.device)) === site;
  }

  /** Sets desired `model` wherever the promotions say it differs; answers the devices changed. */
  reconcile(): Promise<string[]> {
    return this.store.tx((tx) => this.reconcileInTx(tx));
  }

  /** Desired patches are made as the system (a promotion may cover twins its promoter's token cannot write); the promotion itself is audited with its promoter. */
  private async reconcileInTx(tx: Tx): Promise<string[]> {
    // One desired patch per device for both kinds: one version bump, one change event.
    const patches = new Map<string, Record<string, unknown>>();
    for (const kind of ['anomaly', 'failure'] as const) await this.reconcileKind(tx, kind, patches);
    const changed: string[] = [];
    for (const [device, patch] of patches) {
      // The desired change (and its `desired` change-feed row, by the system) commits with this transaction.
      const r = await this.twins.patchDesired(device, patch, '*', SYSTEM, tx);
      if (r.changed) changed.push(device);
    }
    return changed;
  }

  /** The desired value of one kind's key (`model`, `failureModel`) on every twin its promotions cover or covered. */
  private async reconcileKind(tx: Tx, kind: ModelKind, patches: Map<string, Record<string, unknown>>): Promise<void> {
    const key = DESIRED_MODEL_KEY[kind];
    const active = await tx.all<Row>('SELECT * FROM model_promotions WHERE withdrawn_at IS NULL AND kind = ?', [kind]);
    const assigned = new Map(
      (
        await tx.all<{ device: string; promotion: number }>('SELECT device, promotion FROM model_kind_assignments WHERE kind = ?', [kind])
      ).map((a) => [a.device, a.promotion]),
    );
    const candidates = new Map<string, TwinView>();
    for (const p of active) for (const t of await this.twinsOf(tx, p)) candidates.set(t.deviceId, t);
    for (const device of assigned.keys()) {
      const t = candidates.has(device) ? undefined : await this.twinOf(tx, device);
      if (t) candidates.set(device, t);
    }
    for (const t of candidates.values()) {
      const best = active.filter((p) => covers(p, t)).sort((a, b) => specificity(b) - specificity(a) || b.id - a.id)[0];
      const current = isPlainObject(t.desired[key]) ? t.desired[key] : undefined;
      const was = assigned.get(t.deviceId);
      let value: DesiredModel | null | undefined;
      if (best) {
        if (!names(current, best)) value = desiredOf(best);
        await tx.run(
          'INSERT INTO model_kind_assignments (device, kind, promotion) VALUES (?, ?, ?) ON CONFLICT (device, kind) DO UPDATE SET promotion = excluded.promotion',
          [t.deviceId, kind, best.id],
        );
      } else if (was !== undefined) {
        // Only undo what a promotion set: a value an operator put in by hand since then stays.
        const old = await this.row(tx, was);
        if (old && names(current, old)) value = null;
        await tx.run('DELETE FROM model_kind_assignments WHERE device = ? AND kind = ?', [t.deviceId, kind]);
      }
      if (value !== undefined) patches.set(t.deviceId, { ...patches.get(t.deviceId), [key]: value });
    }
  }

  private async changeThenReconcile(change: (tx: Tx) => Promise<number>): Promise<{ promotion: Promotion; devices: string[] }> {
    // One transaction: the promotion and the desired changes it makes commit together.
    return this.store.tx(async (tx) => {
      const id = await change(tx);
      const devices = await this.reconcileInTx(tx);
      return { promotion: toPromotion((await this.row(tx, id))!), devices };
    });
  }

  private async twinOf(tx: Tx, device: string): Promise<TwinView | undefined> {
    return (await this.twins.listTwins({ device, limit: 1 }, tx)).items[0];
  }

  private async twinsOf(tx: Tx, p: Row): Promise<TwinView[]> {
    if (p.device !== null) {
      const t = await this.twinOf(tx, p.device);
      return t ? [t] : [];
    }
    const out: TwinView[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.twins.listTwins(
        { site: p.site ?? undefined, tags: p.tag === null ? undefined : [p.tag], after, limit: PAGE },
        tx,
      );
      out.push(...page.items);
      if (page.next === null) return out;
      after = page.next;
    }
  }

  private async checkTarget(target: PromotionTarget): Promise<PromotionTarget> {
    const t: PromotionTarget = { ...target };
    if (t.site === undefined && t.tag === undefined && t.device === undefined)
      throw new EdgetwinError(ErrorCodes.BAD_REQUEST, 'a promotion needs a site, a tag or a device');
    if (t.tag !== undefined) {
      const key = t.tag.split(':', 1)[0]!;
      if (!TAG_KEY.test(key)) throw new EdgetwinError(ErrorCodes.BAD_REQUEST, `tag "${t.tag}": key must match ${TAG_KEY.source}`);
    }
    if (t.device !== undefined) {
      const site = await this.twins.siteOf(t.device);
      if (site === undefined) throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no twin for device ${t.device}`);
      if (t.site !== undefined && t.site !== site)
        throw new EdgetwinError(ErrorCodes.BAD_REQUEST, `device ${t.device} is in site ${site}, not ${t.site}`);
      t.site = site;
    }
    return t;
  }

  /** One promotion, withdrawn or not. */
  async get(id: number): Promise<Promotion | undefined> {
    const r = await this.row(this.store, id);
    return r ? toPromotion(r) : undefined;
  }

  private row(q: Queryable, id: number): Promise<Row | undefined> {
    return q.get<Row>('SELECT * FROM model_promotions WHERE id = ?', [id]);
  }
}
