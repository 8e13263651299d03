/**
 * The collector's copy of every device twin: the desired document the cloud last sent (so devices
 * can read it while the cloud is unreachable) and the reported document the devices patched, each
 * with its `$version`. The desired-feed cursor is committed in the same transaction as the desired
 * documents it brought, so a restart never skips or half-applies a change.
 */
import type { Logger } from '../../common/log.js';
import { mergePatch, diffPatch, jsonEqual, type JsonObject } from '../../common/merge-patch.js';
import { MetaStore, openDatabase, type SqliteDb, type SynchronousMode } from '../../common/sqlite.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS twins (
  device TEXT PRIMARY KEY,
  desired TEXT NOT NULL DEFAULT '{}',
  desired_version INTEGER NOT NULL DEFAULT 0,
  reported TEXT NOT NULL DEFAULT '{}',
  reported_version INTEGER NOT NULL DEFAULT 0
);
`;

const FEED_CURSOR = 'desired_feed_cursor';

export interface TwinDocs {
  desired: JsonObject;
  desiredVersion: number;
  reported: JsonObject;
  reportedVersion: number;
}

/** One device's full desired document as the cloud's desired feed delivers it. */
export interface DesiredUpdate {
  device: string;
  desired: JsonObject;
  version: number;
}

/** What changed for one device: the merge patch a connected device must receive. */
export interface DesiredChange {
  device: string;
  patch: JsonObject;
  version: number;
}

interface Row {
  desired: string;
  desired_version: number;
  reported: string;
  reported_version: number;
}

export class SqliteTwinStore {
  readonly db: SqliteDb;
  private readonly meta: MetaStore;
  private readonly selectOne;
  private readonly upsertDesired;
  private readonly upsertReported;

  constructor(cfg: { path: string; synchronous: SynchronousMode }, log?: Logger) {
    this.db = openDatabase({ path: cfg.path, synchronous: cfg.synchronous, log, schema: SCHEMA }).db;
    this.meta = new MetaStore(this.db);
    this.selectOne = this.db.prepare<[string], Row>(
      'SELECT desired, desired_version, reported, reported_version FROM twins WHERE device = ?',
    );
    this.upsertDesired = this.db.prepare(
      `INSERT INTO twins (device, desired, desired_version) VALUES (?, ?, ?)
       ON CONFLICT(device) DO UPDATE SET desired = excluded.desired, desired_version = excluded.desired_version`,
    );
    this.upsertReported = this.db.prepare(
      `INSERT INTO twins (device, reported, reported_version) VALUES (?, ?, ?)
       ON CONFLICT(device) DO UPDATE SET reported = excluded.reported, reported_version = excluded.reported_version`,
    );
  }

  get(device: string): TwinDocs {
    const r = this.selectOne.get(device);
    if (!r) return { desired: {}, desiredVersion: 0, reported: {}, reportedVersion: 0 };
    return {
      desired: JSON.parse(r.desired) as JsonObject,
      desiredVersion: r.desired_version,
      reported: JSON.parse(r.reported) as JsonObject,
      reportedVersion: r.reported_version,
    };
  }

  /** Merges a reported patch that the spool already holds, at the version assigned to it. */
  patchReported(device: string, patch: JsonObject, version: number): void {
    this.db.transaction(() => {
      const cur = this.get(device);
      const next = mergePatch(cur.reported, patch) as JsonObject;
      this.upsertReported.run(device, JSON.stringify(next), Math.max(version, cur.reportedVersion));
    })();
  }

  get feedCursor(): number {
    return this.meta.get(FEED_CURSOR);
  }

  /**
   * Stores the desired documents of one feed page and its cursor in one transaction; returns the
   * patch each changed device must be sent. The feed is authoritative and ordered, so a document
   * replaces the stored one whenever it or its version differs (a rebuilt cloud may restart versions).
   */
  applyDesired(updates: readonly DesiredUpdate[], cursor: number): DesiredChange[] {
    return this.db.transaction(() => {
      // Several updates of one device in a page collapse into one patch from the first base.
      const changed = new Map<string, { base: JsonObject; desired: JsonObject; version: number }>();
      for (const u of updates) {
        const cur = this.get(u.device);
        if (cur.desiredVersion === u.version && jsonEqual(cur.desired, u.desired)) continue;
        this.upsertDesired.run(u.device, JSON.stringify(u.desired), u.version);
        const seen = changed.get(u.device);
        changed.set(u.device, { base: seen?.base ?? cur.desired, desired: u.desired, version: u.version });
      }
      this.meta.set(FEED_CURSOR, cursor);
      return [...changed].map(([device, c]) => ({ device, patch: diffPatch(c.base, c.desired), version: c.version }));
    })();
  }

  close(): void {
    this.db.close();
  }
}
