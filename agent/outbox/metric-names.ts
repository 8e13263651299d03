/**
 * The agent's side of `limits.metricsPerDevice` (common/wire/limits.ts): the metric names this
 * device has committed, kept in the outbox database so the cap holds across restarts. A reading
 * whose metric would be name number cap + 1 is refused before commit; the names of the readings
 * committed are recorded in the same transaction as the readings. Derived readings (predictions,
 * drift histograms: `kind` set) do not count: they never become entries of the twin's `reported`.
 */
import type { SqliteDb } from '../../common/sqlite.js';

const SCHEMA =
  'CREATE TABLE IF NOT EXISTS metric_names (device TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (device, name)) WITHOUT ROWID';

export class MetricNames {
  private readonly known: Set<string>;
  /** Names taken by the commit being built, recorded by record() in its transaction. */
  private readonly added = new Set<string>();
  private readonly insert;

  constructor(
    db: SqliteDb,
    private readonly device: string,
    readonly max: number,
  ) {
    db.exec(SCHEMA);
    // Names of a previous device id belong to another device's twin (agent/outbox/device-id.ts).
    db.prepare('DELETE FROM metric_names WHERE device <> ?').run(device);
    this.known = new Set(
      db
        .prepare<[string], { name: string }>('SELECT name FROM metric_names WHERE device = ?')
        .all(device)
        .map((r) => r.name),
    );
    this.insert = db.prepare<[string, string]>('INSERT OR IGNORE INTO metric_names (device, name) VALUES (?, ?)');
  }

  get size(): number {
    return this.known.size + this.added.size;
  }

  /** Takes `metric` for the commit being built; false when it is new and the device has `max` names already. */
  take(metric: string): boolean {
    if (this.known.has(metric) || this.added.has(metric)) return true;
    if (this.size >= this.max) return false;
    this.added.add(metric);
    return true;
  }

  /** Inside the commit's transaction: persists the names it took. */
  record(): void {
    for (const m of this.added) this.insert.run(this.device, m);
  }

  /** After the transaction: committed (the names are known now) or rolled back (they are given back). */
  settle(committed: boolean): void {
    if (committed) for (const m of this.added) this.known.add(m);
    this.added.clear();
  }
}
