/**
 * Every error edgetwin raises on purpose carries a stable code (EDGETWIN_ERR_*), so that logs,
 * metrics labels, HTTP bodies and tests can key on it without parsing messages.
 *
 * This is the one table of codes (fastify/undici style): each row says which HTTP status the
 * cloud API answers with (cloud/api/server.ts has the one error handler that reads it) and
 * whether the caller may retry the same request unchanged. A new code is one row here.
 */

export interface ErrorSpec {
  /** HTTP status of an API answer with this code (500 for codes that never reach HTTP). */
  readonly status: number;
  /** The same request may succeed later (back off and retry); false: retrying unchanged fails again. */
  readonly retryable: boolean;
}

const row = (status: number, retryable: boolean): ErrorSpec => ({ status, retryable });

export const ERROR_TABLE = {
  /** Invalid configuration (file, overrides or environment): the daemon refuses to start. */
  CONFIG: row(500, false),
  BAD_PAYLOAD: row(400, false),
  BAD_TOPIC: row(400, false),
  BAD_REQUEST: row(400, false),
  NOT_FOUND: row(404, false),
  UNAUTHORIZED: row(401, false),
  FORBIDDEN: row(403, false),
  PAYLOAD_TOO_LARGE: row(413, false),
  /** A request body in an encoding this server does not decode (`content-encoding` other than gzip/identity). */
  UNSUPPORTED_MEDIA_TYPE: row(415, false),
  /** An input record (stdin line, CSV row, HTTP reading) that is not a valid reading: skipped and counted. */
  BAD_READING: row(400, false),
  /**
   * A value the lakehouse cannot store (common/wire/storable.ts): a lone surrogate in a string, an
   * integer outside [0, 2^53), a non-finite number, a sample time outside the window.
   */
  BAD_VALUE: row(400, false),
  /** Over a configured limit: metrics per device, twin size, JSON depth. */
  LIMIT_EXCEEDED: row(422, false),
  RATE_LIMITED: row(429, true),
  /** A bounded store is full (outbox, spool, ingest staging): back off, the consumer drains it. */
  STORE_FULL: row(503, true),
  /** The disk (or the file system's quota) is full: nothing was written; retryable once space is freed. Never "corrupt". */
  DISK_FULL: row(507, true),
  /** The cloud's database (PostgreSQL, or a locked SQLite file) cannot be reached or answered too slowly: nothing was changed; retry after Retry-After. */
  STORE_UNAVAILABLE: row(503, true),
  /**
   * The database's schema is older than this build and the role the cloud logs in as may not change
   * it (a least-privilege deployment): the daemon refuses to start; run `edgetwin cloud setup-db` as the owner.
   */
  STORE_SCHEMA: row(500, false),
  /** A file or database whose content cannot be read back (checksum, quick_check, unparsable state). */
  STORE_CORRUPT: row(500, false),
  /** A read or write that failed in the operating system or the database engine (not corruption, not full). */
  IO: row(500, true),
  SINK: row(502, true),
  SOURCE: row(502, true),
  UPLINK: row(502, true),
  /** The component is closing or closed: the call came too late. */
  CLOSED: row(503, true),
  /** A CLI invocation with wrong arguments. */
  USAGE: row(400, false),
  INTERNAL: row(500, false),
  /** Device-twin sync failed: a twin request timed out, or the cloud's desired feed failed. */
  TWIN: row(502, true),
  /** An If-Match precondition did not hold (a stale ETag): re-read and retry. */
  PRECONDITION_FAILED: row(412, false),
  /** A write that must be conditional came without If-Match. */
  PRECONDITION_REQUIRED: row(428, false),
  /** The lakehouse (Parquet history) could not be written or read. */
  LAKEHOUSE: row(503, true),
  /** A model that is not fit to run: digest, signature, manifest entry, shapes, or onnxruntime refused it. */
  MODEL: row(400, false),
  /** A rolled-out model was replaced by the previous one (its alert rate exploded); details say why. */
  MODEL_ROLLED_BACK: row(500, false),
  /** The resource exists with other content (a model version uploaded again with other bytes). */
  CONFLICT: row(409, false),
  /** The device belongs to another site (claimed on first contact); ids are global, as in IoT Hub. */
  DEVICE_CLAIMED: row(409, false),
  /** Another process holds the state directory (common/state-lock.ts): a second copy refuses to start. */
  STATE_LOCKED: row(409, false),
  /** The agent's deviceId differs from the one its state was written under, and no `outbox.onDeviceIdChange` was chosen. */
  DEVICE_ID_CHANGED: row(409, false),
  /** Direct method: the device is not connected (within connectTimeoutS), as IoT Hub's 404103 DeviceNotOnline. */
  DEVICE_NOT_ONLINE: row(404, true),
  /** Direct method: the device did not answer within responseTimeoutS, as IoT Hub's 504101 GatewayTimeout. */
  METHOD_TIMEOUT: row(504, true),
  /** The hop that held the device (its collector's channel, or the device's connection) went away mid-call: the method may or may not have run. */
  GATEWAY: row(502, true),
  /** The device's queue of device-bound messages is full (IoT Hub: 50 per device); nothing was queued. */
  DEVICE_QUEUE_FULL: row(429, false),
  /** The identity provider (OIDC discovery or its JWKS) could not be reached: the token was not judged; retry after Retry-After. */
  IDENTITY_PROVIDER: row(503, true),
  /** An alert notification could not be delivered (webhook, Slack, Teams, SMTP); after its retries it is dead-lettered. */
  NOTIFY: row(502, true),
  /** An audit export segment does not verify: a line was changed, removed or reordered (`edgetwin cloud audit verify`). */
  AUDIT_CHAIN: row(500, false),
} as const satisfies Record<string, ErrorSpec>;

export type ErrorName = keyof typeof ERROR_TABLE;
export type ErrorCode = `EDGETWIN_ERR_${ErrorName}`;

const PREFIX = 'EDGETWIN_ERR_';

/** `ErrorCodes.CONFIG === 'EDGETWIN_ERR_CONFIG'`, one per row of the table. */
export const ErrorCodes = Object.freeze(
  Object.fromEntries(Object.keys(ERROR_TABLE).map((name) => [name, `${PREFIX}${name}`])) as {
    readonly [K in ErrorName]: `EDGETWIN_ERR_${K}`;
  },
);

/** The table's row for a code, or undefined for a string that is not one of ours. */
export function errorSpec(code: string): ErrorSpec | undefined {
  if (!code.startsWith(PREFIX)) return undefined;
  const name = code.slice(PREFIX.length);
  return Object.hasOwn(ERROR_TABLE, name) ? ERROR_TABLE[name as ErrorName] : undefined;
}

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && errorSpec(code) !== undefined;
}

export class EdgetwinError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, opts: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'EdgetwinError';
    this.code = code;
    this.details = opts.details;
  }

  /** The HTTP status this error is answered with (from the table). */
  get status(): number {
    return errorSpec(this.code)?.status ?? 500;
  }

  /** Whether retrying the same request may succeed (from the table). */
  get retryable(): boolean {
    return errorSpec(this.code)?.retryable ?? false;
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

/** The code of anything thrown: its own EDGETWIN_ERR_* code, else INTERNAL. */
export function errorCodeOf(err: unknown): ErrorCode {
  return isEdgetwinError(err) ? err.code : ErrorCodes.INTERNAL;
}

/**
 * The code for a failed read or write of a local store (SQLite or a file): a full disk is
 * DISK_FULL, content that cannot be read back is STORE_CORRUPT, and every other failure of the
 * operating system or the engine (EIO, EACCES, SQLITE_IOERR, a busy lock) is IO — never corruption.
 */
export function storeErrorCode(err: unknown): ErrorCode {
  if (isEdgetwinError(err)) return err.code;
  const code = String((err as { code?: unknown } | null)?.code ?? '');
  if (code === 'ENOSPC' || code === 'EDQUOT' || code.startsWith('SQLITE_FULL')) return ErrorCodes.DISK_FULL;
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB' || err instanceof SyntaxError) return ErrorCodes.STORE_CORRUPT;
  return ErrorCodes.IO;
}

// ---- Error classes of the shared contracts (kept here so every error edgetwin defines is in one file).

/**
 * A sink's destination refuses this batch for good (malformed, too large): retrying it unchanged
 * would block the sink forever. The runner splits the batch in halves until the refused messages
 * stand alone, delivers the rest, and dead-letters the single messages that are still refused.
 */
export class PermanentSinkError extends Error {
  constructor(
    message: string,
    readonly code: string,
    opts?: { cause?: unknown },
  ) {
    super(message, opts);
    this.name = 'PermanentSinkError';
  }
}

/** A sink failure the runner should retry (network, 5xx, throttling). Anything else thrown is treated the same. */
export class RetryableSinkError extends Error {
  constructor(
    message: string,
    readonly retryAfterMs?: number,
    opts?: { cause?: unknown },
  ) {
    super(message, opts);
    this.name = 'RetryableSinkError';
  }
}

/** An HTTP exchange of common/deadline-pool.ts that ran out of time (`timedOut`) or was stopped. */
export class DeadlineError extends Error {
  constructor(
    message: string,
    readonly timedOut: boolean,
  ) {
    super(message);
    this.name = 'DeadlineError';
  }
}

/** A SQLite file could not be put in the requested journal mode (another connection has it open). */
export class JournalModeRefused extends Error {
  constructor(
    readonly path: string,
    readonly wanted: 'wal' | 'delete',
    readonly got: string,
  ) {
    super(`${path}: journal_mode stays "${got}", "${wanted}" was asked for (another process has the file open?)`);
    this.name = 'JournalModeRefused';
  }
}
