/**
 * SqliteCheckpointStore: the Event Hubs SDK's CheckpointStore (partition ownership + checkpoints)
 * in a local SQLite file, for deployments without Azure Storage. Several consumer processes on one
 * host may share the file: ownership claims use the etag for optimistic concurrency, as the Blob
 * checkpoint store does, so each partition has one owner at a time.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { Checkpoint, CheckpointStore, PartitionOwnership } from '@azure/event-hubs';
import type { Logger } from '../../common/log.js';
import { openDatabase, type JournalMode, type SqliteDb } from '../../common/sqlite.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS ownership (
  ns TEXT NOT NULL, hub TEXT NOT NULL, cg TEXT NOT NULL, partition_id TEXT NOT NULL,
  owner_id TEXT NOT NULL, modified INTEGER NOT NULL, etag TEXT NOT NULL,
  PRIMARY KEY (ns, hub, cg, partition_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
  ns TEXT NOT NULL, hub TEXT NOT NULL, cg TEXT NOT NULL, partition_id TEXT NOT NULL,
  sequence_number INTEGER NOT NULL, offset TEXT NOT NULL,
  PRIMARY KEY (ns, hub, cg, partition_id)
) WITHOUT ROWID;
`;

interface OwnershipRow {
  partition_id: string;
  owner_id: string;
  modified: number;
  etag: string;
}

export class SqliteCheckpointStore implements CheckpointStore {
  readonly db: SqliteDb;

  constructor(stateDir: string, log?: Logger, journalMode?: JournalMode) {
    this.db = openDatabase({ path: join(stateDir, 'eventhubs-checkpoints.db'), synchronous: 'full', log, schema: SCHEMA, journalMode }).db;
  }

  async listOwnership(ns: string, hub: string, cg: string): Promise<PartitionOwnership[]> {
    const rows = this.db
      .prepare('SELECT partition_id, owner_id, modified, etag FROM ownership WHERE ns = ? AND hub = ? AND cg = ?')
      .all(ns, hub, cg) as OwnershipRow[];
    return rows.map((r) => ({
      fullyQualifiedNamespace: ns,
      eventHubName: hub,
      consumerGroup: cg,
      partitionId: r.partition_id,
      ownerId: r.owner_id,
      lastModifiedTimeInMs: r.modified,
      etag: r.etag,
    }));
  }

  async claimOwnership(claims: PartitionOwnership[]): Promise<PartitionOwnership[]> {
    const claimed: PartitionOwnership[] = [];
    const select = this.db.prepare('SELECT etag FROM ownership WHERE ns = ? AND hub = ? AND cg = ? AND partition_id = ?');
    const upsert = this.db.prepare(`INSERT INTO ownership (ns, hub, cg, partition_id, owner_id, modified, etag) VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT(ns, hub, cg, partition_id) DO UPDATE SET owner_id = excluded.owner_id, modified = excluded.modified, etag = excluded.etag`);
    this.db.transaction(() => {
      for (const c of claims) {
        const current = select.get(c.fullyQualifiedNamespace, c.eventHubName, c.consumerGroup, c.partitionId) as
          { etag: string } | undefined;
        // A claim succeeds only against the state the claimant saw: same etag, or no owner yet.
        if (current ? current.etag !== c.etag : c.etag !== undefined) continue;
        const etag = randomUUID();
        const modified = Date.now();
        upsert.run(c.fullyQualifiedNamespace, c.eventHubName, c.consumerGroup, c.partitionId, c.ownerId, modified, etag);
        claimed.push({ ...c, etag, lastModifiedTimeInMs: modified });
      }
    })();
    return claimed;
  }

  async updateCheckpoint(cp: Checkpoint): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO checkpoints (ns, hub, cg, partition_id, sequence_number, offset) VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT(ns, hub, cg, partition_id) DO UPDATE SET sequence_number = excluded.sequence_number, offset = excluded.offset`,
      )
      .run(cp.fullyQualifiedNamespace, cp.eventHubName, cp.consumerGroup, cp.partitionId, cp.sequenceNumber, cp.offset);
  }

  async listCheckpoints(ns: string, hub: string, cg: string): Promise<Checkpoint[]> {
    const rows = this.db
      .prepare('SELECT partition_id, sequence_number, offset FROM checkpoints WHERE ns = ? AND hub = ? AND cg = ?')
      .all(ns, hub, cg) as {
      partition_id: string;
      sequence_number: number;
      offset: string;
    }[];
    return rows.map((r) => ({
      fullyQualifiedNamespace: ns,
      eventHubName: hub,
      consumerGroup: cg,
      partitionId: r.partition_id,
      sequenceNumber: r.sequence_number,
      offset: r.offset,
    }));
  }

  close(): void {
    this.db.close();
  }
}
