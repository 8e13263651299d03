/**
 * One daemon per state directory (common/state-lock.ts): a second copy refuses, naming the holder;
 * a lock left by a killed process never blocks a restart; restore refuses while the daemon runs.
 * The daemons run compiled, as in production; the cloud and collector are checked in-process too.
 */
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { Cloud } from '../../cloud/cloud.js';
import { loadCloudConfig } from '../../cloud/config.js';
import { Collector } from '../../collector/collector.js';
import { loadCollectorConfig } from '../../collector/config.js';
import { backup } from '../../common/backup.js';
import { ErrorCodes, isEdgetwinError } from '../../common/errors.js';
import { LOCK_INFO_FILE, StateLock } from '../../common/state-lock.js';
import { runCli, spawnDaemon } from '../helpers/cli.js';
import { silent, startCloud, tempDir } from '../helpers/stack.js';

t.test('a second holder is refused with the first one named; release and re-take', async (t) => {
  const { dir, cleanup } = tempDir('edgetwin-lock-');
  t.teardown(cleanup);
  const state = join(dir, 'state');
  const first = StateLock.acquire(state, 'collector site-a');
  t.equal(first.previous, undefined, 'a fresh directory had no holder');
  let refused: unknown;
  try {
    StateLock.acquire(state, 'collector site-a');
  } catch (err) {
    refused = err;
  }
  t.ok(isEdgetwinError(refused, ErrorCodes.STATE_LOCKED), 'a second copy in the same process is refused');
  const msg = (refused as Error).message;
  t.match(msg, `pid ${process.pid}`, 'the refusal names the holder pid');
  t.match(msg, first.holder.since, '… and since when');
  t.match(msg, 'collector site-a', '… and what it is');
  first.release();
  t.notOk(existsSync(join(state, LOCK_INFO_FILE)), 'a clean release leaves no holder note');
  const again = StateLock.acquire(state, 'collector site-a');
  t.equal(again.previous, undefined, 'after a clean release there is no previous holder to report');
  again.release();
  again.release();
});

t.test('cloud and collector: a second copy on the same state refuses to start; stop releases', async (t) => {
  const { dir, cleanup } = tempDir('edgetwin-lock-');
  t.teardown(cleanup);
  const cloud = await startCloud(join(dir, 'cloud'));
  t.throws(
    () => new Cloud(loadCloudConfig(undefined, { stateDir: join(dir, 'cloud'), http: { port: 0 } }, {}), { log: silent() }),
    { code: ErrorCodes.STATE_LOCKED, message: /in use by cloud \(pid \d+/ },
    'a second cloud refuses before it opens the database',
  );
  await cloud.stop();
  const collectorCfg = loadCollectorConfig(
    undefined,
    { stateDir: join(dir, 'col'), mqtt: { port: 0 }, sinks: { http: { enabled: false } }, admin: { enabled: false } },
    {},
  );
  const collector = new Collector(collectorCfg, { log: silent() });
  await collector.start();
  t.throws(() => new Collector(collectorCfg, { log: silent() }), { code: ErrorCodes.STATE_LOCKED }, 'a second collector refuses');
  await collector.stop();
  const restarted = new Collector(collectorCfg, { log: silent() });
  await restarted.start();
  await restarted.stop();
  t.pass('a stopped collector released its state');
  const cloud2 = await startCloud(join(dir, 'cloud'));
  await cloud2.stop();
});

t.test('agent process: the second copy exits naming the first; a kill -9 leaves no stale lock', { timeout: 120_000 }, async (t) => {
  const { dir, cleanup } = tempDir('edgetwin-lock-');
  t.teardown(cleanup);
  const cfg = join(dir, 'agent.json');
  writeFileSync(
    cfg,
    JSON.stringify({
      deviceId: 'lock-1',
      stateDir: join(dir, 'agent'),
      uplink: { url: 'mqtt://127.0.0.1:1' },
      sources: { simulator: { enabled: false } },
      admin: { enabled: false },
      twin: { enabled: false },
      scoring: { enabled: false },
      log: { level: 'warn' },
    }),
  );
  const first = spawnDaemon(['agent', '--config', cfg]);
  t.teardown(() => {
    if (first.exitCode === null && first.signalCode === null) first.kill('SIGKILL');
  });
  await first.ready;
  const second = runCli(['agent', '--config', cfg]);
  t.equal(second.status, 1, 'the second agent exits 1');
  t.match(second.stderr, ErrorCodes.STATE_LOCKED);
  t.match(second.stderr, `agent lock-1 (pid ${first.pid}, since `, 'and names the holder: what, pid, since');
  first.kill('SIGKILL');
  await first.exited;
  const third = spawnDaemon(['agent', '--config', cfg]);
  t.teardown(() => {
    if (third.exitCode === null && third.signalCode === null) third.kill('SIGKILL');
  });
  const info = await third.ready;
  t.equal(info['deviceId'], 'lock-1', 'restarted after kill -9 without touching the lock file');
  third.kill('SIGTERM');
  t.equal(await third.exited, 0);
});

t.test('restore refuses while the daemon runs and leaves its state alone; works once it stopped', async (t) => {
  const { dir, cleanup } = tempDir('edgetwin-lock-');
  t.teardown(cleanup);
  const state = join(dir, 'cloud');
  const cloud = await startCloud(state);
  const out = join(dir, 'backup');
  const m = await backup(state, out);
  t.notOk(
    m.files.some((f) => f.path.startsWith('edgetwin.lock')),
    'the lock files are not part of a backup',
  );
  const refused = runCli(['restore', '--from', out, '--state', state]);
  t.equal(refused.status, 1, 'restore on a running cloud fails');
  t.match(refused.stderr, ErrorCodes.STATE_LOCKED);
  t.match(refused.stderr, `cloud (pid ${process.pid}`, 'naming the running daemon');
  t.notOk(
    readdirSync(dir).some((f) => f.includes('before-restore') || f.includes('restoring')),
    'nothing was moved aside or staged',
  );
  await cloud.stop();
  const ok = runCli(['restore', '--from', out, '--state', state]);
  t.equal(ok.status, 0, ok.stderr);
  const back = await startCloud(state);
  await back.stop();
});

t.test('demo: a second demo on the same home refuses before it starts anything', async (t) => {
  const { dir, cleanup } = tempDir('edgetwin-lock-');
  t.teardown(cleanup);
  const home = join(dir, 'demo');
  const held = StateLock.acquire(home, 'edgetwin demo');
  t.teardown(() => held.release());
  const r = runCli(['demo', '--agents', '0', '--cloud-port', '0', '--mqtt-port', '0'], { EDGETWIN_HOME: dir });
  t.equal(r.status, 1);
  t.match(r.stderr, ErrorCodes.STATE_LOCKED);
  t.match(r.stderr, `edgetwin demo (pid ${process.pid}`);
  t.notOk(existsSync(join(home, 'cloud')), 'no cloud state was created');
});
