/**
 * The twin's size, held at ingest (common/wire/limits.ts has the why):
 * - MetricCap: a device has at most `limits.metricsPerDevice` metric names in its twin; readings of
 *   names beyond that are quarantined (reason `limit`, EDGETWIN_ERR_LIMIT_EXCEEDED), the rest stored;
 * - DeviceQuarantine: what was quarantined per device — count, last reason, when — kept on the twin
 *   (`quarantine` in the twin view), for the site that owns the device only.
 * Both run inside the batch's transaction, after the claim locked the batch's twin rows.
 */
import type { Tx } from '../store/store.js';
import type { QuarantineReason, QuarantineRow } from '../ingest/quality.js';

const NONE: ReadonlySet<string> = new Set();

/** Most metric names kept in memory across devices (about 100 bytes each): beyond it, the oldest devices are re-read when they send. */
const CACHE_NAMES = 200_000;

export class MetricCap {
  /**
   * Names each device is known to have in `twin_metrics`, least recently used first. Only ever a
   * subset of the database (names are never removed), so a batch whose names are all here needs no
   * query; another replica's additions are found by the read on a miss.
   */
  private readonly known = new Map<string, Set<string>>();
  private cached = 0;

  constructor(readonly max: number) {}

  /** Of `names` (a batch's metric names of one device, in order of appearance), those over the cap. */
  async refused(tx: Tx, device: string, names: ReadonlySet<string>): Promise<ReadonlySet<string>> {
    const hit = this.known.get(device);
    if (hit && [...names].every((n) => hit.has(n))) return NONE;
    const rows = await tx.all<{ metric: string }>('SELECT metric FROM twin_metrics WHERE device = ?', [device]);
    const have = new Set(rows.map((r) => r.metric));
    this.learn(device, have);
    let room = this.max - have.size;
    let out: Set<string> | undefined;
    for (const n of names) {
      if (have.has(n)) continue;
      if (room > 0) room--;
      else (out ??= new Set()).add(n);
    }
    return out ?? NONE;
  }

  /** After commit: `names` are in the device's twin now. */
  learn(device: string, names: Iterable<string>): void {
    let set = this.known.get(device);
    if (set) this.known.delete(device);
    else set = new Set();
    const before = set.size;
    for (const n of names) set.add(n);
    this.cached += set.size - before;
    this.known.set(device, set);
    for (const [d, s] of this.known) {
      if (this.cached <= CACHE_NAMES || d === device) break;
      this.known.delete(d);
      this.cached -= s.size;
    }
  }
}

/**
 * Adds a batch's quarantined rows to the twins of their devices — only where `site` owns the device
 * (another site's bad data must not show on, or change, a twin it cannot see). Returns the devices
 * whose twin changed, with what to put in their change event.
 */
export async function countQuarantine(
  tx: Tx,
  site: string,
  rows: readonly QuarantineRow[],
  now: number,
): Promise<{ device: string; added: number; reason: QuarantineReason }[]> {
  const per = new Map<string, { added: number; reason: QuarantineReason }>();
  for (const r of rows) {
    if (r.device === null) continue;
    const p = per.get(r.device);
    if (p) {
      p.added++;
      p.reason = r.reason;
    } else per.set(r.device, { added: 1, reason: r.reason });
  }
  const out: { device: string; added: number; reason: QuarantineReason }[] = [];
  // One order in every transaction: no lock cycles between replicas.
  for (const device of [...per.keys()].sort()) {
    const p = per.get(device)!;
    const r = await tx.run(
      'UPDATE twins SET quarantined = quarantined + ?, quarantine_reason = ?, quarantine_at = ? WHERE device = ? AND site = ?',
      [p.added, p.reason, now, device, site],
    );
    if (r.changes > 0) out.push({ device, ...p });
  }
  return out;
}
