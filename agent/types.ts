/**
 * The agent's pipeline is three small interfaces (Telegraf/Vector style): Sources produce
 * readings, a Scorer annotates them, and the Agent runner owns batching into the outbox and the
 * uplink. A Source or Scorer never touches storage or the network to the collector.
 */
import type { Reading } from '../common/record.js';

/** A reading before the agent gives it its identity (seq). */
export type SourceReading = Omit<Reading, 'seq'>;

export interface SourceContext {
  /** Hands readings to the agent; they are durable once the next outbox flush commits. */
  emit(readings: SourceReading[]): void;
  /** Reports a source failure; the agent logs, counts and shows it in health. */
  fail(err: unknown): void;
  /** Aborted when the agent stops. */
  signal: AbortSignal;
}

export interface Source {
  readonly name: string;
  start(ctx: SourceContext): Promise<void> | void;
  stop(): Promise<void> | void;
}

export interface Scorer {
  /** Version of the active model, reported in the twin. */
  readonly modelVersion: string;
  /**
   * Sets `score` (calibrated, [0, 1]), `model` and, above the alert threshold, `alert` on each
   * reading, in place. Must never throw for a bad reading: it leaves it unscored instead.
   */
  score(readings: SourceReading[]): Promise<void> | void;
  close(): Promise<void> | void;
}
