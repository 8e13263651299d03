/**
 * Drift histograms in the cloud: each `drift` reading stored once by its identity (device, epoch,
 * seq), so merged counts are exact however often a batch was retried; references frozen per
 * (model version, cohort); evaluations kept per window for the API and the `model_drift` signal.
 */
import type { PackedHistogram } from '../../common/drift/histogram.js';
import type { DriftQuantity } from '../../common/models/manifest.js';
import type { Store, Tx } from '../store/store.js';
import { Where } from '../store/where.js';
import type { HistogramRow, StreamDrift } from './evaluate.js';

export interface DriftHistogramRow {
  device: string;
  epoch: number;
  seq: number;
  site: string;
  model: string;
  stream: string;
  quantity: DriftQuantity;
  from: number;
  to: number;
  hist: PackedHistogram;
}

interface StoredRow {
  device: string;
  site: string;
  stream: string;
  quantity: DriftQuantity;
  lo: number;
  hi: number;
  bins: number;
  first: number;
  counts: string;
  n: number;
}

export interface ReferenceRow {
  stream: string;
  quantity: DriftQuantity;
  hist: PackedHistogram;
  source: string;
  from: number;
  to: number;
}

export interface EvaluationRow extends StreamDrift {
  model: string;
  cohort: string;
  windowStart: number;
  windowEnd: number;
  site: string | null;
}

const packed = (r: { lo: number; hi: number; bins: number; first: number; counts: string }): PackedHistogram => ({
  lo: Number(r.lo),
  hi: Number(r.hi),
  bins: Number(r.bins),
  first: Number(r.first),
  counts: JSON.parse(r.counts) as number[],
});

/** A cohort: `site:<site>` or `tag:<key>=<value>` (devices whose twin has that tag). */
export type Cohort = { kind: 'site'; site: string } | { kind: 'tag'; key: string; value: string };

export function parseCohort(s: string): Cohort | undefined {
  if (s.startsWith('site:') && s.length > 5) return { kind: 'site', site: s.slice(5) };
  const m = /^tag:([A-Za-z0-9_-]{1,64})=(.{1,256})$/.exec(s);
  return m ? { kind: 'tag', key: m[1]!, value: m[2]! } : undefined;
}

export class DriftStore {
  constructor(private readonly store: Store) {}

  /** Stores histograms in the caller's (ingest) transaction; a duplicate identity is a no-op. */
  async persist(tx: Tx, rows: readonly DriftHistogramRow[], now: number): Promise<void> {
    for (const h of rows) {
      const n = h.hist.counts.reduce((a, b) => a + b, 0);
      await tx.run(
        `INSERT INTO drift_histograms (device, epoch, seq, site, model, stream, quantity, from_ts, to_ts, lo, hi, bins, first, counts, n, received)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device, epoch, seq) DO NOTHING`,
        [
          h.device,
          h.epoch,
          h.seq,
          h.site,
          h.model,
          h.stream,
          h.quantity,
          h.from,
          h.to,
          h.hist.lo,
          h.hist.hi,
          h.hist.bins,
          h.hist.first,
          JSON.stringify(h.hist.counts),
          n,
          now,
        ],
      );
    }
  }

  /** Model versions with histograms ending in [from, to), and the sites they came from. */
  async active(from: number, to: number): Promise<{ model: string; site: string }[]> {
    return this.store.all<{ model: string; site: string }>(
      'SELECT DISTINCT model, site FROM drift_histograms WHERE to_ts >= ? AND to_ts < ? ORDER BY model, site',
      [from, to],
    );
  }

  /** When a model version's cohort sent its first histogram (the start of its baseline). */
  async firstSeen(model: string, devices: readonly string[] | null, site: string | null): Promise<number | undefined> {
    const { sql, params } = this.scope(model, devices, site);
    const r = await this.store.get<{ t: number | null }>(`SELECT min(from_ts) AS t FROM drift_histograms WHERE ${sql}`, params);
    return r?.t === null || r?.t === undefined ? undefined : Number(r.t);
  }

  private scope(model: string, devices: readonly string[] | null, site: string | null): Where {
    const where = new Where('model = ?', model);
    if (site !== null) where.add('site = ?', site);
    if (devices !== null) where.add(devices.length === 0 ? '1 = 0' : `device IN (${devices.map(() => '?').join(', ')})`, ...devices);
    return where;
  }

  /** Every histogram of the cohort whose interval ended in [from, to): what the evaluator merges. */
  async histograms(
    model: string,
    devices: readonly string[] | null,
    site: string | null,
    from: number,
    to: number,
  ): Promise<HistogramRow[]> {
    const { sql, params } = this.scope(model, devices, site);
    const rows = await this.store.all<StoredRow>(
      `SELECT device, site, stream, quantity, lo, hi, bins, first, counts, n FROM drift_histograms WHERE ${sql} AND to_ts > ? AND to_ts <= ?`,
      [...params, from, to],
    );
    return rows.map((r) => ({ stream: r.stream, quantity: r.quantity, hist: packed(r) }));
  }

  async references(model: string, cohort: string): Promise<ReferenceRow[]> {
    const rows = await this.store.all<StoredRow & { source: string; from_ts: number; to_ts: number }>(
      'SELECT * FROM drift_references WHERE model = ? AND cohort = ?',
      [model, cohort],
    );
    return rows.map((r) => ({
      stream: r.stream,
      quantity: r.quantity,
      hist: packed(r),
      source: r.source,
      from: Number(r.from_ts),
      to: Number(r.to_ts),
    }));
  }

  /** Freezes a cohort's reference (its first days after rollout); an existing one is kept. */
  async saveReferences(model: string, cohort: string, refs: readonly ReferenceRow[], now: number): Promise<void> {
    await this.store.tx(async (tx) => {
      for (const r of refs) {
        await tx.run(
          `INSERT INTO drift_references (model, cohort, stream, quantity, lo, hi, bins, first, counts, n, source, from_ts, to_ts, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (model, cohort, stream, quantity) DO NOTHING`,
          [
            model,
            cohort,
            r.stream,
            r.quantity,
            r.hist.lo,
            r.hist.hi,
            r.hist.bins,
            r.hist.first,
            JSON.stringify(r.hist.counts),
            r.hist.counts.reduce((a, b) => a + b, 0),
            r.source,
            r.from,
            r.to,
            now,
          ],
        );
      }
    });
  }

  /** Stores evaluations; a stream that starts drifting in a window emits a `drift` change (SSE, the alert engine's wake-up). */
  async saveEvaluations(rows: readonly EvaluationRow[], now: number): Promise<void> {
    await this.store.tx(async (tx) => {
      for (const e of rows) {
        const prev = await tx.get<{ drift: number }>(
          'SELECT drift FROM drift_evaluations WHERE model = ? AND cohort = ? AND window_start = ? AND stream = ? AND quantity = ?',
          [e.model, e.cohort, e.windowStart, e.stream, e.quantity],
        );
        if (e.drift && Number(prev?.drift ?? 0) === 0)
          tx.emit({
            type: 'drift',
            site: e.site ?? '',
            device: null,
            data: {
              model: e.model,
              cohort: e.cohort,
              stream: e.stream,
              quantity: e.quantity,
              ks: e.ks,
              p: e.p,
              psi: e.psi,
              js: e.js,
              window: new Date(e.windowStart).toISOString(),
            },
          });
        await tx.run(
          `INSERT INTO drift_evaluations (model, cohort, window_start, window_end, stream, quantity, ks, p, psi, js, n, reference_n, drift, reason, site, evaluated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (model, cohort, window_start, stream, quantity) DO UPDATE SET window_end = excluded.window_end, ks = excluded.ks,
             p = excluded.p, psi = excluded.psi, js = excluded.js, n = excluded.n, reference_n = excluded.reference_n,
             drift = excluded.drift, reason = excluded.reason, site = excluded.site, evaluated_at = excluded.evaluated_at`,
          [
            e.model,
            e.cohort,
            e.windowStart,
            e.windowEnd,
            e.stream,
            e.quantity,
            e.ks ?? null,
            e.p ?? null,
            e.psi ?? null,
            e.js ?? null,
            e.n ?? 0,
            e.referenceN ?? null,
            e.drift ? 1 : 0,
            e.reason ?? null,
            e.site,
            now,
          ],
        );
      }
    });
  }

  async evaluations(model: string, cohort: string | undefined, from: number, to: number): Promise<EvaluationRow[]> {
    const rows = await this.store.all<Record<string, unknown>>(
      `SELECT * FROM drift_evaluations WHERE model = ? ${cohort === undefined ? '' : 'AND cohort = ?'} AND window_end > ? AND window_start < ?
       ORDER BY cohort, window_start, stream, quantity`,
      cohort === undefined ? [model, from, to] : [model, cohort, from, to],
    );
    return rows.map(evaluationOf);
  }

  /** The `model_drift` signal: the newest window of each (model, cohort, stream, quantity), where it drifts. */
  async drifting(since: number): Promise<EvaluationRow[]> {
    const rows = await this.store.all<Record<string, unknown>>(
      `SELECT e.* FROM drift_evaluations e JOIN (
         SELECT model, cohort, stream, quantity, max(window_start) AS w FROM drift_evaluations WHERE window_end > ? GROUP BY model, cohort, stream, quantity
       ) l ON e.model = l.model AND e.cohort = l.cohort AND e.stream = l.stream AND e.quantity = l.quantity AND e.window_start = l.w
       WHERE e.drift = 1 ORDER BY e.model, e.cohort, e.stream, e.quantity`,
      [since],
    );
    return rows.map(evaluationOf);
  }

  /** Retention: histograms and evaluations older than `before`; references stay (they are the baseline). */
  async prune(before: number): Promise<number> {
    const a = await this.store.run('DELETE FROM drift_histograms WHERE to_ts < ?', [before]);
    const b = await this.store.run('DELETE FROM drift_evaluations WHERE window_end < ?', [before]);
    return a.changes + b.changes;
  }
}

function evaluationOf(r: Record<string, unknown>): EvaluationRow {
  const num = (k: string): number | undefined => (r[k] === null || r[k] === undefined ? undefined : Number(r[k]));
  return {
    model: String(r['model']),
    cohort: String(r['cohort']),
    windowStart: Number(r['window_start']),
    windowEnd: Number(r['window_end']),
    stream: String(r['stream']),
    quantity: r['quantity'] as DriftQuantity,
    histograms: 0,
    ...(num('ks') === undefined ? {} : { ks: num('ks')!, p: num('p')!, psi: num('psi')!, js: num('js')! }),
    n: num('n') ?? 0,
    ...(num('reference_n') === undefined ? {} : { referenceN: num('reference_n')! }),
    drift: Number(r['drift']) === 1,
    ...(r['reason'] ? { reason: String(r['reason']) } : {}),
    site: r['site'] === null ? null : String(r['site']),
  };
}
