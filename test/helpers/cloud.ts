/** Helpers for the cloud's HTTP tests: JSON requests with tokens, envelope builders, DuckDB SQL. */
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Test } from 'tap';
import { request } from 'undici';
// Types only: the cloud's modules load when a test first starts one (startTestCloud), so a test
// that only uses call/envelope/readings does not compile the whole cloud (~3 s of CPU).
import type { Cloud, CloudDeps } from '../../cloud/cloud.js';
import { deepMerge } from '../../common/config.js';
import type { Reading } from '../../common/wire/record.js';
import { createLogger } from '../../common/log.js';
import { tempDir } from './util.js';

export interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export async function call(
  method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE',
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
export { duckSql } from './duck.js';

/**
 * The one way tests start a cloud (test/helpers/stack.ts's startCloud is this too): 127.0.0.1:0, its
 * own state, maintenance schedules off (tests call them), `overrides` deep-merged over that.
 */
export async function startTestCloud(stateDir: string, overrides: object = {}, deps: CloudDeps = {}): Promise<Cloud> {
  const [{ Cloud }, { loadCloudConfig }] = await Promise.all([import('../../cloud/cloud.js'), import('../../cloud/config.js')]);
  const base = {
    stateDir,
    http: { port: 0 },
    lakehouse: { flushIntervalMs: 200, compaction: { intervalMs: 0 }, retention: { intervalMs: 0 } },
  };
  const cloud = new Cloud(loadCloudConfig(undefined, deepMerge(base, overrides), {}), {
    log: createLogger('test', { level: 'silent' }),
    ...deps,
  });
  await cloud.start();
  return cloud;
}

export type TokenRole = 'viewer' | 'operator' | 'admin' | 'collector';
export type TokenMaker = (role: TokenRole, site?: string | null, name?: string) => Promise<string>;

/** Mints tokens on a test cloud: `mk(role, site?, name?)` resolves to the bearer secret. */
export function tokenMaker(cloud: Cloud): TokenMaker {
  return async (role, site, name) =>
    (await cloud.tokens.create({ role, site: site ?? null, createdBy: 'test', ...(name ? { name } : {}) })).token;
}

/** A test cloud in a temp dir, stopped and removed when the test ends, with its URL and a token maker. */
export async function tokenCloud(t: Test): Promise<{ dir: string; cloud: Cloud; url: string; mk: TokenMaker }> {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'));
  t.teardown(() => cloud.stop());
  return { dir, cloud, url: cloud.url, mk: tokenMaker(cloud) };
}
