/**
 * `db.journalMode: delete` (env EDGETWIN_DB_JOURNAL_MODE), for a stateDir on Azure Files/SMB where
 * WAL's shared memory does not work: every SQLite file the cloud opens really runs with a rollback
 * journal (checked from a second connection and by the absence of -wal/-shm files), the cloud
 * serves ingest, twin reads and desired patches in it, and desired state, tokens and audit survive a
 * stop/start on the same stateDir. The same run in the default mode is the control: there the
 * files are WAL, so these checks do detect a cloud that ignores the key.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { EventHubProducerClient } from '@azure/event-hubs';
import Database from 'better-sqlite3';
import t, { type Test } from 'tap';
import { loadCloudConfig } from '../../cloud/config.js';
import { fileJournalMode, SqliteStore } from '../../cloud/store/sqlite-store.js';
import type { Cloud } from '../../cloud/cloud.js';
import { call, envelope, readings, startTestCloud, telemetry } from '../helpers/cloud.js';
import { EventHubsTestServer } from '../helpers/event-hubs-server.js';
import { tempDir, waitFor } from '../helpers/util.js';

const DB_FILES = ['twins.db', 'eventhubs-checkpoints.db'];

/** The file's journal mode as a fresh connection sees it (WAL is a property of the file). */
function journalOf(path: string): string {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return String(db.pragma('journal_mode', { simple: true }));
  } finally {
    db.close();
  }
}

const walFiles = (dir: string): string[] => readdirSync(dir).filter((f) => /-(wal|shm)$/.test(f));

t.test('db.journalMode: default wal, env EDGETWIN_DB_JOURNAL_MODE, a bad value names the key', async (t) => {
  t.equal(loadCloudConfig(undefined, { stateDir: '/tmp/x' }, {}).db.journalMode, 'wal');
  t.equal(loadCloudConfig(undefined, { stateDir: '/tmp/x' }, { EDGETWIN_DB_JOURNAL_MODE: 'delete' }).db.journalMode, 'delete');
  t.throws(() => loadCloudConfig(undefined, { stateDir: '/tmp/x' }, { EDGETWIN_DB_JOURNAL_MODE: 'truncate' }), {
    code: 'EDGETWIN_ERR_CONFIG',
    message: /"db\.journalMode"/,
  });
  t.throws(() => loadCloudConfig(undefined, { stateDir: '/tmp/x', db: { journalMode: 'wal', synchronous: 'off' } }, {}), {
    message: /unknown key "db\.synchronous"/,
  });
});

/** Ingest (HTTP and Event Hubs), a token, a desired patch; returns the admin token. */
async function exercise(t: Test, cloud: Cloud, server: EventHubsTestServer): Promise<string> {
  const ing = await call('POST', `${cloud.url}/v1/ingest`, { body: envelope('jm-1', 'plant-a', [telemetry('jm-dev', 1, readings(20))]) });
  t.equal(ing.status, 200, 'ingest answered');
  const producer = new EventHubProducerClient(server.connectionString);
  await producer.sendBatch([
    { body: Buffer.from(JSON.stringify(telemetry('eh-dev', 1, readings(10)))), properties: { 'edgetwin-site': 'plant-b' } },
  ]);
  await producer.close();
  await waitFor(
    async () => (await call('GET', `${cloud.url}/v1/twins/eh-dev`)).status === 200,
    30_000,
    'the Event Hubs reading (and its checkpoint)',
  );
  const admin = (await cloud.tokens.create({ role: 'admin', name: 'ops', createdBy: 'test' })).token;
  const twin = await call('GET', `${cloud.url}/v1/twins/jm-dev`, { token: admin });
  t.equal(twin.body.readings, 20, 'twin read');
  const patch = await call('PATCH', `${cloud.url}/v1/twins/jm-dev/desired`, {
    token: admin,
    body: { samplingIntervalMs: 750 },
    headers: { 'if-match': twin.headers['etag'] as string },
  });
  t.equal(patch.status, 200, 'desired patched');
  await cloud.flush();
  return admin;
}

async function run(t: Test, journalMode: 'wal' | 'delete'): Promise<void> {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const state = join(dir, 'cloud');
  const server = await new EventHubsTestServer({ partitionCount: 2 }).start();
  t.teardown(() => server.close());
  const cfg = {
    db: { journalMode },
    eventHubs: {
      enabled: true,
      connectionString: server.connectionString,
      maxWaitTimeMs: 200,
      loadBalancingStrategy: 'greedy',
      updateIntervalMs: 500,
    },
  };
  let cloud = await startTestCloud(state, cfg);
  t.teardown(() => cloud.stop());
  const admin = await exercise(t, cloud, server);

  if (journalMode === 'wal') {
    for (const f of DB_FILES) t.equal(journalOf(join(state, f)), 'wal', `control: ${f} is WAL by default`);
    t.ok(walFiles(state).length > 0, 'control: -wal/-shm files exist while it runs');
    return;
  }
  const own = (cloud.store as SqliteStore).db;
  t.equal(own.pragma('journal_mode', { simple: true }), 'delete', "the cloud's own connection");
  t.equal(own.pragma('synchronous', { simple: true }), 2, 'synchronous=FULL');
  for (const f of DB_FILES) t.equal(journalOf(join(state, f)), 'delete', `${f} runs with a rollback journal`);
  t.same(walFiles(state), [], 'no -wal/-shm files while it runs');

  await cloud.stop();
  cloud = await startTestCloud(state, cfg);
  const twin = await call('GET', `${cloud.url}/v1/twins/jm-dev`, { token: admin });
  t.equal(twin.status, 200, 'the token still works after the restart');
  t.match(twin.body, { readings: 20, desired: { samplingIntervalMs: 750, $version: 1 } }, 'desired state survived');
  t.ok(
    (await cloud.tokens.list()).some((i) => i.name === 'ops' && i.role === 'admin'),
    'the token is listed',
  );
  const audit = await call('GET', `${cloud.url}/v1/twins/jm-dev/audit`, { token: admin });
  t.same(
    audit.body.items.map((e: { action: string }) => e.action),
    ['twin.desired.patch'],
    'audit survived',
  );
  t.equal(
    (await call('GET', `${cloud.url}/v1/twins/eh-dev`, { token: admin })).body.readings,
    10,
    'Event Hubs readings not consumed twice',
  );
  for (const f of DB_FILES) t.equal(journalOf(join(state, f)), 'delete', `${f} still in delete mode after the restart`);
  t.same(walFiles(state), [], 'still no -wal/-shm files');
}

t.test('journalMode delete: every DB in rollback mode, serves, and state survives a restart', (t) => run(t, 'delete'));
t.test('control: the default mode leaves the same files in WAL', (t) => run(t, 'wal'));

t.test('an existing WAL stateDir is converted; tools without a mode keep the file in delete', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const state = join(dir, 'cloud');
  let cloud = await startTestCloud(state);
  const admin = (await cloud.tokens.create({ role: 'admin', createdBy: 'test' })).token;
  await cloud.stop();
  t.equal(fileJournalMode(join(state, 'twins.db')), 'wal', 'the header says WAL');

  cloud = await startTestCloud(state, { db: { journalMode: 'delete' } });
  t.equal(journalOf(join(state, 'twins.db')), 'delete', 'converted at start');
  t.equal(fileJournalMode(join(state, 'twins.db')), 'delete', 'the header says rollback');
  // `edgetwin cloud tokens …` opens the file beside the running daemon without its config.
  const tool = await SqliteStore.open({ stateDir: state });
  t.equal(tool.db.pragma('journal_mode', { simple: true }), 'delete', 'a tool without a mode does not flip it back to WAL');
  await tool.close();
  t.equal((await call('GET', `${cloud.url}/v1/twins`, { token: admin })).status, 200, 'the token made in WAL mode still works');
  await cloud.stop();
  t.same(walFiles(state), []);
});

t.test('a file another process holds in WAL is refused, never quarantined as corrupt', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const first = await SqliteStore.open({ stateDir: dir, journalMode: 'wal' });
  first.db.prepare("INSERT INTO meta (k, v) VALUES ('kept', 7)").run();
  // A reader inside a transaction holds the WAL open: leaving WAL needs the file to itself.
  first.db.prepare('BEGIN').run();
  first.db.prepare('SELECT count(*) FROM twins').get();
  await t.rejects(SqliteStore.open({ stateDir: dir, journalMode: 'delete' }), 'the switch is refused');
  first.db.prepare('COMMIT').run();
  t.same(
    readdirSync(dir).filter((f) => f.includes('.corrupt-')),
    [],
    'nothing moved aside',
  );
  t.ok(existsSync(join(dir, 'twins.db')));
  const kept = "SELECT v FROM meta WHERE k = 'kept'";
  t.same(await first.get(kept), { v: 7 }, 'the data is untouched');
  await first.close();
  const second = await SqliteStore.open({ stateDir: dir, journalMode: 'delete' });
  t.same(await second.get(kept), { v: 7 }, 'once alone, the switch succeeds with the data');
  await second.close();
});
