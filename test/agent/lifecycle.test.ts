/**
 * The agent as a process: a corrupt outbox is quarantined and the agent runs on a fresh one (and
 * again on the next start: no crash loop); SIGTERM commits what is in memory and closes the
 * database cleanly; a bad config stops it at start naming the key; /healthz and /metrics answer.
 */
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import { request } from 'undici';
import { runCli, spawnDaemon } from '../helpers/cli.js';
import { TestBroker, tempDir, waitFor } from '../helpers/stack.js';

function writeConfig(dir: string, name: string, cfg: object): string {
  const f = join(dir, name);
  writeFileSync(f, JSON.stringify(cfg));
  return f;
}

t.test('garbage over the outbox: quarantined with a clear log line, fresh outbox, no crash loop', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const broker = new TestBroker();
  await broker.start();
  t.teardown(() => broker.stop());
  const stateDir = join(dir, 'agent');
  const cfg = writeConfig(dir, 'agent.json', {
    deviceId: 'corrupt-1',
    stateDir,
    uplink: { url: broker.url, backoff: { initialMs: 50, maxMs: 200 }, batchMaxDelayMs: 10 },
    sources: { simulator: { intervalMs: 20 } },
    admin: { enabled: false },
    twin: { enabled: false },
    scoring: { enabled: false },
  });
  const db = join(stateDir, 'outbox.db');

  for (let round = 1; round <= 2; round++) {
    // Round 1: a file that never was a database. Round 2: garbage over a live outbox and its WAL.
    mkdirSync(stateDir, { recursive: true });
    writeFileSync(db, Buffer.alloc(16384, round === 1 ? 0x5a : 0xa5));
    const before = broker.readings('corrupt-1').length;
    const agent = spawnDaemon(['agent', '--config', cfg]);
    t.teardown(() => void agent.kill('SIGKILL'));
    const ready = await agent.ready;
    // The epoch survives the quarantine (identity.json beside the outbox): reusing epoch 1 would
    // give new readings identities the cloud already holds, and it would drop them as duplicates.
    t.equal(ready['epoch'], round, `round ${round}: the epoch keeps counting up across a quarantine`);
    await waitFor(() => broker.readings('corrupt-1').length > before + 5, 10_000, `round ${round}: readings flowing`);
    const line = agent
      .output()
      .split('\n')
      .find((l) => l.includes('EDGETWIN_ERR_STORE_CORRUPT'));
    t.ok(line, `round ${round}: the log says what happened`);
    t.match(JSON.parse(line!), { level: 50, code: 'EDGETWIN_ERR_STORE_CORRUPT', path: db, msg: /moved aside/ });
    const moved = readdirSync(stateDir).filter((f) => f.startsWith('outbox.db.corrupt-') && !f.endsWith('-wal') && !f.endsWith('-shm'));
    t.equal(moved.length, round, `round ${round}: the bad file is kept for inspection`);
    if (round === 1) agent.kill('SIGTERM');
    else agent.kill('SIGKILL');
    await agent.exited;
  }
  // A third start on the (now healthy) file is uneventful.
  const agent = spawnDaemon(['agent', '--config', cfg]);
  t.teardown(() => void agent.kill('SIGKILL'));
  const ready = await agent.ready;
  t.ok((ready['epoch'] as number) >= 2, 'the fresh outbox is kept and used');
  t.notMatch(agent.output(), /STORE_CORRUPT/, 'no quarantine on a healthy file');
  agent.kill('SIGTERM');
  t.equal(await agent.exited, 0);
});

t.test('SIGTERM commits the readings in memory and closes the database cleanly', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const stateDir = join(dir, 'agent');
  const cfg = writeConfig(dir, 'agent.json', {
    deviceId: 'graceful',
    stateDir,
    // Nothing listens on port 1: everything stays in the outbox.
    uplink: { url: 'mqtt://127.0.0.1:1', backoff: { initialMs: 5000, maxMs: 5000 } },
    // Readings would wait a minute in memory before their commit: only the shutdown commits them.
    outbox: { flushIntervalMs: 60_000, flushMaxReadings: 100_000 },
    sources: { simulator: { enabled: false }, jsonLines: { enabled: true } },
    twin: { enabled: false },
    scoring: { enabled: false },
  });
  const agent = spawnDaemon(['agent', '--config', cfg], {}, { stdin: 'pipe' });
  t.teardown(() => void agent.kill('SIGKILL'));
  const ready = await agent.ready;
  const lines = Array.from({ length: 500 }, (_, i) =>
    JSON.stringify({ ts: 1_700_000_000_000 + i, metric: 'level', value: i, unit: 'm' }),
  ).join('\n');
  agent.stdin!.write(`${lines}\n`);
  const metricsUrl = `http://127.0.0.1:${String(ready['adminPort'])}/metrics`;
  await waitFor(
    async () => /edgetwin_agent_pending_readings\{[^}]*\} 500\b/.test(await (await request(metricsUrl)).body.text()),
    10_000,
    '500 readings in memory',
  );
  agent.kill('SIGTERM');
  t.equal(await agent.exited, 0, 'exit code 0');
  t.notOk(existsSync(join(stateDir, 'outbox.db-wal')), 'the WAL was checkpointed and removed at close');
  const db = new Database(join(stateDir, 'outbox.db'), { readonly: true });
  t.equal(db.pragma('integrity_check', { simple: true }), 'ok');
  t.equal((db.prepare("SELECT v FROM meta WHERE k = 'seq'").get() as { v: number }).v, 500, 'all 500 got their seq');
  const values = (db.prepare('SELECT body FROM queue ORDER BY id').all() as { body: string }[]).map(
    (r) => (JSON.parse(r.body) as { value: number }).value,
  );
  t.same(
    values,
    Array.from({ length: 500 }, (_, i) => i),
    'and are in the outbox, in order',
  );
  db.close();
});

t.test('a bad agent config stops the start naming the key', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const bad = writeConfig(dir, 'bad.json', {
    sources: { modbusTcp: { enabled: true, registers: [{ metric: 'p', unit: 'bar', address: 1, type: 'float64' }] } },
  });
  const r = runCli(['agent', '--config', bad]);
  t.equal(r.status, 1);
  t.match(
    r.stderr,
    /agent config: key "sources\.modbusTcp\.registers\.0\.type" must be equal to one of the allowed values \[EDGETWIN_ERR_CONFIG\]/,
  );
  const noFile = writeConfig(dir, 'nofile.json', { sources: { csvReplay: { enabled: true } } });
  t.match(runCli(['agent', '--config', noFile]).stderr, /missing required key "sources\.csvReplay\.file"/);
  const tooSmall = writeConfig(dir, 'small.json', { outbox: { maxBytes: 1000 } });
  t.match(runCli(['agent', '--config', tooSmall]).stderr, /key "outbox\.maxBytes" must be >= 262144/);
});
