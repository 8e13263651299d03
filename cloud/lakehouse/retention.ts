/**
 * Retention: whole date partitions older than each layer's limit are deleted (0 days = keep
 * forever), as are remembered batch ids past `ingest.batchIdRetentionDays` (a replay after that is
 * still caught by reading identity). A partition is old by its sample date *and* by arrival: one
 * with a file written within the limit is kept, so a backfill of last year's history is not deleted
 * within the hour (files are written at arrival; compaction rewrites them, which only keeps them longer).
 */
import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../../common/log.js';
import type { Queryable } from '../store/store.js';
import type { LakehouseConfig } from '../config.js';
import { layerOf, TABLE_NAMES, TABLES, type TableName } from './layout.js';

export interface RetentionReport {
  partitionsRemoved: { table: TableName; site: string; date: string }[];
  batchIdsForgotten: number;
}

const DAY_MS = 86_400_000;

function daysFor(table: TableName, r: LakehouseConfig['retention']): number {
  if (table === 'quarantine') return r.quarantineDays;
  const layer = layerOf(table);
  return layer === 'bronze' ? r.bronzeDays : layer === 'silver' ? r.silverDays : r.goldDays;
}

/** The newest write time of the partition's files (ms), 0 when it has none. */
function newestWrite(dir: string): number {
  let newest = 0;
  for (const f of list(dir, '')) {
    try {
      newest = Math.max(newest, statSync(join(dir, f)).mtimeMs);
    } catch {
      // gone meanwhile (compaction): nothing to keep for it
    }
  }
  return newest;
}

const list = (dir: string, prefix: string): string[] => {
  try {
    return readdirSync(dir).filter((d) => d.startsWith(prefix));
  } catch {
    return [];
  }
};

export async function applyRetention(
  root: string,
  r: LakehouseConfig['retention'],
  db: { db: Queryable; batchIdRetentionDays: number } | undefined,
  log: Logger,
  opts: { now?: number; dryRun?: boolean } = {},
): Promise<RetentionReport> {
  const now = opts.now ?? Date.now();
  const report: RetentionReport = { partitionsRemoved: [], batchIdsForgotten: 0 };
  for (const table of TABLE_NAMES) {
    const days = daysFor(table, r);
    if (days <= 0) continue;
    // A partition is kept while any of its day is younger than the limit.
    const oldest = new Date(now - days * DAY_MS).toISOString().slice(0, 10);
    const base = join(root, TABLES[table]);
    for (const sd of list(base, 'site=')) {
      for (const dd of list(join(base, sd), 'date=')) {
        const date = dd.slice(5);
        if (date >= oldest) continue;
        if (newestWrite(join(base, sd, dd)) > now - days * DAY_MS) continue; // arrived recently (a backfill)
        if (!opts.dryRun) rmSync(join(base, sd, dd), { recursive: true, force: true });
        report.partitionsRemoved.push({ table, site: sd.slice(5), date });
      }
    }
  }
  if (db && !opts.dryRun) {
    report.batchIdsForgotten = (
      await db.db.run('DELETE FROM batches WHERE received < ?', [now - db.batchIdRetentionDays * DAY_MS])
    ).changes;
  }
  if (report.partitionsRemoved.length > 0 || report.batchIdsForgotten > 0) {
    log.info(
      { partitions: report.partitionsRemoved.length, batchIds: report.batchIdsForgotten, dryRun: !!opts.dryRun },
      'lakehouse retention applied',
    );
  }
  return report;
}
