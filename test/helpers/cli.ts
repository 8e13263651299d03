import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
// Children start without tap's process tracker when coverage is off (child-env.ts says why).
import './child-env.js';
import { openSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The compiled CLI: daemons run compiled in production, so the tests run them the same way. */
export const CLI = fileURLToPath(new URL('../../dist/cli/edgetwin.js', import.meta.url));

/**
 * Runs the compiled CLI to its end. The timeout is a hang guard, not a speed check: a `cloud …`
 * command loads the cloud's modules (~2 s of CPU), 10-12 s of wall time at load average 36 here.
 * A command killed by it says so in `stderr` (status null) instead of failing an unrelated assert.
 */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });
  const killed = r.error ? `\n[runCli: ${r.error.message}]` : r.signal ? `\n[runCli: killed by ${r.signal}]` : '';
  return { status: r.status, stdout: r.stdout, stderr: `${r.stderr}${killed}` };
}

/** runCli without blocking the event loop: for commands that talk to a server of the test's own process. */
export function runCliAsync(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.once('close', (status) => resolve({ status, stdout, stderr })));
}

export function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess & { output: () => string } {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return Object.assign(child, { output: () => out });
}

/** The one freePort (bench/ and test/ share it). */
export { freePort } from '../../bench/support.js';

/** Process ids whose command line mentions `needle` (ours only). */
export function processesMentioning(needle: string): number[] {
  const r = spawnSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' });
  return r.stdout
    .split('\n')
    .filter((l) => l.includes(needle) && !l.includes('ps -eo'))
    .map((l) => Number(l.trim().split(/\s+/)[0]))
    .filter((pid) => pid !== process.pid);
}

export type DaemonChild = ChildProcess & {
  output: () => string;
  /** The `ready` message the daemon sends over IPC once it runs (ports, epoch…). */
  ready: Promise<Record<string, unknown>>;
  /** Resolves with the exit code (or signal) once the process is gone. */
  exited: Promise<number | string | null>;
};

/**
 * Runs a daemon of the compiled CLI with an IPC channel (it reports readiness over it and stops
 * when it closes), optionally with a pipe on stdin.
 */
export function spawnDaemon(args: string[], env: NodeJS.ProcessEnv = {}, opts: { stdin?: 'pipe' | 'ignore' } = {}): DaemonChild {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...env },
    stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe', 'ipc'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | string | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
  const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
    child.on('message', (m: { type?: string }) => {
      if (m?.type === 'ready') resolve(m as Record<string, unknown>);
    });
    void exited.then((code) => reject(new Error(`daemon exited (${String(code)}) before it was ready:\n${out}`)));
  });
  ready.catch(() => undefined);
  return Object.assign(child, { output: () => out, ready, exited });
}

/**
 * Starts a compiled daemon (`edgetwin <command> --config FILE`) as a child process with an IPC
 * channel and resolves with its ready message (ports, url). Without the test runner's TypeScript
 * loader (execArgv []): the child runs dist/ as production does, and starts in a second, not after
 * compiling the tree.
 */
export function spawnDaemonCompiled(
  command: 'agent' | 'collector' | 'cloud',
  configFile: string,
  logFile: string,
  timeoutMs = 60_000,
): Promise<{ proc: ChildProcess; info: Record<string, unknown> }> {
  const fd = openSync(logFile, 'a');
  const proc = fork(CLI, [command, '--config', configFile], { stdio: ['ignore', fd, fd, 'ipc'], execArgv: [] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${command} not ready in ${timeoutMs} ms; see ${logFile}`)), timeoutMs);
    proc.on('message', (m: { type?: string }) => {
      if (m?.type !== 'ready') return;
      clearTimeout(timer);
      resolve({ proc, info: m as Record<string, unknown> });
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${command} exited (code ${code}) before it was ready; see ${logFile}`));
    });
  });
}
