/**
 * The agent tarball (`npm run package:agent`) is what a device without build tools installs: it is
 * built here from the compiled dist/, unpacked into a fresh directory, and the agent inside it runs
 * from there against a real collector and cloud on loopback — its native modules (better-sqlite3
 * for the outbox, onnxruntime-node for scoring) load from the tarball, not from this checkout.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { startCloud, startCollector, tempDir, waitFor } from '../helpers/stack.js';

const root = new URL('../..', import.meta.url).pathname;

t.test('package:agent builds a tarball whose agent runs on its own, with native modules and the model', async (t) => {
  const { dir, cleanup } = tempDir('edgetwin-package-');
  t.teardown(cleanup);
  const tarball = join(dir, 'agent.tar.gz');
  // --no-build: npm test has built dist/ already, and rebuilding it would race the other test files.
  const pack = spawnSync('bash', [join(root, 'deploy/package-agent.sh'), '--no-build', '--reuse-node-modules', tarball], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  t.equal(pack.status, 0, pack.stderr);
  t.equal(pack.stdout.trim(), tarball, 'prints the tarball path');
  // Device-sized (issue 19): only what the agent loads ships; onnxruntime-node (one platform) is stated apart.
  const size = /unpacked (\d+) MiB, of which onnxruntime-node (\d+) MiB/.exec(pack.stderr);
  t.ok(size, `the script states the unpacked size: ${pack.stderr}`);
  t.ok(
    Number(size?.[1]) - Number(size?.[2]) <= 30,
    `at most 30 MiB unpacked without onnxruntime (${size?.[1]} MiB, ${size?.[2]} MiB of it onnxruntime)`,
  );
  const unpacked = join(dir, 'device');
  spawnSync('mkdir', ['-p', unpacked]);
  t.equal(spawnSync('tar', ['-C', unpacked, '-xzf', tarball]).status, 0, 'tarball unpacks');
  const app = join(unpacked, 'edgetwin');

  const modules = join(app, 'node_modules');
  for (const dev of ['tap', 'typescript', 'playwright-core', 'azure-iot-device'])
    t.notOk(existsSync(join(modules, dev)), `dev dependency ${dev} is not shipped`);
  t.ok(existsSync(join(modules, 'better-sqlite3/build/Release/better_sqlite3.node')), 'better-sqlite3 is prebuilt');
  const ortBin = join(modules, 'onnxruntime-node/bin/napi-v6');
  t.same(readdirSync(ortBin), ['linux'], 'onnxruntime for linux only');
  t.same(readdirSync(join(ortBin, 'linux')), [process.arch], `onnxruntime for ${process.arch} only`);
  t.ok(existsSync(join(app, 'models/manifest.json')), 'the model ships with it');
  t.ok(existsSync(join(app, 'systemd/edgetwin-agent.service')), 'the systemd unit ships with it');

  const cloud = await startCloud(join(dir, 'cloud'));
  t.teardown(() => cloud.stop());
  const collector = await startCollector(join(dir, 'collector'), cloud.url);
  t.teardown(() => collector.stop());
  const cfg = join(dir, 'agent.json');
  writeFileSync(
    cfg,
    JSON.stringify({
      deviceId: 'packaged-1',
      stateDir: join(dir, 'agent-state'),
      uplink: { url: `mqtt://127.0.0.1:${collector.mqttPort}`, backoff: { initialMs: 50, maxMs: 300 } },
      sources: { simulator: { enabled: true, intervalMs: 20, readingsPerTick: 5 } },
      admin: { enabled: true, port: 0 },
      twin: { enabled: false },
      // Not "auto": the test must fail if the packaged agent cannot find or load its model.
      scoring: { enabled: true },
      log: { level: 'warn' },
    }),
  );
  // cwd is the unpacked tree (as the systemd unit's WorkingDirectory would be): the manifest is found there.
  const agent = spawn(process.execPath, [join(app, 'dist/cli/edgetwin.js'), 'agent', '--config', cfg], {
    cwd: app,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let out = '';
  agent.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  agent.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | string | null>((resolve) => agent.once('exit', (code, signal) => resolve(code ?? signal)));
  t.teardown(() => void agent.kill('SIGKILL'));
  const ready = await new Promise<{ adminPort: number }>((resolve, reject) => {
    agent.on('message', (m: { type?: string; adminPort: number }) => m.type === 'ready' && resolve(m));
    void exited.then((code) => reject(new Error(`packaged agent exited (${String(code)}):\n${out}`)));
  });

  await waitFor(async () => (await cloud.identities('packaged-1')).length >= 50, 60_000, 'readings of the packaged agent in the cloud');
  const metrics = await (await fetch(`http://127.0.0.1:${ready.adminPort}/metrics`)).text();
  const scored = metrics
    .split('\n')
    .filter((l) => l.startsWith('edgetwin_scoring_readings_total'))
    .reduce((s, l) => s + Number(l.split(' ').pop()), 0);
  t.ok(scored > 0, `the packaged onnxruntime scored readings (${scored})`);

  agent.kill('SIGTERM');
  t.equal(await exited, 0, `clean exit on SIGTERM:\n${out}`);
});
