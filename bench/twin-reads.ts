/**
 * Twin point reads for bench:cloud: autocannon on `GET /v1/twins/{id}` with random ids, on every
 * replica at once (one autocannon per replica, `connections` split over them), in two windows:
 *
 * - first reads: right after ingest. Ingest changed every twin, so every cache starts empty, and
 *   the cloud's read path has not run yet (V8 has not compiled it; the pools hold the connections
 *   ingest left). What a dashboard opened right after a burst sees.
 * - steady reads: the next window, the figure the targets are about (a cloud that serves reads
 *   while it ingests has its read path compiled and its connections open; its caches keep every
 *   twin that did not change since it was read).
 */
import { createRequire } from 'node:module';

interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number };
  non2xx: number;
  errors: number;
}
type Autocannon = (opts: Record<string, unknown>) => Promise<AutocannonResult>;
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

export interface ReadWindow {
  readsPerS: number;
  total: number;
  /** Worst replica. */
  p50Ms: number;
  p99Ms: number;
}

export interface TwinReadOptions {
  token: string;
  /** Ids are `dev-0` … `dev-(devices-1)`. */
  devices: number;
  connections: number;
  durationS: number;
}

export async function readWindow(urls: readonly string[], o: TwinReadOptions): Promise<ReadWindow> {
  const per = Math.max(1, Math.floor(o.connections / urls.length));
  const runs = await Promise.all(
    urls.map((url) =>
      autocannon({
        url,
        connections: per,
        duration: o.durationS,
        headers: { authorization: `Bearer ${o.token}` },
        requests: [
          {
            method: 'GET',
            setupRequest: (req: object) => ({ ...req, path: `/v1/twins/dev-${Math.floor(Math.random() * o.devices)}` }),
          },
        ],
      }),
    ),
  );
  for (const r of runs) if (r.non2xx > 0 || r.errors > 0) throw new Error(`twin reads: ${r.non2xx} non-2xx, ${r.errors} errors`);
  return {
    readsPerS: Math.round(runs.reduce((n, r) => n + r.requests.average, 0)),
    total: runs.reduce((n, r) => n + r.requests.total, 0),
    p50Ms: Math.max(...runs.map((r) => r.latency.p50)),
    p99Ms: Math.max(...runs.map((r) => r.latency.p99)),
  };
}
