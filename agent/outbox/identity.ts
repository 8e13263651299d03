/**
 * A reading's identity is (device, boot epoch, seq). The epoch is bumped and fsynced at every
 * start, before any reading of the new boot exists, so that even when a power cut rolls back the
 * last (NORMAL-synced) commits, no (epoch, seq) pair can ever be handed out twice.
 *
 * The epoch is kept twice: in the outbox's meta table and in a small `identity.json` beside it.
 * A corrupt outbox is quarantined and replaced by an empty one; without the second copy the new
 * outbox would start again at epoch 1, seq 1 — identities the cloud already holds — and the cloud
 * would drop the new readings as duplicates.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Logger } from '../../common/log.js';
import type { SqliteOutbox } from '../../common/outbox/outbox.js';

export interface Identity {
  epoch: number;
  nextSeq: number;
}

interface IdentityFile {
  epoch: number;
  seq: number;
  /** The device id the outbox's readings belong to (absent in files from before it was kept). */
  deviceId?: string;
}

export function readIdentityFile(file: string, log?: Logger): IdentityFile {
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as Partial<IdentityFile>;
    if (Number.isSafeInteger(v.epoch) && Number.isSafeInteger(v.seq))
      return { epoch: v.epoch!, seq: v.seq!, ...(typeof v.deviceId === 'string' ? { deviceId: v.deviceId } : {}) };
    log?.warn({ file }, 'identity file has no valid epoch/seq; using the outbox alone');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log?.warn({ file, err }, 'identity file unreadable; using the outbox alone');
  }
  return { epoch: 0, seq: 0 };
}

/** Write-then-rename with fsyncs: the file is either the old or the new one, never half. */
function writeIdentityFile(file: string, id: IdentityFile): void {
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(id)}\n`);
  const fd = openSync(tmp, 'r');
  fsyncSync(fd);
  closeSync(fd);
  renameSync(tmp, file);
  const dir = openSync(dirname(file), 'r');
  fsyncSync(dir);
  closeSync(dir);
}

export function identityFileFor(outbox: Pick<SqliteOutbox, 'cfg'>): string {
  return identityFileBeside(outbox.cfg.path);
}

export function identityFileBeside(outboxPath: string): string {
  return join(dirname(outboxPath), 'identity.json');
}

/** Bumps the boot epoch; `deviceId` is recorded as the owner of what the outbox holds from now on. */
export function bootIdentity(outbox: SqliteOutbox, log?: Logger, deviceId?: string): Identity {
  const db = outbox.db;
  const file = identityFileFor(outbox);
  const saved = readIdentityFile(file, log);
  const before = db.pragma('synchronous', { simple: true }) as number;
  db.pragma('synchronous = FULL');
  try {
    const epoch = Math.max(outbox.meta.get('epoch'), saved.epoch) + 1;
    // After a quarantine the meta seq is 0; continuing from the saved one keeps seqs increasing.
    const seq = Math.max(outbox.meta.get('seq'), saved.seq);
    outbox.meta.set('epoch', epoch);
    outbox.meta.set('seq', seq);
    const owner = deviceId ?? saved.deviceId;
    writeIdentityFile(file, { epoch, seq, ...(owner === undefined ? {} : { deviceId: owner }) });
    return { epoch, nextSeq: seq + 1 };
  } finally {
    db.pragma(`synchronous = ${before}`);
  }
}
