/** The outbox's shared types: lanes, config, rows (common/outbox/outbox.ts is the store). */
import type { Logger } from '../log.js';
import type { Registry } from '../metrics.js';
import type { SynchronousMode } from '../sqlite.js';

export const LANE_PRIORITY = 0;
export const LANE_NORMAL = 1;
export type Lane = typeof LANE_PRIORITY | typeof LANE_NORMAL;
/** Telemetry is dropped before alerts. */
export const LANES_DROP_ORDER: readonly Lane[] = [LANE_NORMAL, LANE_PRIORITY];

export type WhenFull = 'drop_oldest' | 'block';
export type DropReason = 'full' | 'age';

export interface OutboxConfig {
  path: string;
  /**
   * Upper bound on the bytes of queued bodies. With whenFull=block, a write into an empty store is
   * accepted even when larger (else a writer that groups messages could retry one group forever).
   */
  maxBytes: number;
  whenFull: WhenFull;
  synchronous: SynchronousMode;
  /** Rows that have waited longer than this since their append are dropped by expire(); 0 or unset: never. */
  maxAgeMs?: number;
  /** When set, the database file plus its WAL stay within this many bytes (plus FILE_CAP_MARGIN_BYTES). */
  maxFileBytes?: number;
  /** SQLite page cache in KiB; unset keeps better-sqlite3's default of 16 MiB, which a small device may not want. */
  cacheKiB?: number;
}

export interface OutboxItem {
  body: string;
  lane?: Lane;
  grp?: number;
  key?: string | null;
}

export interface OutboxRow {
  id: number;
  lane: Lane;
  grp: number;
  key: string | null;
  body: string;
  bytes: number;
  /** When the row was appended, ms since the Unix epoch. */
  at: number;
}

export interface OutboxOptions {
  log?: Logger | undefined;
  registry?: Registry | undefined;
  /** Metric name prefix, e.g. `edgetwin_outbox` or `edgetwin_spool`. */
  metricPrefix?: string;
}
