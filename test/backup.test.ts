/**
 * Restore drill: a running cloud is backed up while it serves, the backup is restored into a new
 * state directory, and a cloud started there answers the same twin queries. Damaged backups are
 * refused before anything is touched.
 */
import { appendFileSync, existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { backup, readManifest, restore, verifyBackup } from '../common/backup.js';
import { runCli } from './helpers/cli.js';
import { CountingSource, startAgent, startCloud, startCollector, tempDir, waitFor } from './helpers/stack.js';

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
  await waitFor(async () => ((await getJson(`${cloud.url}/v1/twins/drill-1`)) as { readings?: number }).readings === 300, 20_000, 'readings in the cloud');
  await agent.stop();
  await collector.stop();

  const before = await getJson(`${cloud.url}/v1/twins`);
  const one = await getJson(`${cloud.url}/v1/twins/drill-1`);
  const bak = join(dir, 'backup');
  const manifest = await backup(state, bak); // online: the cloud is still running
  t.ok(manifest.files.some((f) => f.kind === 'sqlite'), 'SQLite files go through the online backup API');
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
  t.same(m.files.map((f) => f.path), ['lake/site=a/part-1.parquet'], 'WAL side files are not state');
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
