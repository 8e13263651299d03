/** Helpers for the cloud's HTTP tests: JSON requests with tokens, envelope builders, DuckDB SQL. */
import { gzipSync } from 'node:zlib';
import { DuckDBInstance } from '@duckdb/node-api';
import { request } from 'undici';
import { Cloud } from '../../cloud/cloud.js';
import { loadCloudConfig } from '../../cloud/config.js';
import { deepMerge } from '../../common/config.js';
import type { Reading } from '../../common/record.js';
import { createLogger } from '../../common/log.js';

export interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export async function call(
  method: 'GET' | 'POST' | 'PATCH',
  url: string,
  opts: { token?: string; body?: unknown; raw?: string | Buffer; gzip?: boolean; headers?: Record<string, string> } = {},
): Promise<Res> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.token) headers['authorization'] = `Bearer ${opts.token}`;
  let body: string | Buffer | undefined = opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
  if (body !== undefined) {
    headers['content-type'] ??= 'application/json';
    if (opts.gzip) {
      body = gzipSync(body);
      headers['content-encoding'] = 'gzip';
    }
  }
  const r = await request(url, { method, headers, body });
  const text = await r.body.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON (metrics, SSE)
  }
  return { status: r.statusCode, headers: r.headers, body: parsed };
}

export type R = Reading;

/** `n` readings of one device: seq from `from`, one per second ending now, metric m0..m2. */
export function readings(n: number, from = 1, at = Date.now() - n * 1000): R[] {
  return Array.from({ length: n }, (_, i) => ({ seq: from + i, ts: at + i * 1000, metric: `m${i % 3}`, value: i * 0.25, unit: 'u' }));
}

export function envelope(batchId: string, site: string, messages: unknown[]): { v: 1; batchId: string; site: string; messages: unknown[] } {
  return { v: 1, batchId, site, messages };
}

export function telemetry(device: string, epoch: number, rs: R[]): unknown {
  return { v: 1, device, epoch, readings: rs };
}

/** Runs SQL in a fresh in-memory DuckDB (no edgetwin code involved) and returns plain rows. */
export async function duckSql(sql: string): Promise<Record<string, unknown>[]> {
  const inst = await DuckDBInstance.create(':memory:');
  const con = await inst.connect();
  try {
    const rows = (await con.runAndReadAll(sql)).getRowObjectsJS() as Record<string, unknown>[];
    return rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'bigint' ? Number(v) : v])));
  } finally {
    con.closeSync();
    inst.closeSync();
  }
}

/** A cloud on 127.0.0.1:0 with its own state; maintenance schedules off (tests call them). */
export async function startTestCloud(stateDir: string, overrides: Record<string, unknown> = {}): Promise<Cloud> {
  const base = { stateDir, http: { port: 0 }, lakehouse: { flushIntervalMs: 200, compaction: { intervalMs: 0 }, retention: { intervalMs: 0 } } };
  const cloud = new Cloud(loadCloudConfig(undefined, deepMerge(base, overrides), {}), { log: createLogger('test', { level: 'silent' }) });
  await cloud.start();
  return cloud;
}
