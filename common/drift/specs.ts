/**
 * Which bins a model's drift histograms use. They must be the same on every device and in the
 * reference, so they come from the model: its manifest entry's `drift.bins`, else these defaults
 * for its kind. Streams: an anomaly model's stream is the metric it scores; a failure model's
 * inputs are its feature names (merged over the device's assets) and its error and output the
 * stream `rul`.
 */
import type { AnyModelEntry, DriftQuantity } from '../models/manifest.js';
import type { HistogramSpec } from './histogram.js';

export const DRIFT_QUANTITIES: readonly DriftQuantity[] = ['input', 'error', 'output'];

/** The stream of a failure model's output and error histograms. */
export const RUL_STREAM = 'rul';

export type DriftSpecs = Record<DriftQuantity, HistogramSpec>;

/**
 * Anomaly models: input = the reading normalised by its stream's running centre and spread (what
 * the forecaster sees), error = the raw surprise |y − μ| / b, output = the calibrated score.
 */
export const ANOMALY_DRIFT_BINS: DriftSpecs = {
  input: { lo: -8, hi: 8, bins: 64 },
  error: { lo: 0, hi: 16, bins: 64 },
  output: { lo: 0, hi: 1, bins: 50 },
};

/**
 * Failure models: input = each feature as scaled for the model (training standard deviations:
 * 64 bins of 0.125 σ), error = how far a prediction moved from "one step less than the previous
 * one" (rul_t − rul_{t−1} + 1: there is no ground truth until the asset fails), output = the
 * remaining life in 25 bins up to the model's cap.
 */
export function failureDriftBins(rulCap: number): DriftSpecs {
  return {
    input: { lo: -4, hi: 4, bins: 64 },
    error: { lo: -10, hi: 10, bins: 40 },
    output: { lo: 0, hi: rulCap, bins: 25 },
  };
}

export function driftSpecsOf(entry: AnyModelEntry): DriftSpecs {
  const defaults = entry.kind === 'failure' ? failureDriftBins(entry.rulCap) : ANOMALY_DRIFT_BINS;
  return { ...defaults, ...entry.drift?.bins };
}
