/**
 * The SQL of one lakehouse flush (cloud/lakehouse/writer.ts): the scratch tables a micro-batch is
 * appended to, the readings DuckDB extracts from the staged envelopes, and what each table's
 * Parquet files hold.
 */
import { sqlString, type TableName } from './layout.js';

/** The telemetry part of an envelope, as DuckDB's json_transform extracts it (extra keys are ignored). */
const ENVELOPE_STRUCTURE = JSON.stringify({
  messages: [
    {
      kind: 'VARCHAR',
      device: 'VARCHAR',
      epoch: 'BIGINT',
      readings: [
        {
          seq: 'BIGINT',
          ts: 'BIGINT',
          metric: 'VARCHAR',
          value: 'DOUBLE',
          unit: 'VARCHAR',
          score: 'DOUBLE',
          model: 'VARCHAR',
          alert: 'BOOLEAN',
          explain: 'JSON',
        },
      ],
    },
  ],
});

export const SETUP = [
  'CREATE OR REPLACE TEMP TABLE mb_batches (stg BIGINT, site VARCHAR, batch_id VARCHAR, received BIGINT, body BLOB, clean BLOB)',
  `CREATE OR REPLACE TEMP TABLE mb_quarantine (site VARCHAR, batch_id VARCHAR, received BIGINT, device VARCHAR, epoch BIGINT, seq BIGINT,
     ts_ms BIGINT, metric VARCHAR, value DOUBLE, unit VARCHAR, reason VARCHAR, detail VARCHAR, raw VARCHAR)`,
];

export const READINGS = `CREATE OR REPLACE TEMP TABLE mb_readings AS
  WITH m AS (
    SELECT site, batch_id, received, unnest(json_transform(decode(coalesce(clean, body)), ${sqlString(ENVELOPE_STRUCTURE)}).messages) AS msg
    FROM mb_batches
  )
  SELECT site, batch_id, received, msg.device AS device, msg.epoch AS epoch, unnest(msg.readings, recursive := true)
  FROM m WHERE msg.kind IS NULL AND msg.device IS NOT NULL`;

const rollup = (interval: string): string => `
  SELECT device, metric, b::TIMESTAMPTZ AS bucket_start, count(*) AS count, min(value) AS min, max(value) AS max,
    sum(value) AS sum, avg(value) AS mean, arg_max(value, ts) AS last, epoch_ms(max(ts))::TIMESTAMPTZ AS last_ts,
    any_value(unit) AS unit, max(score) AS max_score, count(*) FILTER (WHERE alert) AS alerts,
    site, b::DATE AS date
  FROM (SELECT *, time_bucket(INTERVAL ${interval}, epoch_ms(ts)) AS b FROM mb_readings)
  GROUP BY site, device, metric, b`;

/** What each table's files hold; partition columns (site, date) go in the folder names, not the files. */
export const WRITER_QUERIES: Record<TableName, string> = {
  bronze: `SELECT batch_id, epoch_ms(received)::TIMESTAMPTZ AS received_at, stg AS staging_id, octet_length(body) AS bytes,
      decode(body) AS body, site, epoch_ms(received)::DATE AS date FROM mb_batches`,
  silver: `SELECT device, epoch, seq, epoch_ms(ts)::TIMESTAMPTZ AS ts, metric, value, unit, score, model, coalesce(alert, false) AS alert,
      batch_id, epoch_ms(received)::TIMESTAMPTZ AS received_at, site, epoch_ms(ts)::DATE AS date FROM mb_readings`,
  quarantine: `SELECT device, epoch, seq, ts_ms, metric, value, unit, reason, detail, raw, batch_id,
      epoch_ms(received)::TIMESTAMPTZ AS received_at, site, epoch_ms(received)::DATE AS date FROM mb_quarantine`,
  rollup1m: rollup('1 minute'),
  rollup1h: rollup('1 hour'),
  // An alert's explanation (docs/anomaly-detection.md) as its JSON text; files written before it existed lack the column.
  anomalies: `SELECT device, metric, epoch_ms(ts)::TIMESTAMPTZ AS ts, epoch, seq, value, unit, score, model, batch_id,
      explain::VARCHAR AS explain, site, epoch_ms(ts)::DATE AS date FROM mb_readings WHERE alert`,
};
