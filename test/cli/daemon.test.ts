/**
 * runDaemon as a real process: SIGTERM ends a daemon whose graceful stop finishes (exit 0) and one
 * whose stop never finishes, after its force-exit delay (exit 1 with a line that says why). The
 * cloud runs with a 9 s delay so that a lakehouse writer stuck on a failing flush cannot keep it
 * alive past systemd's 10 s stop timeout (issue 13).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const DAEMON = fileURLToPath(new URL('../../dist/cli/daemon.js', import.meta.url));

/** A daemon process whose stop() resolves (`stuck` false) or never does; SIGTERM once it is ready. */
async function terminate(stuck: boolean): Promise<{ code: number | null; stderr: string; stopped: boolean }> {
  // The daemon's own work (an interval) keeps its event loop alive until stop() ends it.
  const stop = stuck ? 'new Promise(() => {})' : '(clearInterval(work), Promise.resolve())';
  const script = `
    import { runDaemon } from ${JSON.stringify(DAEMON)};
    const work = setInterval(() => {}, 1000);
    await runDaemon('test-daemon', {
      start: async () => {},
      stop: () => { process.stdout.write('stop called\\n'); return ${stop}; },
    }, () => ({}), 200);
  `;
  const dir = mkdtempSync(join(tmpdir(), 'edgetwin-daemon-'));
  const file = join(dir, 'daemon.mjs');
  writeFileSync(file, script);
  const child = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    child.on('message', (m: { type?: string }) => m?.type === 'ready' && resolve());
    void exited.then((code) => reject(new Error(`exited (${code}) before ready: ${stderr}`)));
  });
  child.kill('SIGTERM');
  const code = await exited;
  rmSync(dir, { recursive: true, force: true });
  return { code, stderr, stopped: stdout.includes('stop called') };
}

t.test('SIGTERM with a stop that finishes: exit 0', async (t) => {
  const r = await terminate(false);
  t.ok(r.stopped, 'the daemon was asked to stop');
  t.equal(r.code, 0, r.stderr);
});

t.test('SIGTERM with a stop that never finishes: the process exits anyway, code 1, and says why', async (t) => {
  const r = await terminate(true);
  t.ok(r.stopped, 'the daemon was asked to stop');
  t.equal(r.code, 1);
  t.match(r.stderr, /test-daemon: shutdown took too long, exiting/);
});
