/**
 * `npm run bench:methods` — direct-method round trip on loopback: HTTP into the cloud
 * (`POST /v1/twins/{id}/methods/ping`), down the site's push channel to the collector, over MQTT to
 * the agent, and the answer back the same way. Cloud, collector and agents run compiled, each as
 * its own process (as `edgetwin demo` starts them).
 *
 *   npm run bench:methods -- [--devices 10] [--calls 500] [--concurrency 32] [--seconds 8] [--desired 3] [--json]
 *
 * Figures: sequential latency (p50, p99 over --calls calls spread over the devices), throughput
 * with --concurrency calls in flight, and side by side on the same run: a twin read through the
 * same cloud (the API's own floor) and a desired-property change until the device reports it
 * applied (the path a command had before direct methods: the collector polls the desired feed).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { Pool } from 'undici';
import { spawnDaemon, stopChildren, type Child } from '../cli/demo.js';
import { demoTokens } from '../cli/demo-tokens.js';
import { cpuSeconds, freePort, peakRssMb } from './support.js';

const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '10' },
    calls: { type: 'string', default: '500' },
    concurrency: { type: 'string', default: '32' },
    seconds: { type: 'string', default: '8' },
    desired: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
  },
});
const devices = Number(values.devices);
const calls = Number(values.calls);
const concurrency = Number(values.concurrency);
const seconds = Number(values.seconds);
const desiredRounds = Number(values.desired);

const home = mkdtempSync(join(tmpdir(), 'edgetwin-bench-methods-'));
const logDir = join(home, 'logs');
const children: Child[] = [];
const write = (name: string, cfg: unknown): string => {
  const f = join(home, `${name}.json`);
  writeFileSync(f, JSON.stringify(cfg));
  return f;
};

const stopAll = (): Promise<void> => stopChildren(children);

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const round = (x: number, d = 2): number => Number(x.toFixed(d));

async function main(): Promise<Record<string, unknown>> {
  const { mkdirSync } = await import('node:fs');
  mkdirSync(logDir, { recursive: true });
  const tokens = await demoTokens(home, 'bench-site');
  const cloudPort = await freePort();
  const cloud = await spawnDaemon(
    'cloud',
    'cloud',
    write('cloud', {
      stateDir: join(home, 'cloud'),
      http: { host: '127.0.0.1', port: cloudPort },
      // One admin token drives every call: the per-principal API limit (50/s by default) would be the figure.
      rateLimit: { perPrincipal: { ratePerS: 0 } },
      log: { level: 'warn' },
    }),
    logDir,
  );
  children.push(cloud.child);
  const url = String(cloud.info['url']);
  const collector = await spawnDaemon(
    'collector',
    'collector',
    write('collector', {
      siteId: 'bench-site',
      stateDir: join(home, 'collector'),
      mqtt: { host: '127.0.0.1', port: 0 },
      sinks: { http: { url } },
      admin: { enabled: false },
      log: { level: 'warn' },
    }),
    logDir,
    { EDGETWIN_CLOUD_TOKEN: tokens.collector },
  );
  children.push(collector.child);
  const mqtt = `mqtt://127.0.0.1:${String(collector.info['mqttPort'])}`;
  const ids = Array.from({ length: devices }, (_, i) => `bench-${i + 1}`);
  // One after another: a loaded machine starts ten Node processes at once slower than each alone.
  const agents: Awaited<ReturnType<typeof spawnDaemon>>[] = [];
  for (const id of ids) {
    agents.push(
      await spawnDaemon(
        `agent-${id}`,
        'agent',
        write(`agent-${id}`, {
          deviceId: id,
          stateDir: join(home, 'agents', id),
          uplink: { url: mqtt },
          // One reading at start (the twin exists), then quiet: the figures are the methods' own.
          sources: { simulator: { intervalMs: 3_600_000 } },
          admin: { enabled: false },
          scoring: { enabled: false },
          log: { level: 'warn' },
        }),
        logDir,
      ),
    );
    children.push(agents.at(-1)!.child);
  }

  const pool = new Pool(url, { connections: concurrency, pipelining: 1 });
  const headers = { authorization: `Bearer ${tokens.admin}`, 'content-type': 'application/json' };
  const post = async (path: string, body: unknown): Promise<{ status: number; body: { status?: number } }> => {
    const r = await pool.request({ method: 'POST', path, headers, body: JSON.stringify(body) });
    return { status: r.statusCode, body: (await r.body.json()) as { status?: number } };
  };
  const get = async (path: string): Promise<{ status: number; body: Record<string, unknown> }> => {
    const r = await pool.request({ method: 'GET', path, headers });
    return { status: r.statusCode, body: (await r.body.json()) as Record<string, unknown> };
  };
  const invoke = async (id: string): Promise<number> => {
    const t0 = performance.now();
    const r = await post(`/v1/twins/${id}/methods/ping`, { payload: null, responseTimeoutS: 30 });
    if (r.status !== 200 || r.body.status !== 200) throw new Error(`ping ${id}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
    return performance.now() - t0;
  };

  // Every device known to the cloud (its first batch) and reachable by a method.
  const deadline = Date.now() + 60_000;
  for (const id of ids) {
    for (;;) {
      const r = await post(`/v1/twins/${id}/methods/ping`, { payload: null, responseTimeoutS: 5, connectTimeoutS: 5 }).catch(
        () => undefined,
      );
      if (r?.status === 200) break;
      if (Date.now() > deadline) throw new Error(`${id} never answered a ping (last: ${JSON.stringify(r)})`);
      await new Promise((res) => setTimeout(res, 200));
    }
  }

  for (let i = 0; i < 50; i++) await invoke(ids[i % devices]!);
  const latencies: number[] = [];
  for (let i = 0; i < calls; i++) latencies.push(await invoke(ids[i % devices]!));
  const reads: number[] = [];
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now();
    const r = await get(`/v1/twins/${ids[i % devices]!}`);
    if (r.status !== 200) throw new Error(`twin read: ${r.status}`);
    reads.push(performance.now() - t0);
  }

  // Throughput: `concurrency` callers back to back for `seconds`.
  const cpu0 = { cloud: cpuSeconds(cloud.child.proc.pid), collector: cpuSeconds(collector.child.proc.pid) };
  let done = 0;
  const stopAt = performance.now() + seconds * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      for (let i = w; performance.now() < stopAt; i += concurrency) {
        await invoke(ids[i % devices]!);
        done++;
      }
    }),
  );
  const elapsedS = (performance.now() - t0) / 1000;
  const cpu = {
    cloud: cpuSeconds(cloud.child.proc.pid) - cpu0.cloud,
    collector: cpuSeconds(collector.child.proc.pid) - cpu0.collector,
  };

  // The path before direct methods: change desired, wait until the device reports it applied.
  const desired: number[] = [];
  for (let r = 0; r < desiredRounds; r++) {
    const id = ids[r % devices]!;
    const t1 = performance.now();
    const p = await pool.request({
      method: 'PATCH',
      path: `/v1/twins/${id}/desired`,
      headers: { ...headers, 'if-match': '*' },
      body: JSON.stringify({ samplingIntervalMs: 1000 + r + 1 }),
    });
    const twin = (await p.body.json()) as { desired: { $version: number } };
    const version = twin.desired.$version;
    for (;;) {
      const t = await get(`/v1/twins/${id}`);
      if (((t.body['applied'] as { version?: number } | undefined)?.version ?? 0) >= version) break;
      if (performance.now() - t1 > 60_000) throw new Error('desired change never applied');
      await new Promise((res) => setTimeout(res, 10));
    }
    desired.push(performance.now() - t1);
  }
  await pool.close();

  const p50 = pct(latencies, 50);
  return {
    devices,
    calls,
    concurrency,
    seconds,
    method_p50_ms: round(p50),
    method_p90_ms: round(pct(latencies, 90)),
    method_p99_ms: round(pct(latencies, 99)),
    method_max_ms: round(Math.max(...latencies)),
    invocations_per_s: Math.round(done / elapsedS),
    cloud_cpu_ms_per_invocation: round((cpu.cloud * 1000) / done, 3),
    collector_cpu_ms_per_invocation: round((cpu.collector * 1000) / done, 3),
    twin_read_p50_ms: round(pct(reads, 50)),
    method_vs_twin_read_p50_ratio: round(p50 / pct(reads, 50)),
    desired_applied_p50_ms: desired.length ? Math.round(pct(desired, 50)) : null,
    desired_vs_method_p50_ratio: desired.length ? Math.round(pct(desired, 50) / p50) : null,
    cloud_rss_mb: peakRssMb(cloud.child.proc.pid),
    collector_rss_mb: peakRssMb(collector.child.proc.pid),
  };
}

let figures: Record<string, unknown> | undefined;
try {
  figures = await main();
} catch (err) {
  await stopAll();
  console.error(`bench:methods failed; logs kept in ${logDir}`);
  throw err;
}
await stopAll();
rmSync(home, { recursive: true, force: true });
const f = figures;
console.log(`direct methods: cloud → channel → collector → agent and back, ${devices} agents, loopback, separate processes`);
console.log(
  `sequential (${calls} calls)  p50 ${String(f['method_p50_ms'])} ms   p90 ${String(f['method_p90_ms'])} ms   p99 ${String(f['method_p99_ms'])} ms   max ${String(f['method_max_ms'])} ms`,
);
console.log(`throughput (${concurrency} in flight, ${seconds} s)  ${String(f['invocations_per_s'])} invocations/s`);
console.log(
  `  CPU per invocation: cloud ${String(f['cloud_cpu_ms_per_invocation'])} ms, collector ${String(f['collector_cpu_ms_per_invocation'])} ms`,
);
console.log(`side by side: twin read p50 ${String(f['twin_read_p50_ms'])} ms (method/read ${String(f['method_vs_twin_read_p50_ratio'])}×)`);
console.log(
  `              desired change until applied p50 ${String(f['desired_applied_p50_ms'])} ms (${String(f['desired_vs_method_p50_ratio'])}× a method)`,
);
console.log(`peak RSS: cloud ${String(f['cloud_rss_mb'])} MB, collector ${String(f['collector_rss_mb'])} MB`);
if (values.json) console.log(JSON.stringify(f));
