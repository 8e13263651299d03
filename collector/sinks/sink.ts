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

// PermanentSinkError and RetryableSinkError live in common/errors.ts with every other error class.
