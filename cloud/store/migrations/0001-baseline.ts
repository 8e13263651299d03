/**
 * The cloud's tables as they were before versioned migrations. Written with IF NOT EXISTS, and
 * followed (SQLite) by adding the columns older `twins.db` files lack, so that it upgrades an
 * existing file in place and creates a fresh database (SQLite or PostgreSQL) alike.
 */
import type { Migration } from '../migrate.js';

const TWIN_COLUMNS = (int: string, real: string): [string, string][] => [
  ['device_type', 'TEXT'],
  ['tags', "TEXT NOT NULL DEFAULT '{}'"],
  ['version', `${int} NOT NULL DEFAULT 1`],
  ['desired', "TEXT NOT NULL DEFAULT '{}'"],
  ['desired_version', `${int} NOT NULL DEFAULT 0`],
  ['desired_cursor', `${int} NOT NULL DEFAULT 0`],
  ['desired_at', int],
  ['reported', "TEXT NOT NULL DEFAULT '{}'"],
  ['reported_version', `${int} NOT NULL DEFAULT 0`],
  ['reported_at', int],
  ['applied_version', int],
  ['applied_at', int],
  ['anomalous', `${int} NOT NULL DEFAULT 0`],
  ['anomaly_score', real],
  ['anomaly_metric', 'TEXT'],
  ['anomaly_ts', int],
  ['model', 'TEXT'],
];
const METRIC_COLUMNS = (int: string): [string, string][] => [
  ['alert', `${int} NOT NULL DEFAULT 0`],
  ['model', 'TEXT'],
];
const BATCH_COLUMNS = (int: string, real: string): [string, string][] => [
  ['readings', `${int} NOT NULL DEFAULT 0`],
  ['passed', `${int} NOT NULL DEFAULT 0`],
  ['quarantined', `${int} NOT NULL DEFAULT 0`],
  ['rejected', `${int} NOT NULL DEFAULT 0`],
  ['duplicates', `${int} NOT NULL DEFAULT 0`],
  ['score', real],
];

const cols = (list: [string, string][]): string => list.map(([n, t]) => `, ${n} ${t}`).join('');

export const baseline: Migration = {
  id: '0001-baseline',
  async up(tx) {
    const { int, real, blob, id, withoutRowid: wr } = tx.dialect;
    await tx.exec(`
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v ${int} NOT NULL);
CREATE TABLE IF NOT EXISTS twins (
  device TEXT PRIMARY KEY, site TEXT NOT NULL, first_seen ${int} NOT NULL, last_seen ${int} NOT NULL,
  readings ${int} NOT NULL DEFAULT 0${cols(TWIN_COLUMNS(int, real))}
);
CREATE TABLE IF NOT EXISTS twin_metrics (
  device TEXT NOT NULL, metric TEXT NOT NULL, value ${real} NOT NULL, unit TEXT NOT NULL, ts ${int} NOT NULL,
  epoch ${int} NOT NULL, seq ${int} NOT NULL, score ${real}${cols(METRIC_COLUMNS(int))},
  PRIMARY KEY (device, metric)
)${wr};
CREATE TABLE IF NOT EXISTS batches (
  batch_id TEXT PRIMARY KEY, site TEXT NOT NULL, received ${int} NOT NULL${cols(BATCH_COLUMNS(int, real))}
)${wr};
CREATE TABLE IF NOT EXISTS seq_ranges (
  device TEXT NOT NULL, epoch ${int} NOT NULL, ranges TEXT NOT NULL, PRIMARY KEY (device, epoch)
)${wr};
CREATE TABLE IF NOT EXISTS staging (
  id ${id}, site TEXT NOT NULL, batch_id TEXT NOT NULL, received ${int} NOT NULL,
  encoding TEXT NOT NULL, body ${blob} NOT NULL, bytes ${int} NOT NULL, extra TEXT
);
CREATE TABLE IF NOT EXISTS audit (
  id ${id}, at ${int} NOT NULL, actor TEXT NOT NULL, actor_id TEXT NOT NULL,
  role TEXT NOT NULL, action TEXT NOT NULL, device TEXT, site TEXT, detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
  id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, name TEXT NOT NULL, role TEXT NOT NULL, site TEXT,
  created_at ${int} NOT NULL, created_by TEXT NOT NULL, revoked_at ${int}
);
CREATE TABLE IF NOT EXISTS models (
  name TEXT NOT NULL, version TEXT NOT NULL, sha256 TEXT NOT NULL, bytes ${int} NOT NULL, entry TEXT NOT NULL,
  signature TEXT, uploaded_at ${int} NOT NULL, uploaded_by TEXT NOT NULL, PRIMARY KEY (name, version)
)${wr};
CREATE TABLE IF NOT EXISTS model_promotions (
  id ${id}, name TEXT NOT NULL, version TEXT NOT NULL, sha256 TEXT NOT NULL,
  site TEXT, tag TEXT, device TEXT, at ${int} NOT NULL, by TEXT NOT NULL, withdrawn_at ${int}, withdrawn_by TEXT
);
CREATE TABLE IF NOT EXISTS model_assignments (device TEXT PRIMARY KEY, promotion ${int} NOT NULL)${wr};
CREATE TABLE IF NOT EXISTS site_status (site TEXT PRIMARY KEY, received ${int} NOT NULL, report TEXT NOT NULL)${wr};
`);
    if (tx.dialect.kind === 'sqlite') {
      // Files written before these columns existed get them in place.
      await tx.addMissingColumns('twins', TWIN_COLUMNS(int, real));
      await tx.addMissingColumns('twin_metrics', METRIC_COLUMNS(int));
      await tx.addMissingColumns('batches', BATCH_COLUMNS(int, real));
    }
    await tx.exec(`
CREATE INDEX IF NOT EXISTS audit_device ON audit (device, id);
CREATE INDEX IF NOT EXISTS audit_site ON audit (site, id);
CREATE INDEX IF NOT EXISTS twins_site ON twins (site, device);
CREATE INDEX IF NOT EXISTS twins_desired ON twins (site, desired_cursor);
CREATE INDEX IF NOT EXISTS batches_received ON batches (received);
CREATE INDEX IF NOT EXISTS batches_site ON batches (site, received);
INSERT INTO meta (k, v) VALUES ('lake_cursor', 0) ON CONFLICT (k) DO NOTHING;
INSERT INTO meta (k, v) VALUES ('desired_cursor', 0) ON CONFLICT (k) DO NOTHING;
`);
  },
};
