/**
 * A full disk under the cloud's database is its own condition (issue 13): answered with
 * EDGETWIN_ERR_DISK_FULL (507, retryable: the collector keeps its spool and retries), logged once
 * when it starts and once when it ends, and reported by `/healthz` until a write commits again —
 * never a 500 that looks like a bug, never EDGETWIN_ERR_STORE_CORRUPT.
 */
import { EdgetwinError, ErrorCodes, isEdgetwinError, storeErrorCode } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';

/** PostgreSQL's SQLSTATE for "disk full" (class 53, insufficient resources). */
const PG_DISK_FULL = '53100';

export class DiskFullWatch {
  private since = 0;

  constructor(
    private readonly what: string,
    private readonly log?: Logger,
    /** For the log only (answers do not name server paths). */
    private readonly where?: string,
  ) {}

  /** `err` as EDGETWIN_ERR_DISK_FULL when the disk is full (remembered until a write commits), else undefined. */
  map(err: unknown): EdgetwinError | undefined {
    if (isEdgetwinError(err)) return err.code === ErrorCodes.DISK_FULL ? err : undefined;
    const pgFull = String((err as { code?: unknown } | null)?.code ?? '') === PG_DISK_FULL;
    if (!pgFull && storeErrorCode(err) !== ErrorCodes.DISK_FULL) return undefined;
    if (this.since === 0) {
      this.since = Date.now();
      this.log?.error(
        { code: ErrorCodes.DISK_FULL, where: this.where, err },
        `${this.what}: the disk is full; writes are refused (507) until there is room`,
      );
    }
    return new EdgetwinError(ErrorCodes.DISK_FULL, `${this.what}: the disk is full; retry later`, {
      cause: err,
      details: { retryAfterS: 5 },
    });
  }

  /** A write transaction committed: there is room again. */
  committed(): void {
    if (this.since === 0) return;
    this.log?.info({ failedMs: Date.now() - this.since }, `${this.what}: writes succeed again (disk no longer full)`);
    this.since = 0;
  }

  /** For /healthz: how long writes have failed for a full disk (0: they do not). */
  failingForMs(): number {
    return this.since === 0 ? 0 : Date.now() - this.since;
  }
}
