/**
 * The Parquet contract (docs/lakehouse.md): the lakehouse files are read by Spark/Databricks
 * unchanged. The files are produced by a real cloud (ingest, flush, compaction); everything checked
 * about them is read with DuckDB's parquet_schema()/parquet_metadata() only, no edgetwin code:
 * - timestamps INT64 TIMESTAMP (micros or millis) adjusted to UTC (Spark TimestampType), no INT96;
 * - no unsigned integers (Spark has none); strings BYTE_ARRAY UTF8; doubles DOUBLE; booleans BOOLEAN;
 * - site and date only in the Hive-style folder names `site=…/date=YYYY-MM-DD`, never in the files;
 * - a codec Spark reads (snappy, zstd, gzip) and Parquet v1 encodings only;
 * - one schema per table across all its files, before and after compaction (Spark reads a folder
 *   with one schema and refuses files whose column types disagree).
 */
import { join, relative, sep } from 'node:path';
import t, { type Test } from 'tap';
import { call, duckSql, envelope, startTestCloud, telemetry } from '../helpers/cloud.js';
import { tempDir } from '../helpers/util.js';

interface SchemaRow {
  file_name: string;
  name: string;
  type: string | null;
  converted_type: string | null;
  logical_type: string | null;
  num_children: number | null;
}

/** How Spark 3.x maps one Parquet column to a SQL type; `unsupported: …` where the contract says no. */
function sparkType(c: SchemaRow): string {
  const logical = c.logical_type ?? '';
  switch (c.type) {
    case 'BOOLEAN':
      return 'boolean';
    case 'DOUBLE':
      return 'double';
    case 'FLOAT':
      return 'float';
    case 'INT32':
      if (c.converted_type === 'DATE') return 'date';
      if (c.converted_type === null || c.converted_type === 'INT_32') return 'int';
      return `unsupported: INT32 ${c.converted_type}`;
    case 'INT64':
      if (/^TIMESTAMP_(MICROS|MILLIS)$/.test(c.converted_type ?? '')) {
        // Adjusted to UTC is Spark's TimestampType; a local (NTZ) timestamp would read differently per version.
        return /isAdjustedToUTC=(1|true)/.test(logical) ? 'timestamp' : `unsupported: ${c.converted_type} not adjusted to UTC`;
      }
      if ((c.converted_type === null || c.converted_type === 'INT_64') && !/isSigned=(0|false)/.test(logical)) return 'bigint';
      return `unsupported: INT64 ${c.converted_type} ${logical}`;
    case 'BYTE_ARRAY':
      return c.converted_type === 'UTF8' || /StringType/.test(logical) ? 'string' : 'binary';
    default:
      return `unsupported: ${c.type} ${c.converted_type ?? ''} ${logical}`;
  }
}

const READING = { device: 'string', epoch: 'bigint', seq: 'bigint', metric: 'string', value: 'double', unit: 'string', batch_id: 'string' };
const ROLLUP = {
  device: 'string',
  metric: 'string',
  bucket_start: 'timestamp',
  count: 'bigint',
  min: 'double',
  max: 'double',
  sum: 'double',
  mean: 'double',
  last: 'double',
  last_ts: 'timestamp',
  unit: 'string',
  max_score: 'double',
  alerts: 'bigint',
};

/** The Spark schema of every table's files (partition columns excluded: they are folders). */
const CONTRACT: Record<string, Record<string, string>> = {
  'bronze/batches': { batch_id: 'string', received_at: 'timestamp', staging_id: 'bigint', bytes: 'bigint', body: 'string' },
  'silver/readings': { ...READING, ts: 'timestamp', score: 'double', model: 'string', alert: 'boolean', received_at: 'timestamp' },
  'silver/quarantine': { ...READING, ts_ms: 'bigint', reason: 'string', detail: 'string', raw: 'string', received_at: 'timestamp' },
  'gold/rollup_1m': ROLLUP,
  'gold/rollup_1h': ROLLUP,
  'gold/anomalies': { ...READING, ts: 'timestamp', score: 'double', model: 'string', explain: 'string' },
};

const SPARK_CODECS = new Set(['SNAPPY', 'ZSTD', 'GZIP', 'UNCOMPRESSED']);
/** Parquet v1 encodings: every Spark 3.x vectorized reader decodes them (the DELTA_* ones only from 3.3). */
const V1_ENCODINGS = new Set(['PLAIN', 'PLAIN_DICTIONARY', 'RLE_DICTIONARY', 'RLE', 'BIT_PACKED']);

async function checkContract(t: Test, root: string, when: string): Promise<void> {
  const glob = `${root}/**/*.parquet`;
  const rows = (await duckSql(
    `SELECT file_name, name, type, converted_type, logical_type, num_children FROM parquet_schema('${glob}')`,
  )) as unknown as SchemaRow[];
  const files = new Map<string, SchemaRow[]>();
  for (const r of rows) {
    // The root element names the schema, it is no column.
    if (r.num_children !== null && r.num_children > 0) continue;
    files.set(r.file_name, [...(files.get(r.file_name) ?? []), r]);
  }
  const seen = new Set<string>();
  for (const [file, cols] of files) {
    const rel = relative(root, file).split(sep).join('/');
    const m =
      /^(bronze\/batches|silver\/readings|silver\/quarantine|gold\/rollup_1m|gold\/rollup_1h|gold\/anomalies)\/site=[^/=]+\/date=\d{4}-\d{2}-\d{2}\/[^/]+\.parquet$/.exec(
        rel,
      );
    if (!m) {
      t.fail(`${when}: ${rel} is not <table>/site=…/date=YYYY-MM-DD/<file>.parquet`);
      continue;
    }
    const table = m[1]!;
    seen.add(table);
    const got = Object.fromEntries(cols.map((c) => [c.name, sparkType(c)]));
    t.same(got, CONTRACT[table], `${when}: ${rel} has the Spark schema of ${table}`);
  }
  t.same([...seen].sort(), Object.keys(CONTRACT).sort(), `${when}: every table has files to check`);
  for (const r of rows) if (r.type === 'INT96') t.fail(`${when}: INT96 column ${r.name} in ${r.file_name}`);

  const chunks = await duckSql(`SELECT DISTINCT compression, encodings FROM parquet_metadata('${glob}')`);
  for (const c of chunks) {
    t.ok(SPARK_CODECS.has(String(c['compression'])), `${when}: codec ${String(c['compression'])} is read by Spark`);
    for (const e of String(c['encodings']).split(/,\s*/)) t.ok(V1_ENCODINGS.has(e), `${when}: encoding ${e} is Parquet v1`);
  }
}

t.test('lakehouse Parquet files match the Spark contract, before and after compaction', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'), { lakehouse: { compaction: { minFiles: 2 } } });
  t.teardown(() => cloud.stop());
  const start = Date.now() - 2 * 86_400_000;
  for (let b = 0; b < 3; b++) {
    const rs = Array.from({ length: 30 }, (_, i) => ({
      seq: b * 30 + i + 1,
      ts: start + (b * 30 + i) * 60_000,
      metric: 'temperature',
      value: i * 0.5,
      unit: 'degC',
      ...(i === 7 ? { score: 0.97, model: 'iforest-1', alert: true } : {}),
    }));
    // An empty unit goes to quarantine: that table is checked too.
    const bad = { seq: 10_000 + b, ts: start, metric: 'temperature', value: 1, unit: ' ' };
    const r = await call('POST', `${cloud.url}/v1/ingest`, { body: envelope(`pq-${b}`, 'site-pq', [telemetry('pq-1', 1, [...rs, bad])]) });
    t.equal(r.status, 200);
    await cloud.flush(); // one file per table and flush: compaction has something to merge
  }
  const root = cloud.lake.root;
  await checkContract(t, root, 'as written');
  const report = await cloud.lake.compact();
  t.ok((report?.merged ?? 0) >= 6, `compaction merged every table (${report?.merged} runs)`);
  await checkContract(t, root, 'after compaction');
});
