/** Batch data-quality figures from the `batches` table (kept for ingest.batchIdRetentionDays). */
import type { Queryable } from '../store/store.js';
import { Where } from '../store/where.js';
import { qualityScore } from './quality.js';

export interface QualityQuery {
  site?: string | undefined;
  batchId?: string | undefined;
  from: number;
  to: number;
  limit: number;
}

/** A batch's figures as the `batches` table keeps them (also what ingest reads back for a resent batch). */
export interface BatchRow {
  site: string;
  readings: number;
  passed: number;
  quarantined: number;
  rejected: number;
  duplicates: number;
  score: number | null;
}

interface Row extends BatchRow {
  batch_id: string;
  received: number;
}

export async function qualityReport(
  db: Queryable,
  q: QualityQuery,
): Promise<{ summary: Record<string, number | null>; items: Record<string, unknown>[] }> {
  const where = new Where('received >= ?', q.from).add('received < ?', q.to).given('site = ?', q.site).given('batch_id = ?', q.batchId);
  const s = (await db.get<{ batches: number; readings: number; passed: number; quarantined: number; rejected: number; duplicates: number }>(
    `SELECT count(*) AS batches, coalesce(sum(readings),0) AS readings, coalesce(sum(passed),0) AS passed, coalesce(sum(quarantined),0) AS quarantined,
      coalesce(sum(rejected),0) AS rejected, coalesce(sum(duplicates),0) AS duplicates FROM batches WHERE ${where.sql}`,
    where.params,
  ))!;
  const summary = { ...s, score: qualityScore(s.passed, s.quarantined + s.rejected) };
  const rows = await db.all<Row>(`SELECT * FROM batches WHERE ${where.sql} ORDER BY received DESC LIMIT ?`, [...where.params, q.limit]);
  const items = rows.map((r) => ({
    batchId: r.batch_id,
    site: r.site,
    receivedAt: new Date(r.received).toISOString(),
    readings: r.readings,
    passed: r.passed,
    quarantined: r.quarantined,
    rejected: r.rejected,
    duplicates: r.duplicates,
    score: r.score,
  }));
  return { summary, items };
}
