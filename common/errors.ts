/**
 * Every error edgetwin raises on purpose carries a stable code (EDGETWIN_ERR_*), so that logs,
 * metrics labels, HTTP bodies and tests can key on it without parsing messages.
 */
export const ErrorCodes = {
  CONFIG: 'EDGETWIN_ERR_CONFIG',
  BAD_PAYLOAD: 'EDGETWIN_ERR_BAD_PAYLOAD',
  BAD_TOPIC: 'EDGETWIN_ERR_BAD_TOPIC',
  BAD_REQUEST: 'EDGETWIN_ERR_BAD_REQUEST',
  NOT_FOUND: 'EDGETWIN_ERR_NOT_FOUND',
  UNAUTHORIZED: 'EDGETWIN_ERR_UNAUTHORIZED',
  FORBIDDEN: 'EDGETWIN_ERR_FORBIDDEN',
  PAYLOAD_TOO_LARGE: 'EDGETWIN_ERR_PAYLOAD_TOO_LARGE',
  /** An input record (stdin line, CSV row, HTTP reading) that is not a valid reading: skipped and counted. */
  BAD_READING: 'EDGETWIN_ERR_BAD_READING',
  RATE_LIMITED: 'EDGETWIN_ERR_RATE_LIMITED',
  STORE_FULL: 'EDGETWIN_ERR_STORE_FULL',
  STORE_CORRUPT: 'EDGETWIN_ERR_STORE_CORRUPT',
  SINK: 'EDGETWIN_ERR_SINK',
  SOURCE: 'EDGETWIN_ERR_SOURCE',
  UPLINK: 'EDGETWIN_ERR_UPLINK',
  CLOSED: 'EDGETWIN_ERR_CLOSED',
  USAGE: 'EDGETWIN_ERR_USAGE',
  INTERNAL: 'EDGETWIN_ERR_INTERNAL',
  /** Device-twin sync failed: a twin request timed out, or the cloud's desired feed failed. */
  TWIN: 'EDGETWIN_ERR_TWIN',
  /** An If-Match precondition did not hold (a stale ETag): re-read and retry. */
  PRECONDITION_FAILED: 'EDGETWIN_ERR_PRECONDITION_FAILED',
  /** A write that must be conditional came without If-Match. */
  PRECONDITION_REQUIRED: 'EDGETWIN_ERR_PRECONDITION_REQUIRED',
  /** The lakehouse (Parquet history) could not be written or read. */
  LAKEHOUSE: 'EDGETWIN_ERR_LAKEHOUSE',
  /** A model that is not fit to run: digest, signature, manifest entry, shapes, or onnxruntime refused it. */
  MODEL: 'EDGETWIN_ERR_MODEL',
  /** A rolled-out model was replaced by the previous one (its alert rate exploded); details say why. */
  MODEL_ROLLED_BACK: 'EDGETWIN_ERR_MODEL_ROLLED_BACK',
  /** The resource exists with other content (a model version uploaded again with other bytes). */
  CONFLICT: 'EDGETWIN_ERR_CONFLICT',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class EdgetwinError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, opts: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'EdgetwinError';
    this.code = code;
    this.details = opts.details;
  }

  toJSON(): { code: ErrorCode; message: string; details?: Record<string, unknown> } {
    return this.details ? { code: this.code, message: this.message, details: this.details } : { code: this.code, message: this.message };
  }
}

export function isEdgetwinError(err: unknown, code?: ErrorCode): err is EdgetwinError {
  return err instanceof EdgetwinError && (code === undefined || err.code === code);
}

/** A short message for logs from anything thrown. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
