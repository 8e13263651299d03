/** Opens the store the config names (and applies pending migrations). */
import { readFileSync, statSync } from 'node:fs';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { JournalMode } from '../../common/sqlite.js';
import type { CloudStoreConfig } from './config.js';
import { PostgresStore } from './postgres-store.js';
import { SqliteStore } from './sqlite-store.js';
import type { Store } from './store.js';

export interface StoreSettings {
  stateDir: string;
  store: CloudStoreConfig;
  /** SQLite journal mode (`db.journalMode`); unset: the file's own (tools opening the daemon's file). */
  journalMode?: JournalMode | undefined;
}

/** The password: `store.passwordFile`, else EDGETWIN_STORE_PASSWORD, else undefined (pg reads PGPASSWORD itself). */
export function storePassword(cfg: CloudStoreConfig, env: NodeJS.ProcessEnv = process.env, log?: Logger): string | undefined {
  if (cfg.passwordFile) {
    let text: string;
    try {
      text = readFileSync(cfg.passwordFile, 'utf8');
    } catch (cause) {
      throw new EdgetwinError(ErrorCodes.CONFIG, `cloud config: key "store.passwordFile": cannot read ${cfg.passwordFile}`, { cause });
    }
    if ((statSync(cfg.passwordFile).mode & 0o077) !== 0)
      log?.warn({ file: cfg.passwordFile }, 'store.passwordFile is readable by group or others: chmod 600 it');
    return text.replace(/\r?\n$/, '');
  }
  return env['EDGETWIN_STORE_PASSWORD'] || undefined;
}

export async function openStore(s: StoreSettings, log?: Logger, appName?: string): Promise<Store> {
  const c = s.store;
  if (c.kind === 'sqlite') return SqliteStore.open({ stateDir: s.stateDir, journalMode: s.journalMode, log });
  if (!c.url) throw new EdgetwinError(ErrorCodes.CONFIG, 'cloud config: key "store.url" is required with store.kind "postgres"');
  return PostgresStore.open({
    url: c.url,
    password: storePassword(c, process.env, log),
    poolMax: c.poolMax,
    poolMin: c.poolMin,
    connectTimeoutMs: c.connectTimeoutMs,
    statementTimeoutMs: c.statementTimeoutMs,
    notifyBatchMs: c.notifyBatchMs,
    log,
    applicationName: appName,
  });
}

/**
 * PostgreSQL as an administration tool opens it (`cloud migrate`, `cloud setup-db`): two
 * connections, the config's password, and statements allowed to run for minutes (copies, DDL).
 */
export function openToolPostgres(
  c: CloudStoreConfig,
  url: string,
  applicationName: string,
  onMigrated?: (ids: string[]) => void,
): Promise<PostgresStore> {
  return PostgresStore.open({
    url,
    password: storePassword(c),
    poolMax: 2,
    connectTimeoutMs: c.connectTimeoutMs,
    statementTimeoutMs: 600_000,
    notifyBatchMs: 5,
    applicationName,
    onMigrated,
  });
}
