/**
 * What several benchmarks need: a free loopback port, a broker to measure against (Debian's
 * mosquitto in memory, or the compiled edgetwin collector with its spool on disk) as a process of
 * its own, that process's peak RSS and CPU time from /proc, and an ingest post that rides out 503s.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { Pool } from 'undici';

const cli = new URL('../cli/edgetwin.js', import.meta.url).pathname;

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Peak RSS (VmHWM) of a process, MB; 'self' for this one. */
export function peakRssMb(pid: number | 'self' | undefined): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : 0;
  } catch {
    return 0;
  }
}

/** CPU seconds (user + system) a process has used so far. */
export function cpuSeconds(pid: number | undefined): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

export type BrokerKind = 'mosquitto' | 'collector';

export interface BenchBroker {
  kind: BrokerKind;
  port: number;
  proc: ChildProcess;
  stop(): Promise<void>;
}

async function portTaken(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(true));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(false)));
  });
}

/**
 * Starts a broker on 127.0.0.1:`port` with its files in `dir` and resolves once it listens.
 * mosquitto keeps messages in memory (its default); the collector runs with auth open, the rate
 * limit off (a load generator's few client ids would be throttled) and every PUBACK after an
 * fsync. `collector` merges over the collector's config (e.g. a file sink).
 */
export async function startBroker(
  kind: BrokerKind,
  port: number,
  dir: string,
  collector: Record<string, unknown> = {},
): Promise<BenchBroker> {
  mkdirSync(dir, { recursive: true });
  let proc: ChildProcess;
  if (kind === 'mosquitto') {
    const conf = join(dir, 'mosquitto.conf');
    writeFileSync(
      conf,
      `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 0\nmax_queued_messages 0\nlog_type error\n`,
    );
    proc = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] });
  } else {
    const cfg = join(dir, 'collector.json');
    const base = {
      stateDir: join(dir, 'collector'),
      mqtt: { port, rateLimit: { messagesPerS: 0 }, maxPayloadBytes: 1 << 20 },
      spool: { maxBytes: 8 * 1024 * 1024 * 1024 },
      admin: { enabled: false },
      sinks: { http: { enabled: false } },
      log: { level: 'warn' },
    };
    writeFileSync(cfg, JSON.stringify({ ...base, ...collector }));
    proc = spawn(process.execPath, [cli, 'collector', '--config', cfg], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  for (let i = 0; !(await portTaken(port)); i++) {
    if (proc.exitCode !== null) throw new Error(`${kind} exited with ${proc.exitCode}`);
    if (i >= 400) throw new Error(`${kind}: port ${port} never opened`);
    await new Promise((r) => setTimeout(r, 25));
  }
  const stop = async (): Promise<void> => {
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  };
  return { kind, port, proc, stop };
}

/** Posts one gzipped ingest envelope; a 503 (the cloud shedding load) is retried after 200 ms. */
export async function postIngest(pool: Pool, token: string, body: Buffer): Promise<void> {
  const r = await pool.request({
    method: 'POST',
    path: '/v1/ingest',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-encoding': 'gzip' },
    body,
  });
  const text = await r.body.text();
  if (r.statusCode === 503) {
    await new Promise((res) => setTimeout(res, 200));
    return postIngest(pool, token, body);
  }
  if (r.statusCode !== 200) throw new Error(`ingest ${r.statusCode}: ${text.slice(0, 200)}`);
}
