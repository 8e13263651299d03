/**
 * The cloud's drift evaluation, without storage: histograms from many devices merged per stream
 * and quantity (exactly: integer counts added, common/drift/histogram.ts), then each merged one
 * compared with its reference (common/drift/compare.ts). The drift service feeds it rows of one
 * (model version, cohort, window); `npm run bench:drift` times it on 10,000 streams.
 */
import { compareHistograms, type DriftFigures } from '../../common/drift/compare.js';
import { Histogram, sameSpec, type PackedHistogram } from '../../common/drift/histogram.js';
import type { DriftQuantity } from '../../common/models/manifest.js';

export interface HistogramRow {
  stream: string;
  quantity: DriftQuantity;
  hist: PackedHistogram;
}

export interface StreamDrift extends Partial<DriftFigures> {
  stream: string;
  quantity: DriftQuantity;
  /** Devices' histograms merged into this one. */
  histograms: number;
  /** Why there are no figures (no reference yet, bins that differ from the reference's). */
  reason?: string;
}

const key = (stream: string, quantity: string): string => `${stream}\u0000${quantity}`;

export class MergedStreams {
  readonly streams = new Map<
    string,
    { stream: string; quantity: DriftQuantity; hist: Histogram; histograms: number; mismatched: number }
  >();

  /**
   * Adds one device's histogram; one whose bins differ from the first seen for its stream is
   * counted, not merged. Rows come from the store, whose histograms were checked at ingest.
   */
  add(row: HistogramRow): void {
    const k = key(row.stream, row.quantity);
    const s = this.streams.get(k);
    if (!s) {
      this.streams.set(k, {
        stream: row.stream,
        quantity: row.quantity,
        hist: Histogram.unpack(row.hist, true),
        histograms: 1,
        mismatched: 0,
      });
      return;
    }
    if (!sameSpec(s.hist.spec, row.hist)) {
      s.mismatched++;
      return;
    }
    s.hist.merge(row.hist, true);
    s.histograms++;
  }

  get(stream: string, quantity: DriftQuantity): Histogram | undefined {
    return this.streams.get(key(stream, quantity))?.hist;
  }
}

/** Compares every merged stream with its reference; streams without one get a reason instead of figures. */
export function evaluateStreams(
  current: MergedStreams,
  reference: (stream: string, quantity: DriftQuantity) => Histogram | undefined,
): StreamDrift[] {
  const out: StreamDrift[] = [];
  for (const s of current.streams.values()) {
    const ref = reference(s.stream, s.quantity);
    const base = { stream: s.stream, quantity: s.quantity, histograms: s.histograms };
    if (!ref) out.push({ ...base, n: s.hist.total, reason: 'no reference' });
    else if (!sameSpec(ref.spec, s.hist.spec)) out.push({ ...base, n: s.hist.total, reason: 'bins differ from the reference' });
    else out.push({ ...base, ...compareHistograms(s.hist, ref) });
  }
  return out;
}
