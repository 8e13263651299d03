/**
 * Fixed-bin histograms: what agents send for drift monitoring and what the cloud merges. The bins
 * are part of the model (its manifest entry, or the defaults below for its kind), never chosen
 * from the data, so two histograms of the same (model version, stream, quantity) always have the
 * same cells and merge exactly by adding integer counts: a cohort's merged histogram is the
 * histogram of the pooled readings, bit for bit.
 *
 * Cells: index 0 counts x < lo, 1..bins the equal-width bins of [lo, hi), bins + 1 counts x >= hi.
 * Values that are not finite are not counted (they never reach a model either).
 */
import { EdgetwinError, ErrorCodes } from '../errors.js';

export interface HistogramSpec {
  lo: number;
  hi: number;
  bins: number;
}

/** On the wire and in the store: the cells from `first` on, trailing empty cells dropped. */
export interface PackedHistogram extends HistogramSpec {
  first: number;
  counts: number[];
}

/** The most bins a histogram may have (wire and manifest checks use it). */
export const MAX_BINS = 256;

export const histogramSpecSchema = {
  type: 'object',
  required: ['lo', 'hi', 'bins'],
  properties: {
    lo: { type: 'number' },
    hi: { type: 'number' },
    bins: { type: 'integer', minimum: 1, maximum: MAX_BINS },
  },
} as const;

export function sameSpec(a: HistogramSpec, b: HistogramSpec): boolean {
  return a.lo === b.lo && a.hi === b.hi && a.bins === b.bins;
}

export function specKey(s: HistogramSpec): string {
  return `${s.lo}:${s.hi}:${s.bins}`;
}

function badSpec(s: HistogramSpec): string | undefined {
  if (!Number.isFinite(s.lo) || !Number.isFinite(s.hi) || !(s.hi > s.lo)) return 'hi must be above lo, both finite';
  if (!Number.isInteger(s.bins) || s.bins < 1 || s.bins > MAX_BINS) return `bins must be an integer from 1 to ${MAX_BINS}`;
  return undefined;
}

export class Histogram {
  readonly spec: HistogramSpec;
  /** bins + 2 cells: underflow, the bins, overflow. */
  readonly counts: Float64Array;
  private readonly scale: number;

  constructor(spec: HistogramSpec, counts?: ArrayLike<number>) {
    const why = badSpec(spec);
    if (why) throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, `histogram: ${why}`, { details: { ...spec } });
    this.spec = { lo: spec.lo, hi: spec.hi, bins: spec.bins };
    this.counts = new Float64Array(spec.bins + 2);
    this.scale = spec.bins / (spec.hi - spec.lo);
    if (counts) {
      if (counts.length !== this.counts.length)
        throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, `histogram: ${counts.length} cells, expected ${this.counts.length}`);
      this.counts.set(counts);
    }
  }

  /** The cell `x` falls in; -1 when x is not finite. */
  cell(x: number): number {
    if (!Number.isFinite(x)) return -1;
    if (x < this.spec.lo) return 0;
    if (x >= this.spec.hi) return this.spec.bins + 1;
    // Guarded: (x - lo) * scale can round up to `bins` just below hi.
    return Math.min(this.spec.bins, 1 + Math.floor((x - this.spec.lo) * this.scale));
  }

  add(x: number, n = 1): void {
    const c = this.cell(x);
    if (c >= 0) this.counts[c]! += n;
  }

  get total(): number {
    let n = 0;
    for (const c of this.counts) n += c;
    return n;
  }

  /**
   * Adds another histogram of the same spec; throws EDGETWIN_ERR_BAD_PAYLOAD when the cells differ.
   * `trusted`: a packed histogram already checked (checkPacked) when it was stored, not checked again.
   */
  merge(other: Histogram | PackedHistogram, trusted = false): this {
    const spec = other instanceof Histogram ? other.spec : other;
    if (!sameSpec(this.spec, spec)) {
      throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, 'histograms with different bins do not merge', {
        details: { a: specKey(this.spec), b: specKey(spec) },
      });
    }
    if (other instanceof Histogram) {
      for (let i = 0; i < this.counts.length; i++) this.counts[i]! += other.counts[i]!;
    } else {
      const { first, counts } = trusted ? other : checkPacked(other);
      for (let i = 0; i < counts.length; i++) this.counts[first + i]! += counts[i]!;
    }
    return this;
  }

  reset(): void {
    this.counts.fill(0);
  }

  pack(): PackedHistogram {
    let first = 0;
    let end = this.counts.length;
    while (first < end && this.counts[first] === 0) first++;
    while (end > first && this.counts[end - 1] === 0) end--;
    if (first === end) return { ...this.spec, first: 0, counts: [] }; // empty: nothing to send
    return { ...this.spec, first, counts: Array.from(this.counts.subarray(first, end)) };
  }

  static unpack(p: PackedHistogram, trusted = false): Histogram {
    return new Histogram(p).merge(p, trusted);
  }

  /** A histogram of raw values (reference data, tests). */
  static of(spec: HistogramSpec, values: Iterable<number>): Histogram {
    const h = new Histogram(spec);
    for (const v of values) h.add(v);
    return h;
  }
}

/** Checks a packed histogram from outside (wire, manifest, store); throws EDGETWIN_ERR_BAD_PAYLOAD naming the problem. */
export function checkPacked(p: PackedHistogram): PackedHistogram {
  const why =
    badSpec(p) ??
    (!Number.isInteger(p.first) || p.first < 0 ? 'first must be a non-negative integer' : undefined) ??
    (!Array.isArray(p.counts) || p.first + p.counts.length > p.bins + 2 ? 'counts run past the last cell' : undefined) ??
    (p.counts.every((c) => Number.isSafeInteger(c) && c >= 0) ? undefined : 'counts must be non-negative integers');
  if (why) throw new EdgetwinError(ErrorCodes.BAD_PAYLOAD, `histogram: ${why}`);
  return p;
}
