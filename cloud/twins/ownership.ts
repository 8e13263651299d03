/**
 * Which site owns which device (board decision D1; the rules are in cloud/auth/site-policy.ts):
 * the claim made inside every ingest transaction, and an admin setting or moving the owner.
 * The owner is the twin row's `site`; claimed_at / claimed_by (migration 0007) say since when and how.
 */
import type { AuditLog } from '../audit/audit-log.js';
import { UNASSIGNED_SITE } from '../auth/site-policy.js';
import type { Principal } from '../auth/tokens.js';
import { placeholders, type Queryable, type Store, type Tx } from '../store/store.js';
import { checkIfMatch } from './if-match.js';
import type { TwinStore } from './twin-store.js';

export class DeviceOwnership {
  constructor(
    private readonly store: Store,
    private readonly twins: TwinStore,
    private readonly audit: AuditLog,
  ) {}

  /**
   * Inside the ingest transaction: every device of `devices` that nobody owns becomes `site`'s (its
   * twin row is made now), and the owner of each is returned. The rows stay locked until commit, in
   * one order: a concurrent claim by another site, on any replica, waits and then finds this one,
   * and a move waits for this batch. Usually one query: the devices exist already.
   */
  async claim(tx: Tx, devices: Iterable<string>, site: string, now: number): Promise<Map<string, string>> {
    const ids = [...new Set(devices)].sort();
    const owners = await this.read(tx, ids, true);
    for (const device of ids) {
      if (owners.get(device) === UNASSIGNED_SITE && site !== UNASSIGNED_SITE) {
        // Events that came without a site held it until now: the first real site takes it over.
        await tx.run("UPDATE twins SET site = ?, claimed_at = ?, claimed_by = 'ingest' WHERE device = ?", [site, now, device]);
        this.twins.touch(tx, device);
        owners.set(device, site);
      }
      if (owners.has(device)) continue;
      const made = await tx.run(
        `INSERT INTO twins (device, site, first_seen, last_seen, readings, claimed_at, claimed_by) VALUES (?, ?, ?, ?, 0, ?, 'ingest')
         ON CONFLICT (device) DO NOTHING`,
        [device, site, now, now, now],
      );
      if (made.changes > 0) {
        this.twins.touch(tx, device);
        owners.set(device, site);
      } else {
        // Claimed by a transaction that committed since the read above.
        for (const [d, s] of await this.read(tx, [device], true)) owners.set(d, s);
      }
    }
    return owners;
  }

  /** The owners of those of `devices` that have one (a batch seen before: nothing is claimed again). */
  owners(devices: Iterable<string>): Promise<Map<string, string>> {
    return this.read(this.store, [...new Set(devices)].sort(), false);
  }

  private async read(q: Queryable, ids: string[], lock: boolean): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (let i = 0; i < ids.length; i += 500) {
      const part = ids.slice(i, i + 500);
      const rows = await q.all<{ device: string; site: string }>(
        `SELECT device, site FROM twins WHERE device IN (${placeholders(part.length)}) ORDER BY device${lock ? q.dialect.forUpdate : ''}`,
        part,
      );
      for (const r of rows) out.set(r.device, r.site);
    }
    return out;
  }

  /**
   * Sets the site that owns `device` (`PUT /v1/twins/{id}/site`; the route checks who may). A
   * device without a twin is claimed for `site` before its first data; another site's device is
   * moved: If-Match on the twin, its version bumped, audited under both sites, and its desired
   * document queued on the new site's desired feed. Its history stays in the lakehouse partitions
   * of the site that sent it.
   */
  setOwner(device: string, site: string, ifMatch: string | undefined, who: Principal): Promise<{ from: string | null; changed: boolean }> {
    return this.store.tx(async (tx) => {
      this.twins.touch(tx, device);
      const now = Date.now();
      const by = `admin:${who.name}`;
      const row = await tx.get<{ site: string; version: number }>(
        `SELECT site, version FROM twins WHERE device = ?${tx.dialect.forUpdate}`,
        [device],
      );
      if (!row) {
        await tx.run(
          'INSERT INTO twins (device, site, first_seen, last_seen, readings, claimed_at, claimed_by) VALUES (?, ?, ?, ?, 0, ?, ?)',
          [device, site, now, now, now, by],
        );
        await this.audit.record(tx, who, 'twin.site', { device, site }, { from: null, to: site }, now);
        tx.emit({ type: 'twin', site, device, data: { site, claimedBy: by, by: who.name } });
        return { from: null, changed: true };
      }
      checkIfMatch(row.version, ifMatch);
      if (row.site === site) return { from: site, changed: false };
      const cursor = (await tx.get<{ v: number }>('UPDATE meta SET v = v + 1 WHERE k = ? RETURNING v', ['desired_cursor']))!.v;
      await tx.run(
        'UPDATE twins SET site = ?, version = version + 1, desired_cursor = ?, claimed_at = ?, claimed_by = ? WHERE device = ?',
        [site, cursor, now, by, device],
      );
      const detail = { from: row.site, to: site, fromVersion: row.version, toVersion: row.version + 1 };
      // Under both sites: the one that lost the device sees why it went.
      for (const s of [row.site, site]) {
        await this.audit.record(tx, who, 'twin.site', { device, site: s }, detail, now);
        tx.emit({ type: 'twin', site: s, device, data: { site, $version: row.version + 1, claimedBy: by, by: who.name } });
      }
      return { from: row.site, changed: true };
    });
  }
}
