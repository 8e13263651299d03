/**
 * The measured part of a reading: what the lake stores for every reading, whichever boundary it
 * crossed. Its own file so that record.ts (the wire schema) and storable.ts (what the lake can
 * hold, which record.ts uses) share it without importing each other.
 */
export interface Sample {
  /** Sample time, milliseconds since the Unix epoch (UTC). */
  ts: number;
  metric: string;
  value: number;
  unit: string;
  /** Calibrated anomaly score in [0, 1], when a model scored the reading. */
  score?: number;
  /** Version of the model that produced `score`. */
  model?: string;
}
