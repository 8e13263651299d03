/**
 * The embedded engine that writes and reads the lakehouse's Parquet: one in-memory DuckDB
 * instance per process (it holds no data of its own), with writer connections and a few query
 * connections. DuckDB runs statements on its own threads, so the event loop keeps serving.
 */
import { DuckDBInstance, type DuckDBConnection, type DuckDBValue } from '@duckdb/node-api';

export interface DuckConfig {
  threads: number;
  memoryLimitMb: number;
}

export type Row = Record<string, unknown>;

export class Duck {
  private readonly idle: DuckDBConnection[] = [];
  private readonly waiting: ((c: DuckDBConnection) => void)[] = [];
  private closed = false;

  private constructor(
    private readonly instance: DuckDBInstance,
    readonly writers: DuckDBConnection[],
    pool: DuckDBConnection[],
  ) {
    this.idle.push(...pool);
  }

  static async open(cfg: DuckConfig, queryConnections = 3, writerConnections = Math.min(2, cfg.threads)): Promise<Duck> {
    const instance = await DuckDBInstance.create(':memory:', {
      threads: String(cfg.threads),
      memory_limit: `${cfg.memoryLimitMb}MB`,
      // Nothing may be fetched at run time (no network in production either): extensions must be built in.
      autoinstall_known_extensions: 'false',
      autoload_known_extensions: 'false',
      // Lets COPY write Parquet on all threads; every query whose order matters says ORDER BY.
      preserve_insertion_order: 'false',
    });
    const writers = await Promise.all(Array.from({ length: writerConnections }, () => instance.connect()));
    const pool = await Promise.all(Array.from({ length: queryConnections }, () => instance.connect()));
    return new Duck(instance, writers, pool);
  }

  /** Runs a read-only query on a pooled connection; values come back as plain JS (bigint for BIGINT). */
  async query(sql: string, params: DuckDBValue[] = []): Promise<Row[]> {
    const conn = await this.acquire();
    try {
      const reader = await conn.runAndReadAll(sql, params);
      return reader.getRowObjectsJS() as Row[];
    } finally {
      this.release(conn);
    }
  }

  private acquire(): Promise<DuckDBConnection> {
    const c = this.idle.pop();
    if (c) return Promise.resolve(c);
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(c: DuckDBConnection): void {
    const next = this.waiting.shift();
    if (next) next(c);
    else this.idle.push(c);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.idle) c.closeSync();
    for (const w of this.writers) w.closeSync();
    this.instance.closeSync();
  }
}
