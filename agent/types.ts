/**
 * The agent's pipeline is three small interfaces (Telegraf/Vector style): Sources produce
 * readings, a Scorer annotates them, and the Agent runner owns batching into the outbox and the
 * uplink. A Source or Scorer never touches storage or the network to the collector.
 */
import type { EdgetwinError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { Reading } from '../common/wire/record.js';

/** A reading before the agent gives it its identity (seq). */
export type SourceReading = Omit<Reading, 'seq'>;

/** A reading the agent refused at commit (a value the lake cannot store, one metric name too many), by its index in the call. */
export interface RefusedReading {
  index: number;
  err: EdgetwinError;
}

export interface SourceContext {
  /** Hands readings to the agent; they are durable once the next outbox flush commits. */
  emit(readings: SourceReading[]): void;
  /**
   * Like emit, but commits the readings at once in one transaction of their own and resolves when
   * they are durable; all or nothing (rejects with EDGETWIN_ERR_STORE_FULL when the outbox is full
   * and whenFull=block): for sources that acknowledge to someone else (HTTP ingest). Resolves to the
   * readings refused at commit (counted and logged already), so the source can answer for them.
   */
  emitDurable(readings: SourceReading[]): Promise<RefusedReading[] | void>;
  /**
   * Reports a source failure: the agent logs and counts it, shows it in health, stops the source
   * and starts it again after a backoff. Other sources carry on.
   */
  fail(err: unknown): void;
  /** One bad input record (a line, a request): logged with its code and counted; the source carries on. */
  reject(err: EdgetwinError): void;
  /** The source has ended on its own (file replayed, stdin closed): it is not restarted. */
  finished(): void;
  /** Resolves when the agent has room for more readings (replay and stdin wait on it instead of piling up memory). */
  waitForRoom(): Promise<void>;
  log: Logger;
  /** Aborted when the source is stopped (agent shutdown, restart after a failure). */
  signal: AbortSignal;
}

export interface Source {
  readonly name: string;
  start(ctx: SourceContext): Promise<void> | void;
  stop(): Promise<void> | void;
  /**
   * For sources that sample on an interval: applies a new one live (desired `samplingIntervalMs`);
   * undefined restores the configured interval. Returns the interval now in effect.
   */
  setIntervalMs?(ms: number | undefined): number;
}

export interface Scorer {
  /** Version of the active model, reported in the twin. */
  readonly modelVersion: string;
  /** Versions of every model it runs, reported as the twin's `versions` (e.g. `{ model, failureModel }`); default `{ model: modelVersion }`. */
  versions?(): Record<string, string>;
  /**
   * Sets `score` (calibrated, [0, 1]), `model` and, above the alert threshold, `alert` on each
   * reading, in place. May append derived readings to the array (a failure model's predictions,
   * drift histograms: agent/scoring/chain.ts); they are committed with the batch. Must never throw
   * for a bad reading: it leaves it unscored instead.
   */
  score(readings: SourceReading[]): Promise<void> | void;
  close(): Promise<void> | void;
}
