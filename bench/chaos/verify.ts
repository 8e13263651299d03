/**
 * The end-of-run checks, in plain DuckDB SQL over the silver Parquet files (no edgetwin code in
 * the read path) against what the load generator knows it sent and what each agent committed:
 *   lost        acknowledged readings missing from silver
 *   duplicated  extra copies of a reading (same device and value), and extra rows of one identity
 *   invented    silver rows that were never sent
 *   seq gaps    per device, the committed seqs 1..lastSeq that silver lacks (or seqs beyond it)
 *   order       per device, rows where a higher seq carries an earlier reading
 * plus end-to-end latency (received by the cloud − sampled) and the newest reading per metric,
 * which the twin must show.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';

export interface VerifyInput {
  lakeRoot: string;
  /** CSV `device,lo,hi,status` (status acked | in_doubt). */
  ledgerCsv: string;
  /** Last committed seq per device (from each agent's outbox). */
  lastSeq: Record<string, number>;
  workDir: string;
}

export interface VerifyFigures {
  readings_acknowledged: number;
  readings_in_doubt: number;
  readings_in_doubt_stored: number;
  readings_stored: number;
  readings_lost: number;
  readings_duplicated: number;
  identity_duplicates: number;
  readings_invented: number;
  seq_gaps: number;
  seq_beyond_committed: number;
  order_violations: number;
  quarantined: number;
  latency_max_ms: number;
  latency_p99_ms: number;
  latency_p50_ms: number;
}

export interface LastReading {
  device: string;
  metric: string;
  value: number;
  seq: number;
  epoch: number;
}

const sqlString = (s: string): string => `'${s.replace(/'/g, "''")}'`;

export class LakeChecker {
  private constructor(
    private readonly inst: DuckDBInstance,
    private readonly con: Awaited<ReturnType<DuckDBInstance['connect']>>,
    private readonly lakeRoot: string,
  ) {}

  static async open(lakeRoot: string): Promise<LakeChecker> {
    const inst = await DuckDBInstance.create(':memory:', { threads: '2' });
    return new LakeChecker(inst, await inst.connect(), lakeRoot);
  }

  async rows(sql: string): Promise<Record<string, unknown>[]> {
    const rows = (await this.con.runAndReadAll(sql)).getRowObjectsJS() as Record<string, unknown>[];
    return rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'bigint' ? Number(v) : v])));
  }

  private silverGlob(): string {
    return sqlString(join(this.lakeRoot, 'silver', 'readings', '**', '*.parquet'));
  }

  /** Rows in silver so far (0 before the first file). */
  async silverCount(): Promise<number> {
    try {
      const [r] = await this.rows(`SELECT count(*) AS n FROM read_parquet(${this.silverGlob()}, hive_partitioning = true)`);
      return Number(r?.['n'] ?? 0);
    } catch {
      return 0; // no file yet
    }
  }

  /** Loads silver into memory once; the checks below read that copy. */
  async load(): Promise<void> {
    await this.con.run(
      `CREATE OR REPLACE TEMP TABLE silver AS SELECT device, epoch, seq, metric, value, epoch_ms(ts) AS ts_ms, epoch_ms(received_at) AS rx_ms
       FROM read_parquet(${this.silverGlob()}, hive_partitioning = true)`,
    );
  }

  /** The newest reading per device and metric, by (ts, epoch, seq) as the twin orders them. */
  async lastPerMetric(): Promise<LastReading[]> {
    const rows = await this.rows(
      `SELECT device, metric, value, seq, epoch FROM (
         SELECT *, row_number() OVER (PARTITION BY device, metric ORDER BY ts_ms DESC, epoch DESC, seq DESC) AS rn FROM silver
       ) WHERE rn = 1 ORDER BY device, metric`,
    );
    return rows as unknown as LastReading[];
  }

  async verify(input: VerifyInput): Promise<VerifyFigures> {
    const seqCsv = join(input.workDir, 'committed-seqs.csv');
    writeFileSync(
      seqCsv,
      `device,last_seq\n${Object.entries(input.lastSeq)
        .map(([d, s]) => `${d},${s}`)
        .join('\n')}\n`,
    );
    await this.load();
    await this.con.run(
      `CREATE OR REPLACE TEMP TABLE ledger AS SELECT * FROM read_csv(${sqlString(input.ledgerCsv)}, header = true,
         columns = {'device': 'VARCHAR', 'lo': 'BIGINT', 'hi': 'BIGINT', 'status': 'VARCHAR'})`,
    );
    await this.con.run(`CREATE OR REPLACE TEMP TABLE sent AS SELECT device, unnest(range(lo, hi + 1)) AS n, status FROM ledger`);
    await this.con.run(
      `CREATE OR REPLACE TEMP TABLE seqs AS SELECT * FROM read_csv(${sqlString(seqCsv)}, header = true, columns = {'device': 'VARCHAR', 'last_seq': 'BIGINT'})`,
    );
    const one = async (sql: string): Promise<number> => Number((await this.rows(sql))[0]?.['n'] ?? 0);
    const stored = `EXISTS (SELECT 1 FROM silver v WHERE v.device = s.device AND v.value = s.n::DOUBLE)`;
    const lat = (
      await this.rows(
        `SELECT coalesce(max(rx_ms - ts_ms), 0) AS max, coalesce(quantile_cont(rx_ms - ts_ms, 0.99), 0) AS p99, coalesce(median(rx_ms - ts_ms), 0) AS p50 FROM silver`,
      )
    )[0]!;
    let quarantined = 0;
    try {
      quarantined = await one(
        `SELECT count(*) AS n FROM read_parquet(${sqlString(join(input.lakeRoot, 'silver', 'quarantine', '**', '*.parquet'))}, hive_partitioning = true)`,
      );
    } catch {
      // no quarantine file: nothing was quarantined
    }
    return {
      readings_acknowledged: await one(`SELECT count(*) AS n FROM sent WHERE status = 'acked'`),
      readings_in_doubt: await one(`SELECT count(*) AS n FROM sent WHERE status = 'in_doubt'`),
      readings_in_doubt_stored: await one(`SELECT count(*) AS n FROM sent s WHERE status = 'in_doubt' AND ${stored}`),
      readings_stored: await one(`SELECT count(*) AS n FROM silver`),
      readings_lost: await one(`SELECT count(*) AS n FROM sent s WHERE status = 'acked' AND NOT ${stored}`),
      readings_duplicated: await one(
        `SELECT coalesce(sum(c - 1), 0) AS n FROM (SELECT device, value, count(*) AS c FROM silver GROUP BY ALL HAVING c > 1)`,
      ),
      identity_duplicates: await one(
        `SELECT coalesce(sum(c - 1), 0) AS n FROM (SELECT device, epoch, seq, count(*) AS c FROM silver GROUP BY ALL HAVING c > 1)`,
      ),
      readings_invented: await one(
        `SELECT count(*) AS n FROM silver v WHERE NOT EXISTS (SELECT 1 FROM sent s WHERE s.device = v.device AND s.n::DOUBLE = v.value)`,
      ),
      seq_gaps: await one(
        `SELECT coalesce(sum(q.last_seq - coalesce(h.have, 0)), 0) AS n FROM seqs q
         LEFT JOIN (SELECT device, count(DISTINCT seq) AS have FROM silver v WHERE seq >= 1 AND seq <= (SELECT last_seq FROM seqs WHERE seqs.device = v.device) GROUP BY device) h USING (device)`,
      ),
      seq_beyond_committed: await one(
        `SELECT count(*) AS n FROM silver v LEFT JOIN seqs q USING (device) WHERE q.last_seq IS NULL OR v.seq > q.last_seq OR v.seq < 1`,
      ),
      order_violations: await one(
        `SELECT count(*) AS n FROM (SELECT value, lag(value) OVER (PARTITION BY device ORDER BY seq) AS prev FROM silver) WHERE prev IS NOT NULL AND value < prev`,
      ),
      quarantined,
      latency_max_ms: Number(lat['max']),
      latency_p99_ms: Math.round(Number(lat['p99'])),
      latency_p50_ms: Math.round(Number(lat['p50'])),
    };
  }

  close(): void {
    this.con.closeSync();
    this.inst.closeSync();
  }
}
