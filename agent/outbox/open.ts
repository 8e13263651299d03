/**
 * Opens the agent's outbox and settles whose readings it holds before the first new one is written:
 * a changed `deviceId` (agent/outbox/device-id.ts), old backlogs of the current id taken back, then
 * the boot epoch bumped (identity.ts) with the owner recorded.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../../common/log.js';
import type { Registry } from '../../common/metrics.js';
import { SqliteOutbox } from '../../common/outbox/outbox.js';
import type { AgentConfig } from '../config.js';
import { OldBacklogUplink } from '../uplink/old-backlog.js';
import { moveBacklogAside, oldBacklogs, previousDeviceId, readoptBacklog, settleDeviceIdChange } from './device-id.js';
import { bootIdentity, type Identity } from './identity.js';

export interface OpenedOutbox {
  outbox: SqliteOutbox;
  identity: Identity;
  /** Readings dropped because the device id changed (`onDeviceIdChange: discard`). */
  discarded: number;
}

export function agentOutboxPath(cfg: AgentConfig): string {
  return cfg.outbox.path ?? join(cfg.stateDir, 'outbox.db');
}

export function openAgentOutbox(cfg: AgentConfig, log: Logger, registry: Registry): OpenedOutbox {
  const path = agentOutboxPath(cfg);
  const from = previousDeviceId(path, cfg.deviceId);
  if (from !== undefined && cfg.outbox.onDeviceIdChange === 'send-as-old') {
    const aside = moveBacklogAside(path, from);
    if (aside) log.warn({ from, to: cfg.deviceId, backlog: aside }, 'deviceId changed: the old backlog will be delivered as the old id');
  }
  const outbox = new SqliteOutbox(
    {
      path,
      maxBytes: cfg.outbox.maxBytes,
      maxFileBytes: cfg.outbox.maxBytes,
      maxAgeMs: cfg.outbox.maxAgeMs,
      // Appends at one end, reads and deletes at the other: 2 MiB of page cache is plenty (measured
      // in bench/agent.ts; better-sqlite3's default of 16 MiB would be a sixth of the RSS budget).
      cacheKiB: 2048,
      whenFull: cfg.outbox.whenFull,
      synchronous: cfg.outbox.synchronous,
    },
    { log, registry, metricPrefix: 'edgetwin_outbox' },
  );
  try {
    const discarded = from === undefined ? 0 : settleDeviceIdChange(outbox, from, cfg.deviceId, cfg.outbox.onDeviceIdChange, log);
    for (const b of oldBacklogs(path).filter((x) => x.deviceId === cfg.deviceId)) {
      const old = new SqliteOutbox({ path: b.path, maxBytes: Number.MAX_SAFE_INTEGER, whenFull: 'block', synchronous: 'normal' }, { log });
      const n = readoptBacklog(old, outbox);
      old.close();
      for (const s of ['', '-wal', '-shm']) rmSync(b.path + s, { force: true });
      log.info({ deviceId: cfg.deviceId, readings: n }, 'deviceId is back to an id with a kept backlog: taken back into the outbox');
    }
    return { outbox, identity: bootIdentity(outbox, log, cfg.deviceId), discarded };
  } catch (err) {
    outbox.close();
    throw err;
  }
}

/** Uplinks for the backlogs kept under previous device ids (started with the agent). */
export function oldBacklogUplinks(cfg: AgentConfig, log: Logger): OldBacklogUplink[] {
  return oldBacklogs(agentOutboxPath(cfg))
    .filter((b) => b.deviceId !== cfg.deviceId)
    .map((b) => new OldBacklogUplink(b.deviceId, b.path, cfg.uplink, log));
}
