/**
 * `edgetwin demo` (what `npm start` runs): a cloud, a collector and N simulated agents, each its own
 * process with its own state under $EDGETWIN_HOME/demo, started in dependency order. Children get
 * an IPC channel: they report readiness over it and shut down if it closes, so no orphans survive.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StateLock } from '../common/state-lock.js';
import { demoTokens } from './demo-tokens.js';

export interface DemoOptions {
  cloudPort: number;
  mqttPort: number;
  agents: number;
  /** Defaults to $EDGETWIN_HOME/demo or ./var/demo. */
  home?: string;
  /** Where to print the tour (stdout by default). */
  out?: (line: string) => void;
}

export interface Child {
  name: string;
  proc: ChildProcess;
  log: string;
}

/**
 * Stops the daemons in the reverse of their start order — agents first (they flush into the
 * collector), then the collector, then the cloud: SIGTERM, and SIGKILL after 10 s.
 */
export async function stopChildren(children: readonly Child[]): Promise<void> {
  for (const c of [...children].reverse()) {
    if (c.proc.exitCode !== null || c.proc.signalCode !== null) continue;
    const exited = new Promise((r) => c.proc.once('exit', r));
    c.proc.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
  }
}

const cliPath = fileURLToPath(new URL('./edgetwin.js', import.meta.url));

function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

export function spawnDaemon(
  name: string,
  command: string,
  configFile: string,
  logDir: string,
  env?: NodeJS.ProcessEnv,
  readyTimeoutMs = 90_000,
): Promise<{ child: Child; info: Record<string, unknown> }> {
  const log = join(logDir, `${name}.log`);
  const fd = openSync(log, 'a');
  const proc = fork(cliPath, [command, '--config', configFile], {
    stdio: ['ignore', fd, fd, 'ipc'],
    ...(env ? { env: { ...process.env, ...env } } : {}),
  });
  const child: Child = { name, proc, log };
  return new Promise((resolve, reject) => {
    // Generous: a cold start on a busy two-core gateway (DuckDB, migrations, model smoke tests) can take tens of seconds.
    // Not ready in time: killed, not left running beside a next attempt (same port, same state).
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${name} did not become ready in ${readyTimeoutMs / 1000} s; see ${log}\n${tail(log)}`));
    }, readyTimeoutMs);
    proc.once('message', (m: { type?: string }) => {
      if (m?.type !== 'ready') return;
      clearTimeout(timer);
      resolve({ child, info: m as Record<string, unknown> });
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (code ${code}) before it was ready; last lines of ${log}:\n${tail(log)}`));
    });
  });
}

export async function runDemo(opts: DemoOptions): Promise<void> {
  const out = opts.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const home = opts.home ?? join(process.env['EDGETWIN_HOME'] ?? 'var', 'demo');
  const logDir = join(home, 'logs');
  mkdirSync(logDir, { recursive: true });
  // A second demo on the same home refuses here, naming the first. Held (referenced) until every
  // child has stopped: a lock object left to the garbage collector would close, and release, early.
  const lock = StateLock.acquire(home, 'edgetwin demo');
  const write = (name: string, cfg: unknown): string => {
    const f = join(home, `${name}.json`);
    writeFileSync(f, `${JSON.stringify(cfg, null, 2)}\n`);
    return f;
  };
  const children: Child[] = [];
  let stopping = false;

  const stopAll = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await stopChildren(children);
    lock.release();
  };

  const onSignal = (): void => {
    out('\nstopping demo…');
    void stopAll().then(() => {
      out('demo stopped; state kept in ' + home + ' (run npm start again to resume)');
      process.exit(0);
    });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    // Reads are open to anonymous callers (curl works as is); writes and ingest need the tokens.
    const tokens = await demoTokens(home, 'demo-site');
    const cloudCfg = write('cloud', {
      stateDir: join(home, 'cloud'),
      http: { host: '127.0.0.1', port: opts.cloudPort },
      auth: { anonymousRole: 'viewer' },
    });
    const cloud = await spawnDaemon('cloud', 'cloud', cloudCfg, logDir);
    children.push(cloud.child);
    const cloudUrl = String(cloud.info['url']);

    const collectorCfg = write('collector', {
      siteId: 'demo-site',
      stateDir: join(home, 'collector'),
      mqtt: { host: '127.0.0.1', port: opts.mqttPort },
      sinks: { http: { url: cloudUrl } },
      admin: { enabled: true, host: '127.0.0.1', port: 0 },
    });
    const collector = await spawnDaemon('collector', 'collector', collectorCfg, logDir, { EDGETWIN_CLOUD_TOKEN: tokens.collector });
    children.push(collector.child);
    const mqttUrl = `mqtt://127.0.0.1:${String(collector.info['mqttPort'])}`;

    const agents = await Promise.all(
      Array.from({ length: opts.agents }, (_, i) => {
        const id = `sim-${i + 1}`;
        const f = write(`agent-${id}`, {
          deviceId: id,
          stateDir: join(home, 'agents', id),
          uplink: { url: mqttUrl },
          sources: { simulator: { intervalMs: 1000 } },
        });
        return spawnDaemon(`agent-${id}`, 'agent', f, logDir);
      }),
    );
    for (const a of agents) children.push(a.child);
    // `edgetwin status` with no arguments reads this to find the demo's daemons.
    const targets = [
      { name: 'cloud', url: cloudUrl },
      { name: 'collector', url: `http://127.0.0.1:${String(collector.info['adminPort'])}` },
      ...agents
        .filter((a) => a.info['adminPort'])
        .map((a) => ({ name: `agent ${String(a.info['deviceId'])}`, url: `http://127.0.0.1:${String(a.info['adminPort'])}` })),
    ];
    writeFileSync(join(home, 'status.json'), `${JSON.stringify({ targets }, null, 2)}\n`);

    out('');
    out('edgetwin demo is running on 127.0.0.1');
    out(`  twin API        ${cloudUrl}/v1/twins`);
    out(`  one twin        ${cloudUrl}/v1/twins/sim-1`);
    out(`  cloud metrics   ${cloudUrl}/metrics   API: ${cloudUrl}/openapi.json`);
    out(`  admin token     ${tokens.admin}  (also in ${join(home, 'tokens.json')}; reads need none)`);
    out(`  collector MQTT  ${mqttUrl}`);
    out(`  collector ops   http://127.0.0.1:${String(collector.info['adminPort'])}/metrics  /healthz`);
    out(`  agents          ${agents.map((a) => String(a.info['deviceId'])).join(', ')} (simulated, one reading per metric per second)`);
    out(`  dashboard       ${cloudUrl}/dashboard/#token=${tokens.admin}`);
    out(`  status          node dist/cli/edgetwin.js status   (every daemon on one screen)`);
    out(`  logs            ${logDir}`);
    out('');
    out(`Try: curl -s ${cloudUrl}/v1/twins`);
    out(`     curl -s "${cloudUrl}/v1/twins/sim-1/telemetry?metric=temperature&bucket=1m"`);
    out(`     curl -s -X PATCH -H 'authorization: Bearer ${tokens.admin}' -H 'if-match: *' \\`);
    out(`          -H 'content-type: application/json' -d '{"samplingIntervalMs":2000}' ${cloudUrl}/v1/twins/sim-1/desired`);
    out(`     EDGETWIN_CLOUD_URL=${cloudUrl} EDGETWIN_TOKEN=${tokens.admin} node dist/cli/edgetwin.js invoke sim-1 getDiagnostics`);
    out('Ctrl-C stops everything; state is kept, so a second start resumes.');

    // A child that dies on its own takes the demo down rather than leaving it half-alive.
    for (const c of children) {
      c.proc.once('exit', (code, signal) => {
        if (stopping) return;
        out(`${c.name} exited unexpectedly (code ${code ?? signal}); last lines of ${c.log}:\n${tail(c.log)}`);
        void stopAll().then(() => process.exit(1));
      });
    }
  } catch (err) {
    await stopAll();
    throw err;
  }
}
