/**
 * Readings that are not measurements (common/wire/record.ts `kind`): a failure model's
 * `prediction` of an asset's remaining life, and `drift` histograms of a model's inputs, errors and
 * outputs. The ingest pipeline hands every stored reading with a `kind` to one of these per run
 * instead of the twin's metrics (a prediction is not the newest value of a sensor, and an RUL alert
 * is not an anomaly), then writes them in the same transaction as the batch: stored once by
 * identity, acknowledged only once durable, like any reading. Drift readings stay out of silver
 * (bronze keeps the batch as received); predictions stay in silver as the metric `<asset>.rul`.
 */
import { EdgetwinError, ErrorCodes, errorMessage } from '../../common/errors.js';
import { checkPacked } from '../../common/drift/histogram.js';
import type { Reading } from '../../common/wire/record.js';
import type { Tx } from '../store/store.js';
import type { DriftHistogramRow, DriftStore } from '../drift/drift-store.js';
import type { PredictionRow, PredictionStore } from '../predictions/prediction-store.js';

export interface DerivedStores {
  predictions: PredictionStore;
  drift: DriftStore;
}

export class DerivedReadings {
  readonly predictions: PredictionRow[] = [];
  readonly histograms: DriftHistogramRow[] = [];

  constructor(private readonly stores: DerivedStores) {}

  /**
   * Takes a reading with a `kind` (answers false for a measurement). A drift histogram whose cells
   * do not fit its bins throws EDGETWIN_ERR_BAD_PAYLOAD: the caller quarantines that reading.
   */
  take(site: string, device: string, epoch: number, r: Reading): boolean {
    if (r.kind === 'prediction') {
      this.predictions.push({
        device,
        epoch,
        seq: r.seq,
        site,
        asset: r.asset!,
        ts: r.ts,
        rul: r.value,
        unit: r.unit,
        model: r.model!,
        alert: r.alert === true,
      });
      return true;
    }
    if (r.kind === 'drift') {
      const d = r.drift!;
      const hist = { lo: d.lo, hi: d.hi, bins: d.bins, first: d.first, counts: d.counts };
      checkPacked(hist);
      if (d.from > r.ts)
        throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, 'drift interval ends before it starts', { details: { from: d.from, ts: r.ts } });
      this.histograms.push({
        device,
        epoch,
        seq: r.seq,
        site,
        model: r.model!,
        stream: d.stream,
        quantity: d.quantity,
        from: d.from,
        to: r.ts,
        hist,
      });
      return true;
    }
    return false;
  }

  /** take(), with a damaged histogram answered as its problem (the caller quarantines the reading) instead of thrown. */
  tryTake(site: string, device: string, epoch: number, r: Reading): string | undefined {
    try {
      this.take(site, device, epoch, r);
      return undefined;
    } catch (err) {
      return errorMessage(err);
    }
  }

  get empty(): boolean {
    return this.predictions.length === 0 && this.histograms.length === 0;
  }

  /** Writes them in the ingest transaction; emits one `prediction` event per asset whose newest prediction changed. */
  async persist(tx: Tx, now: number): Promise<void> {
    if (this.predictions.length > 0) {
      const newest = await this.stores.predictions.persist(tx, this.predictions, now);
      const last = new Map<string, PredictionRow>();
      for (const p of newest) last.set(`${p.device}\u0000${p.asset}`, p);
      for (const p of last.values())
        tx.emit({
          type: 'prediction',
          site: p.site,
          device: p.device,
          data: { asset: p.asset, rulCycles: p.rul, unit: p.unit, at: new Date(p.ts).toISOString(), model: p.model, alert: p.alert },
        });
    }
    if (this.histograms.length > 0) await this.stores.drift.persist(tx, this.histograms, now);
  }
}
