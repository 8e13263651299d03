/**
 * A reading's identity is (device, boot epoch, seq). The epoch is bumped and fsynced at every
 * start, before any reading of the new boot exists, so that even when a power cut rolls back the
 * last (NORMAL-synced) commits, no (epoch, seq) pair can ever be handed out twice.
 */
import type { SqliteOutbox } from '../common/outbox.js';

export interface Identity {
  epoch: number;
  nextSeq: number;
}

export function bootIdentity(outbox: SqliteOutbox): Identity {
  const db = outbox.db;
  const before = db.pragma('synchronous', { simple: true }) as number;
  db.pragma('synchronous = FULL');
  try {
    const epoch = outbox.meta.get('epoch') + 1;
    outbox.meta.set('epoch', epoch);
    return { epoch, nextSeq: outbox.meta.get('seq') + 1 };
  } finally {
    db.pragma(`synchronous = ${before}`);
  }
}
