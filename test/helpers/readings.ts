/** Derived readings as an agent sends them: a failure model's prediction, and an input-drift histogram. */
import type { Histogram } from '../../common/drift/histogram.js';
import { mulberry32 } from '../../common/random.js';
import type { Reading } from '../../common/wire/record.js';

/** The remaining useful life of one asset by the committed failure model (`alert`: below the device's threshold). */
export function rulPrediction(seq: number, ts: number, asset: string, rul: number, alert = false): Reading {
  return {
    seq,
    ts,
    metric: `${asset}.rul`,
    value: rul,
    unit: 'cycle',
    model: 'rul-1.2.0',
    kind: 'prediction',
    asset,
    ...(alert ? { alert } : {}),
  };
}

/** The histogram `h` of `stream`'s inputs to `model` from `from` to `to` (the reading's time). */
export function driftReading(seq: number, from: number, to: number, stream: string, h: Histogram, model: string): Reading {
  return {
    seq,
    ts: to,
    metric: stream,
    value: h.total,
    unit: '1',
    model,
    kind: 'drift',
    drift: { stream, quantity: 'input', from, ...h.pack() },
  };
}

/** Standard normal draws (Box–Muller over mulberry32), the same sequence for the same seed. */
export function gauss(seed: number): () => number {
  const r = mulberry32(seed);
  return () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}
