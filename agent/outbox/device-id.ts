/**
 * An outbox holds the readings of one device id: a reading's identity is (device, epoch, seq), and
 * the device part is added only when a batch is published. So when `deviceId` changes on existing
 * state, undelivered readings would silently go out under the new id. The agent therefore records
 * the owner in identity.json and, when the id changed and readings are waiting, refuses to start
 * unless `outbox.onDeviceIdChange` says what to do with them:
 *
 * - `send-as-old`: the old outbox file is moved aside to `outbox.old-<id>.<time>.db` and delivered
 *   under the old id over a connection of its own (agent/uplink/old-backlog.ts); the new id starts
 *   with an empty outbox. The old id must still be able to connect (open mode, or its registration
 *   and credentials kept).
 * - `discard`: the readings are dropped and counted (`edgetwin_agent_dropped_total{reason="device_id_changed"}`).
 *
 * An empty outbox needs no decision: the new id is simply recorded.
 */
import { existsSync, readdirSync, renameSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { LANE_NORMAL, LANE_PRIORITY, type SqliteOutbox } from '../../common/outbox/outbox.js';
import type { AgentOutboxConfig } from '../config.js';
import { identityFileBeside, readIdentityFile } from './identity.js';

export type OnDeviceIdChange = AgentOutboxConfig['onDeviceIdChange'];

const OLD_PREFIX = 'outbox.old-';
const SIDE_FILES = ['', '-wal', '-shm'];

/** The device id the state beside `outboxPath` was written under, when it is not `deviceId`. */
export function previousDeviceId(outboxPath: string, deviceId: string): string | undefined {
  const saved = readIdentityFile(identityFileBeside(outboxPath)).deviceId;
  return saved !== undefined && saved !== deviceId ? saved : undefined;
}

/** Moves the outbox file (and its WAL) aside as an old backlog of `oldId`; the next open starts empty. */
export function moveBacklogAside(outboxPath: string, oldId: string): string | undefined {
  if (!existsSync(outboxPath)) return undefined;
  const to = join(dirname(outboxPath), `${OLD_PREFIX}${encodeURIComponent(oldId)}.${Date.now()}.db`);
  for (const s of SIDE_FILES) if (existsSync(outboxPath + s)) renameSync(outboxPath + s, to + s);
  return to;
}

/** Old backlogs waiting beside `outboxPath`, with the device id each belongs to. */
export function oldBacklogs(outboxPath: string): { deviceId: string; path: string }[] {
  const dir = dirname(outboxPath);
  if (!existsSync(dir)) return [];
  const out: { deviceId: string; path: string }[] = [];
  for (const f of readdirSync(dir)) {
    const m = /^outbox\.old-(.+)\.\d+\.db$/.exec(f);
    if (m) out.push({ deviceId: decodeURIComponent(m[1]!), path: join(dir, f) });
  }
  return out;
}

/**
 * Settles a device id change on an opened outbox; returns how many readings were discarded.
 * Throws EDGETWIN_ERR_DEVICE_ID_CHANGED when readings wait and no choice was made.
 */
export function settleDeviceIdChange(outbox: SqliteOutbox, from: string, to: string, choice: OnDeviceIdChange, log: Logger): number {
  const { rows } = outbox.depth();
  if (rows === 0) {
    log.info({ from, to }, 'deviceId changed; the outbox was empty, nothing to decide');
    return 0;
  }
  if (choice === 'refuse') {
    throw new EdgetwinError(
      ErrorCodes.DEVICE_ID_CHANGED,
      `deviceId is now "${to}", but ${basename(outbox.cfg.path)} in ${dirname(outbox.cfg.path)} holds ${rows} undelivered readings of ` +
        `"${from}". Set outbox.onDeviceIdChange to "send-as-old" (deliver them as "${from}" first) or "discard" (drop them, counted), ` +
        'or give this agent another stateDir',
      { details: { from, to, readings: rows } },
    );
  }
  // choice === 'discard' (send-as-old moved the file aside before the open, so the outbox is empty then)
  let n = 0;
  for (const lane of [LANE_PRIORITY, LANE_NORMAL] as const) n += outbox.ack(lane, 0, Number.MAX_SAFE_INTEGER);
  log.warn(
    { code: ErrorCodes.DEVICE_ID_CHANGED, from, to, discarded: n },
    'deviceId changed: undelivered readings of the old id discarded',
  );
  return n;
}

/** Rows of an old backlog whose id is the current one again go back into the outbox (same identities). */
export function readoptBacklog(from: SqliteOutbox, into: SqliteOutbox): number {
  let n = 0;
  for (const lane of [LANE_PRIORITY, LANE_NORMAL] as const) {
    for (let after = 0; ;) {
      const rows = from.read(lane, after, 1000);
      if (rows.length === 0) break;
      into.append(rows.map((r) => ({ body: r.body, lane: r.lane, grp: r.grp, key: r.key })));
      after = rows[rows.length - 1]!.id;
      n += rows.length;
    }
  }
  return n;
}
