/**
 * LakehouseQuery: the history behind the twin API — raw telemetry from silver, downsampled series
 * from the gold rollups, anomaly events and quarantined rows — as DuckDB SQL over the live Parquet
 * files of the partitions a query touches (listed here, so no query scans other sites or dates).
 */
import type { DuckDBValue } from '@duckdb/node-api';
import type { Duck, Row } from './duckdb.js';
import { liveFiles, sqlFileList, type DataFile, type TableName } from './layout.js';

const MINUTE = 60_000;
const HOUR = 3_600_000;

export interface TelemetryQuery {
  device: string;
  site: string;
  metric?: string | undefined;
  from: number;
  to: number;
  /** Bucket width in ms; undefined = raw readings. */
  bucketMs?: number | undefined;
  limit: number;
}

export interface RawPoint {
  metric: string;
  ts: string;
  value: number;
  unit: string;
  score?: number;
  alert?: boolean;
}

export interface BucketPoint {
  metric: string;
  ts: string;
  count: number;
  min: number;
  max: number;
  mean: number;
  last: number;
  maxScore: number | null;
  alerts: number;
}

export interface TelemetryResult {
  source: 'silver' | 'gold/rollup_1m' | 'gold/rollup_1h';
  points: (RawPoint | BucketPoint)[];
  truncated: boolean;
}

export interface RangeQuery {
  site?: string | undefined;
  device?: string | undefined;
  from: number;
  to: number;
  limit: number;
}

const day = (ms: number): string => new Date(ms).toISOString().slice(0, 10);
const iso = (v: unknown): string => new Date(Number(v)).toISOString();
const n = (v: unknown): number => Number(v);
const nOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

export class LakehouseQuery {
  /** `cursor` is the committed lake cursor: files beyond it belong to a flush still being published. */
  constructor(
    private readonly root: string,
    private readonly duck: Duck,
    private readonly cursor: () => number,
  ) {}

  files(table: TableName, site: string | undefined, from?: number, to?: number): DataFile[] {
    const committed = this.cursor();
    const files = liveFiles(this.root, table, {
      site,
      fromDate: from === undefined ? undefined : day(from),
      toDate: to === undefined ? undefined : day(to - 1),
    });
    return files.filter((f) => f.hi <= committed);
  }

  async telemetry(q: TelemetryQuery): Promise<TelemetryResult> {
    const b = q.bucketMs;
    const table: TableName = b === undefined || b % MINUTE !== 0 ? 'silver' : b % HOUR === 0 ? 'rollup1h' : 'rollup1m';
    const source = table === 'silver' ? 'silver' : table === 'rollup1h' ? 'gold/rollup_1h' : 'gold/rollup_1m';
    // A bucket covers [t, t + b): widen `from` down to its bucket so the first bucket is whole.
    const from = b === undefined ? q.from : Math.floor(q.from / b) * b;
    const files = this.files(table, q.site, from, q.to);
    if (files.length === 0) return { source, points: [], truncated: false };
    const params: DuckDBValue[] = [q.device, from, q.to];
    const metric = q.metric === undefined ? '' : `AND metric = $${params.push(q.metric)}`;
    const src = `read_parquet(${sqlFileList(files)}, hive_partitioning = false)`;
    let rows: Row[];
    if (b === undefined) {
      rows = await this.duck.query(
        `SELECT metric, epoch_ms(ts) AS t, value, unit, score, alert FROM ${src}
         WHERE device = $1 AND ts >= epoch_ms($2::BIGINT)::TIMESTAMPTZ AND ts < epoch_ms($3::BIGINT)::TIMESTAMPTZ ${metric}
         ORDER BY t, metric LIMIT ${q.limit + 1}`,
        params,
      );
      const points = rows.slice(0, q.limit).map((r): RawPoint => {
        const p: RawPoint = { metric: String(r['metric']), ts: iso(r['t']), value: n(r['value']), unit: String(r['unit']) };
        if (r['score'] !== null) p.score = n(r['score']);
        if (r['alert']) p.alert = true;
        return p;
      });
      return { source, points, truncated: rows.length > q.limit };
    }
    const bucket = `(epoch_ms(${table === 'silver' ? 'ts' : 'bucket_start'}) // ${b}) * ${b}`;
    const agg =
      table === 'silver'
        ? 'count(*) AS count, min(value) AS min, max(value) AS max, avg(value) AS mean, arg_max(value, ts) AS last, max(score) AS max_score, count(*) FILTER (WHERE alert) AS alerts'
        : 'sum(count) AS count, min(min) AS min, max(max) AS max, sum(sum) / sum(count) AS mean, arg_max(last, last_ts) AS last, max(max_score) AS max_score, sum(alerts) AS alerts';
    const timeCol = table === 'silver' ? 'ts' : 'bucket_start';
    rows = await this.duck.query(
      `SELECT metric, ${bucket} AS t, ${agg} FROM ${src}
       WHERE device = $1 AND ${timeCol} >= epoch_ms($2::BIGINT)::TIMESTAMPTZ AND ${timeCol} < epoch_ms($3::BIGINT)::TIMESTAMPTZ ${metric}
       GROUP BY metric, t ORDER BY t, metric LIMIT ${q.limit + 1}`,
      params,
    );
    const points = rows.slice(0, q.limit).map((r): BucketPoint => ({
      metric: String(r['metric']),
      ts: iso(r['t']),
      count: n(r['count']),
      min: n(r['min']),
      max: n(r['max']),
      mean: n(r['mean']),
      last: n(r['last']),
      maxScore: nOrNull(r['max_score']),
      alerts: n(r['alerts']),
    }));
    return { source, points, truncated: rows.length > q.limit };
  }

  /** Rows of a site/date-partitioned table in a time range, newest first. */
  private async inRange(
    table: TableName,
    timeCol: string,
    select: string,
    q: RangeQuery,
    extra: Record<string, string | undefined>,
    orderBy: string,
  ): Promise<Row[]> {
    const files = this.files(table, q.site, q.from, q.to);
    if (files.length === 0) return [];
    const params: DuckDBValue[] = [q.from, q.to];
    let where = '';
    for (const [col, v] of Object.entries({ device: q.device, ...extra })) if (v !== undefined) where += ` AND ${col} = $${params.push(v)}`;
    return this.duck.query(
      `SELECT ${select} FROM read_parquet(${sqlFileList(files)}, hive_partitioning = true, union_by_name = true)
       WHERE ${timeCol} >= epoch_ms($1::BIGINT)::TIMESTAMPTZ AND ${timeCol} < epoch_ms($2::BIGINT)::TIMESTAMPTZ${where}
       ORDER BY ${orderBy} LIMIT ${q.limit}`,
      params,
    );
  }

  async anomalies(q: RangeQuery): Promise<Record<string, unknown>[]> {
    const rows = await this.inRange(
      'anomalies',
      'ts',
      // `*`: files written before explanations existed have no `explain` column (it reads as absent).
      '*, epoch_ms(ts) AS t',
      q,
      {},
      't DESC, device, metric',
    );
    return rows.map((r) => ({
      site: String(r['site']),
      device: String(r['device']),
      metric: String(r['metric']),
      ts: iso(r['t']),
      value: n(r['value']),
      unit: String(r['unit']),
      score: nOrNull(r['score']),
      model: r['model'] ?? null,
      epoch: n(r['epoch']),
      seq: n(r['seq']),
      explain: typeof r['explain'] === 'string' ? (JSON.parse(r['explain']) as unknown) : null,
    }));
  }

  async quarantine(q: RangeQuery & { reason?: string | undefined }): Promise<Record<string, unknown>[]> {
    const rows = await this.inRange(
      'quarantine',
      'received_at',
      'site, batch_id, epoch_ms(received_at) AS received, device, epoch, seq, ts_ms, metric, value, unit, reason, detail, raw',
      q,
      { reason: q.reason },
      'received DESC, batch_id, seq',
    );
    return rows.map((r) => ({
      site: String(r['site']),
      batchId: String(r['batch_id']),
      receivedAt: iso(r['received']),
      device: r['device'] ?? null,
      epoch: nOrNull(r['epoch']),
      seq: nOrNull(r['seq']),
      ts: nOrNull(r['ts_ms']),
      metric: r['metric'] ?? null,
      value: nOrNull(r['value']),
      unit: r['unit'] ?? null,
      reason: String(r['reason']),
      detail: String(r['detail']),
      raw: String(r['raw']),
    }));
  }

  /** Every stored identity of one device, in order (verification tools and tests). */
  async identities(device: string): Promise<{ epoch: number; seq: number; metric: string; value: number }[]> {
    const files = this.files('silver', undefined);
    if (files.length === 0) return [];
    const rows = await this.duck.query(
      `SELECT epoch, seq, metric, value FROM read_parquet(${sqlFileList(files)}, hive_partitioning = false) WHERE device = $1 ORDER BY epoch, seq`,
      [device],
    );
    return rows.map((r) => ({ epoch: n(r['epoch']), seq: n(r['seq']), metric: String(r['metric']), value: n(r['value']) }));
  }
}
