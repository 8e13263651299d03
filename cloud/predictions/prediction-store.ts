/**
 * Failure predictions in the cloud: every `prediction` reading stored once by its identity
 * (device, epoch, seq), the newest per (device, asset) kept for the twin's `predictions`, and the
 * history for `GET /v1/twins/{id}/predictions`. Written in the ingest transaction that stores the
 * batch (cloud/ingest/derived-readings.ts), so a 2xx means they are stored; read by the twin API,
 * the dashboard's RUL chart and the `rul_low` alert signal.
 */
import type { Observation } from '../alerts/signals.js';
import type { ChangeFeed } from '../store/change-feed.js';
import type { Dialect } from '../store/dialect.js';
import type { Queryable, Store, Tx } from '../store/store.js';
import { DeviceCache } from '../store/device-cache.js';
import { Where } from '../store/where.js';

export interface PredictionRow {
  device: string;
  epoch: number;
  seq: number;
  site: string;
  asset: string;
  ts: number;
  rul: number;
  unit: string;
  model: string;
  alert: boolean;
}

/** How the twin and the API show one prediction. */
export interface PredictionView {
  asset: string;
  rulCycles: number;
  /** The step unit of the model (`cycle` for C-MAPSS); `rulCycles` counts these. */
  unit: string;
  at: string;
  model: string;
  /** Below the threshold the device applied (the alert went through the priority lane). */
  alert: boolean;
}

interface Row {
  device: string;
  asset: string;
  site: string;
  ts: number;
  epoch: number;
  seq: number;
  rul: number;
  unit: string;
  model: string;
  alert: number;
}
/** Every column of Row (as a Record, so the compiler names one that is missing). */
const COLUMNS = Object.keys({
  device: 1,
  asset: 1,
  site: 1,
  ts: 1,
  epoch: 1,
  seq: 1,
  rul: 1,
  unit: 1,
  model: 1,
  alert: 1,
} satisfies Record<keyof Row, 1>);

const view = (r: Row): PredictionView => ({
  asset: r.asset,
  rulCycles: r.rul,
  unit: r.unit,
  at: new Date(Number(r.ts)).toISOString(),
  model: r.model,
  alert: Number(r.alert) === 1,
});

export interface HistoryQuery {
  asset?: string | undefined;
  from?: number | undefined;
  to?: number | undefined;
  limit: number;
  /** Cursor: `ts:epoch:seq` of the last item of the previous page (ascending by time). */
  after?: string | undefined;
}

/** The cached "this device has no predictions" (a miss would ask the database at every read). */
const NONE: Readonly<Record<string, PredictionView>> = Object.freeze({});

export class PredictionStore {
  /**
   * The newest predictions per device, as the twin shows them (frozen: responses share them), kept
   * built for twin reads by the same rules as TwinStore's views (store/device-cache.ts).
   */
  private readonly cache = new DeviceCache<Readonly<Record<string, PredictionView>>>();

  constructor(private readonly store: Store) {}

  /** Drops cached entries of devices that changed anywhere: call once with the cloud's change feed. */
  watch(feed: ChangeFeed): void {
    this.cache.watch(feed);
  }

  /**
   * Stores predictions in the caller's transaction: each once (a duplicate identity is a no-op),
   * and the twin's newest per asset only when the row is newer by (ts, epoch, seq) — a late
   * backlog never replaces a fresher prediction. Answers the rows that became the newest.
   */
  async persist(tx: Tx, rows: readonly PredictionRow[], now: number): Promise<PredictionRow[]> {
    const newest: PredictionRow[] = [];
    for (const p of rows) {
      const ins = await tx.run(
        `INSERT INTO predictions (device, epoch, seq, site, asset, ts, rul, unit, model, alert, received)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device, epoch, seq) DO NOTHING`,
        [p.device, p.epoch, p.seq, p.site, p.asset, p.ts, p.rul, p.unit, p.model, p.alert ? 1 : 0, now],
      );
      if (ins.changes === 0) continue;
      const up = await tx.run(
        `INSERT INTO twin_predictions (device, asset, site, ts, epoch, seq, rul, unit, model, alert) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (device, asset) DO UPDATE SET site = excluded.site, ts = excluded.ts, epoch = excluded.epoch, seq = excluded.seq,
           rul = excluded.rul, unit = excluded.unit, model = excluded.model, alert = excluded.alert
         WHERE (excluded.ts, excluded.epoch, excluded.seq) > (twin_predictions.ts, twin_predictions.epoch, twin_predictions.seq)`,
        [p.device, p.asset, p.site, p.ts, p.epoch, p.seq, p.rul, p.unit, p.model, p.alert ? 1 : 0],
      );
      if (up.changes > 0) {
        newest.push(p);
        this.cache.touch(tx, p.device);
      }
    }
    return newest;
  }

  /** The twin's `predictions`: the newest per asset. */
  async latest(device: string, q: Queryable = this.store): Promise<Record<string, PredictionView>> {
    const rows = await q.all<Row>('SELECT * FROM twin_predictions WHERE device = ? ORDER BY asset', [device]);
    return Object.fromEntries(rows.map((r) => [r.asset, view(r)]));
  }

  /** The cached `predictions` of the device (the same frozen object until it changes), or undefined: not cached. */
  cached(device: string): Readonly<Record<string, PredictionView>> | undefined {
    return this.cache.get(device);
  }

  /** Taken before a read whose result goes to `keepJson`. */
  mark(): number {
    return this.cache.mark();
  }

  /**
   * A scalar subquery: the newest predictions of the device named by `deviceColumn`, as JSON — a
   * point read fetches them in the same statement as the twin (twins/twin-store.ts).
   */
  latestJsonSql(dialect: Dialect, deviceColumn: string): string {
    return dialect.jsonRows(COLUMNS, 'twin_predictions p', `p.device = ${deviceColumn}`, 'p.asset');
  }

  /** Caches what a `latestJsonSql` subquery read after `mark` (by the cache's rules) and answers it. */
  keepJson(device: string, json: string, mark: number): Readonly<Record<string, PredictionView>> {
    const rows = JSON.parse(json) as Row[];
    const entry = rows.length === 0 ? NONE : Object.freeze(Object.fromEntries(rows.map((r) => [r.asset, view(r)])));
    this.cache.set(device, entry, mark);
    return entry;
  }

  /** The twin's `predictions` of one device, from the cache when it holds them (the same frozen object until they change). */
  async latestOf(device: string): Promise<Readonly<Record<string, PredictionView>>> {
    return (await this.latestMany([device])).get(device) ?? NONE;
  }

  /** The same for many devices at once (twin lists and point reads), from the cache where it holds them. */
  async latestMany(devices: readonly string[]): Promise<Map<string, Readonly<Record<string, PredictionView>>>> {
    const out = new Map<string, Readonly<Record<string, PredictionView>>>();
    const missing: string[] = [];
    for (const d of devices) {
      const hit = this.cache.get(d);
      if (hit === undefined) missing.push(d);
      else if (hit !== NONE) out.set(d, hit);
    }
    if (missing.length === 0) return out;
    // Read outside any transaction: cached only if no change arrived meanwhile (it could be stale).
    const mark = this.cache.mark();
    const read = new Map<string, Record<string, PredictionView>>();
    for (let i = 0; i < missing.length; i += 500) {
      const part = missing.slice(i, i + 500);
      const rows = await this.store.all<Row>(
        `SELECT * FROM twin_predictions WHERE device IN (${part.map(() => '?').join(', ')}) ORDER BY device, asset`,
        part,
      );
      for (const r of rows) {
        const m = read.get(r.device) ?? {};
        m[r.asset] = view(r);
        read.set(r.device, m);
      }
    }
    for (const d of missing) {
      const m = read.get(d);
      const entry = m === undefined ? NONE : Object.freeze(m);
      if (m !== undefined) out.set(d, entry);
      this.cache.set(d, entry, mark);
    }
    return out;
  }

  /** History of one device (one asset or all), oldest first, cursor-paged. */
  async history(device: string, q: HistoryQuery): Promise<{ items: PredictionView[]; next: string | null }> {
    const where = new Where('device = ?', device).given('asset = ?', q.asset).given('ts >= ?', q.from).given('ts < ?', q.to);
    if (q.after !== undefined) {
      const [ts, epoch, seq] = q.after.split(':').map(Number);
      where.add('(ts, epoch, seq) > (?, ?, ?)', ts!, epoch!, seq!);
    }
    const rows = await this.store.all<Row>(`SELECT * FROM predictions WHERE ${where.sql} ORDER BY ts, epoch, seq LIMIT ?`, [
      ...where.params,
      q.limit + 1,
    ]);
    const more = rows.length > q.limit;
    const items = rows.slice(0, q.limit);
    const last = items[items.length - 1];
    return { items: items.map(view), next: more && last ? `${last.ts}:${last.epoch}:${last.seq}` : null };
  }

  /** The `rul_low` signal: every (device, asset) whose newest prediction is below the device's threshold. */
  async lowRul(): Promise<Observation[]> {
    const rows = await this.store.all<Row>('SELECT * FROM twin_predictions WHERE alert = 1 ORDER BY device, asset');
    return rows.map((r) => ({
      key: `${r.device}/${r.asset}`,
      site: r.site,
      device: r.device,
      value: r.rul,
      summary: `${r.device} ${r.asset}: ${r.rul} ${r.unit}s of remaining useful life predicted by ${r.model} at ${new Date(Number(r.ts)).toISOString()}`,
      labels: { asset: r.asset, model: r.model, runbook: 'docs/runbooks/low-remaining-life.md' },
    }));
  }

  /** Drops history older than `before` (received time); the twin's newest stay. */
  async prune(before: number): Promise<number> {
    return (await this.store.run('DELETE FROM predictions WHERE received < ?', [before])).changes;
  }
}
