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
  STORE_FULL: 'EDGETWIN_ERR_STORE_FULL',
  STORE_CORRUPT: 'EDGETWIN_ERR_STORE_CORRUPT',
  SINK: 'EDGETWIN_ERR_SINK',
  SOURCE: 'EDGETWIN_ERR_SOURCE',
  UPLINK: 'EDGETWIN_ERR_UPLINK',
  CLOSED: 'EDGETWIN_ERR_CLOSED',
  USAGE: 'EDGETWIN_ERR_USAGE',
  INTERNAL: 'EDGETWIN_ERR_INTERNAL',
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
