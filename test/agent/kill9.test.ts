/**
 * The agent process is killed with SIGKILL five times while it streams to a real collector and
 * cloud, and restarted each time. Every reading it ever committed reaches the cloud exactly once
 * after dedupe: the stored seqs are exactly 1..N (N = the seq in the outbox at the end), each boot
 * has its own epoch, and nothing committed is missing.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import { spawnDaemon } from '../helpers/cli.js';
import { startCloud, startCollector, tempDir, waitFor } from '../helpers/stack.js';

const DEVICE = 'kill-9';
/** Each `cloud.identities` poll reads every silver file with DuckDB: a few polls a second, not forty. */
const POLL_MS = 200;

function agentConfig(dir: string, mqttPort: number, simulator: boolean): string {
  const f = join(dir, `agent-${simulator ? 'sim' : 'drain'}.json`);
  const cfg = {
    deviceId: DEVICE,
    stateDir: join(dir, 'agent'),
    uplink: { url: `mqtt://127.0.0.1:${mqttPort}`, backoff: { initialMs: 50, maxMs: 200 }, batchMaxReadings: 200, inflightMax: 8 },
    outbox: { flushIntervalMs: 20 },
    sources: { simulator: { enabled: simulator, intervalMs: 10, readingsPerTick: 5 } },
    admin: { enabled: false },
    twin: { enabled: false },
    // The daemon would load the ONNX model when it finds models/manifest.json: not what this test is about.
    scoring: { enabled: false },
    log: { level: 'warn' },
  };
  writeFileSync(f, JSON.stringify(cfg));
  return f;
}

function committedSeq(dir: string): number {
  const db = new Database(join(dir, 'agent', 'outbox.db'), { readonly: true });
  const row = db.prepare("SELECT v FROM meta WHERE k = 'seq'").get() as { v: number };
  db.close();
  return row.v;
}

t.test('kill -9 five times mid-stream: every committed reading arrives exactly once', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startCloud(join(dir, 'cloud'));
  const collector = await startCollector(join(dir, 'collector'), cloud.url);
  const simCfg = agentConfig(dir, collector.mqttPort, true);

  let stored = 0;
  for (let boot = 1; boot <= 5; boot++) {
    const agent = spawnDaemon(['agent', '--config', simCfg]);
    t.teardown(() => void agent.kill('SIGKILL'));
    const ready = await agent.ready;
    t.equal(ready['epoch'], boot, `boot ${boot} has epoch ${boot}`);
    // Let it stream for a while: new readings reach the cloud, more are in memory and in flight.
    const before = stored;
    await waitFor(async () => (stored = (await cloud.identities(DEVICE)).length) > before + 300, 20_000, `boot ${boot} streaming`, POLL_MS);
    // About time: each boot is killed at a different moment of its stream.
    await new Promise((r) => setTimeout(r, 50 + boot * 37));
    agent.kill('SIGKILL');
    t.equal(await agent.exited, 'SIGKILL', `boot ${boot} killed`);
  }

  // A sixth boot streams on and stops gracefully; a last one without sources drains the outbox.
  const last = spawnDaemon(['agent', '--config', simCfg]);
  t.teardown(() => void last.kill('SIGKILL'));
  await last.ready;
  await waitFor(async () => (await cloud.identities(DEVICE)).length > stored + 300, 20_000, 'boot 6 streaming', POLL_MS);
  last.kill('SIGTERM');
  t.equal(await last.exited, 0, 'SIGTERM exits 0');
  const n = committedSeq(dir);
  const drain = spawnDaemon(['agent', '--config', agentConfig(dir, collector.mqttPort, false)]);
  t.teardown(() => void drain.kill('SIGKILL'));
  await drain.ready;
  await waitFor(async () => (await cloud.identities(DEVICE)).length >= n, 30_000, `all ${n} committed readings in the cloud`, POLL_MS);
  drain.kill('SIGTERM');
  t.equal(await drain.exited, 0);

  const ids = (await cloud.identities(DEVICE)).slice().sort((a, b) => a.seq - b.seq);
  t.equal(ids.length, n, `exactly ${n} readings stored`);
  t.same(
    ids.map((r) => r.seq),
    Array.from({ length: n }, (_, i) => i + 1),
    'seqs 1..N: none missing, none twice',
  );
  t.ok(
    ids.every((r, i) => i === 0 || r.epoch >= ids[i - 1]!.epoch),
    'epochs never go back as seqs go up',
  );
  t.same([...new Set(ids.map((r) => r.epoch))], [1, 2, 3, 4, 5, 6], 'every boot contributed readings under its own epoch');
  const accepted = Number(/edgetwin_broker_accepted_readings_total\{[^}]*\} (\d+)/.exec(await collector.registry.metrics())?.[1] ?? 0);
  t.ok(accepted >= n, `the collector accepted ${accepted} readings for ${n} stored (resends after kills are deduplicated)`);

  await collector.stop();
  await cloud.stop();
});
