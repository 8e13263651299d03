/**
 * A sink is only connect / write / close: batching, retry, backoff, cursors and metrics belong to
 * the SinkRunner. `write` resolves once the destination has durably accepted the batch; it may
 * report per-record failures, which the runner counts and does not retry.
 */
export interface SpooledMessage {
  /** Spool row id. */
  id: number;
  /** Device id (partition key). */
  device: string;
  /** The telemetry batch exactly as the device published it (JSON text). */
  payload: string;
}

export interface SinkBatch {
  /** Stable across retries of the same batch: the destination's idempotency key. */
  batchId: string;
  siteId: string;
  messages: SpooledMessage[];
}

export interface SinkWriteResult {
  /** Messages the destination refused for good (bad data): not retried, counted. */
  rejected?: { id: number; code: string; message: string }[];
}

export interface Sink {
  readonly name: string;
  connect(): Promise<void>;
  write(batch: SinkBatch): Promise<SinkWriteResult>;
  close(): Promise<void>;
}

/**
 * The destination refuses this batch for good (malformed, too large): retrying it unchanged would
 * block the sink forever. The runner splits the batch in halves until the refused messages stand
 * alone, delivers the rest, and dead-letters the single messages that are still refused.
 */
export class PermanentSinkError extends Error {
  constructor(message: string, readonly code: string, opts?: { cause?: unknown }) {
    super(message, opts);
    this.name = 'PermanentSinkError';
  }
}

/** A failure the runner should retry (network, 5xx, throttling). Anything else thrown is treated the same. */
export class RetryableSinkError extends Error {
  constructor(message: string, readonly retryAfterMs?: number, opts?: { cause?: unknown }) {
    super(message, opts);
    this.name = 'RetryableSinkError';
  }
}
