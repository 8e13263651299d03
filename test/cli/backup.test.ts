/**
 * Restore drill: a running cloud is backed up while it serves, the backup is restored into a new
 * state directory, and a cloud started there answers the same twin queries. Damaged backups are
 * refused before anything is touched.
 */
import { appendFileSync, existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { backup, readManifest, restore, verifyBackup } from '../../common/backup.js';
import { topics } from '../../common/wire/record.js';
import { runCli, spawnDaemon } from '../helpers/cli.js';
import { batch, closed, connectOnce, HUB, publishQos1, sasToken } from '../helpers/collector.js';
import { CountingSource, startAgent, startCloud, startCollector, tempDir, waitFor } from '../helpers/stack.js';

async function getJson(url: string): Promise<unknown> {
  const r = await request(url);
  return r.body.json();
}

/** Twin answers minus what changes with the clock. */
function stable(twins: unknown): unknown {
  return JSON.parse(JSON.stringify(twins), (k, v) => (k === 'lastSeenAgeMs' || k === 'status' ? undefined : v));
}

t.test('restore drill: the restored cloud answers the same twin queries', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const state = join(dir, 'cloud');
  let cloud = await startCloud(state);
  const collector = await startCollector(join(dir, 'collector'), cloud.url);
  const agent = await startAgent(join(dir, 'dev'), 'drill-1', collector.mqttPort, [new CountingSource(300, 100)]);
  await waitFor(
    async () => ((await getJson(`${cloud.url}/v1/twins/drill-1`)) as { readings?: number }).readings === 300,
    20_000,
    'readings in the cloud',
  );
  await agent.stop();
  await collector.stop();

  const before = await getJson(`${cloud.url}/v1/twins`);
  const one = await getJson(`${cloud.url}/v1/twins/drill-1`);
  const bak = join(dir, 'backup');
  const manifest = await backup(state, bak); // online: the cloud is still running
  t.ok(
    manifest.files.some((f) => f.kind === 'sqlite'),
    'SQLite files go through the online backup API',
  );
  t.same(verifyBackup(bak), []);
  await cloud.stop();

  const restored = join(dir, 'restored');
  t.equal(restore(bak, restored).files, manifest.files.length);
  cloud = await startCloud(restored);
  t.teardown(() => cloud.stop());
  t.same(stable(await getJson(`${cloud.url}/v1/twins`)), stable(before), 'same twin list');
  t.same(stable(await getJson(`${cloud.url}/v1/twins/drill-1`)), stable(one), 'same twin');
});

t.test('a damaged backup is refused and the state directory is left alone', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const state = join(dir, 'state');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(join(state, 'lake/site=a'), { recursive: true });
  writeFileSync(join(state, 'lake/site=a/part-1.parquet'), 'PAR1-not-really');
  writeFileSync(join(state, 'x.db-wal'), 'side file');
  const bak = join(dir, 'bak');
  const m = await backup(state, bak);
  t.same(
    m.files.map((f) => f.path),
    ['lake/site=a/part-1.parquet'],
    'WAL side files are not state',
  );
  appendFileSync(join(bak, 'lake/site=a/part-1.parquet'), 'tampered');
  t.match(verifyBackup(bak)[0], /checksum mismatch/);
  const target = join(dir, 'target');
  mkdirSync(target);
  writeFileSync(join(target, 'keep.txt'), 'mine');
  t.throws(() => restore(bak, target), { code: 'EDGETWIN_ERR_STORE_CORRUPT' });
  t.same(readdirSync(target), ['keep.txt'], 'nothing touched');
  t.rejects(backup(state, bak), { code: 'EDGETWIN_ERR_USAGE' }, 'never writes over an existing backup');
  t.equal(readManifest(bak).format, 1);
});

t.test('the CLI backs up, verifies and restores, keeping the old state aside', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const { mkdirSync } = await import('node:fs');
  const state = join(dir, 's');
  mkdirSync(state);
  writeFileSync(join(state, 'a.json'), '{"a":1}');
  const b = runCli(['backup', '--state', state, '--out', join(dir, 'b')]);
  t.equal(b.status, 0, b.stderr);
  t.match(b.stdout, /backed up 1 files/);
  t.equal(runCli(['restore', '--verify', '--from', join(dir, 'b')]).status, 0);
  const r = runCli(['restore', '--from', join(dir, 'b'), '--state', state]);
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /previous state is kept in/);
  t.ok(readdirSync(dir).some((f) => f.startsWith('s.before-restore-')));
  t.ok(existsSync(join(state, 'a.json')));
  const bad = runCli(['backup', '--out', join(dir, 'c')]);
  t.equal(bad.status, 2);
  t.match(bad.stderr, /needs --state/);
});

t.test('restore drill for the collector: added devices still authenticate, a revoked one stays refused', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const state = join(dir, 'collector');
  const cfgFor = (stateDir: string): string => {
    const file = join(dir, `${stateDir.split('/').pop()}.json`);
    writeFileSync(
      file,
      JSON.stringify({
        stateDir,
        mqtt: { port: 0 },
        auth: { mode: 'registry', revocationPollMs: 100 },
        admin: { enabled: false },
        sinks: { http: { enabled: false } },
      }),
    );
    return file;
  };
  const cfg = cfgFor(state);
  const added = (args: string[]): Record<string, string> => {
    const r = runCli(['collector', 'devices', 'add', ...args, '--config', cfg, '--json']);
    t.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as Record<string, string>;
  };
  const sas = added(['bk-sas']);
  const pw = added(['bk-pw', '--auth', 'password']);
  const gone = added(['bk-gone']);
  const username = (id: string): string => `${HUB}/${id}/?api-version=2021-04-12`;
  const asSas = (id: string, key: string): { clientId: string; username: string; password: string } => ({
    clientId: id,
    username: username(id),
    password: sasToken(id, key),
  });

  let proc = spawnDaemon(['collector', '--config', cfg], { EDGETWIN_LOG_LEVEL: 'warn' });
  t.teardown(() => void proc.kill('SIGKILL'));
  let url = `mqtt://127.0.0.1:${String((await proc.ready)['mqttPort'])}`;
  const before = await connectOnce(url, asSas('bk-gone', gone['key']!));
  t.notOk(before.refusedCode, 'bk-gone connects while it is active');
  // Revoked while the collector runs: the change may sit in the registry's WAL when the backup is taken.
  const revoke = runCli(['collector', 'devices', 'revoke', 'bk-gone', '--config', cfg]);
  t.equal(revoke.status, 0, revoke.stderr);
  t.ok(await closed(before.client, 5000), 'and is dropped once revoked');

  const bak = join(dir, 'backup');
  const b = runCli(['backup', '--state', state, '--out', bak]); // online: the collector still runs
  t.equal(b.status, 0, b.stderr);
  proc.kill('SIGTERM');
  await proc.exited;

  const restored = join(dir, 'restored');
  const r = runCli(['restore', '--from', bak, '--state', restored]);
  t.equal(r.status, 0, r.stderr);
  proc = spawnDaemon(['collector', '--config', cfgFor(restored)], { EDGETWIN_LOG_LEVEL: 'warn' });
  url = `mqtt://127.0.0.1:${String((await proc.ready)['mqttPort'])}`;

  const bySas = await connectOnce(url, asSas('bk-sas', sas['key']!));
  t.notOk(bySas.refusedCode, 'a device added before the backup authenticates with its SAS token against the restored collector');
  await publishQos1(bySas.client, topics.telemetry('bk-sas'), batch('bk-sas', 1, 1));
  bySas.client.end(true);
  const byPw = await connectOnce(url, { clientId: 'bk-pw', username: 'bk-pw', password: pw['password']! });
  t.notOk(byPw.refusedCode, 'and one with a password');
  byPw.client.end(true);
  const wrongPw = await connectOnce(url, { clientId: 'bk-pw', username: 'bk-pw', password: 'guess' });
  t.equal(wrongPw.refusedCode, 5, 'a wrong password is still refused (CONNACK 5, like every credential refusal)');
  const revoked = await connectOnce(url, asSas('bk-gone', gone['key']!));
  t.equal(revoked.refusedCode, 5, 'the device revoked before the backup is still refused (CONNACK 5)');
  proc.kill('SIGTERM');
  t.equal(await proc.exited, 0);
});
