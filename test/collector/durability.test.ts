/**
 * Nothing acknowledged is ever lost:
 * - the cloud goes down while agents publish: the spool grows, drains after, and the cloud ends
 *   with every reading exactly once (EDGETWIN_OUTAGE_S sets the outage; 3 s here, 60 s in
 *   `npm run test:collector-outage`);
 * - a full spool (whenFull: block) holds PUBACKs back instead of dropping anything;
 * - kill -9 of the collector process mid-stream loses no acknowledged message;
 * - a corrupt spool file is moved aside and the collector starts with a fresh one.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { MqttClient } from 'mqtt';
import { topics } from '../../common/wire/record.js';
import { freePort, spawnDaemon } from '../helpers/cli.js';
import { batch, connectOnce, publishQos1, startRegistryCollector, SwitchSink } from '../helpers/collector.js';
import { CountingSource, startAgent, startCloud, startCollector, tempDir, waitFor } from '../helpers/stack.js';

const OUTAGE_S = Number(process.env['EDGETWIN_OUTAGE_S'] ?? 3);

t.test(`cloud down ${OUTAGE_S} s with agents publishing: spool grows, drains, nothing lost or duplicated`, async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  let cloud = await startCloud(`${dir}/cloud`);
  const cloudPort = cloud.port;
  const collector = await startCollector(`${dir}/collector`, cloud.url);
  // Both agents produce ≈ 300 readings/s each, for about as long as the outage lasts and a bit.
  const perAgent = (OUTAGE_S + 3) * 300;
  const sources = [new CountingSource(perAgent, 3, 10), new CountingSource(perAgent, 3, 10)];
  const agents = await Promise.all(['out-1', 'out-2'].map((id, i) => startAgent(`${dir}/${id}`, id, collector.mqttPort, [sources[i]!])));
  await waitFor(async () => (await cloud.identities('out-1')).length > 100, 10_000, 'traffic reaching the cloud');

  await cloud.stop();
  const spoolAtStart = collector.spool.depth().rows;
  await new Promise((r) => setTimeout(r, OUTAGE_S * 1000)); // about time: an outage of OUTAGE_S seconds
  const spoolAtEnd = collector.spool.depth().rows;
  t.ok(
    spoolAtEnd > spoolAtStart + 10,
    `the spool grew during the outage (${spoolAtStart} → ${spoolAtEnd} rows, ${sources[0]!.emitted} readings produced per agent so far)`,
  );
  t.ok(
    agents.every((a) => a.uplink.connected),
    'agents stayed connected: the collector kept acknowledging',
  );
  t.equal(collector.health().ok, false, '/healthz reports the failing sink');

  cloud = await startCloud(`${dir}/cloud`, { http: { port: cloudPort } });
  await waitFor(() => sources.every((s) => s.done), 60_000 + 2 * OUTAGE_S * 1000, 'sources finished');
  await waitFor(
    async () => (await Promise.all(['out-1', 'out-2'].map((d) => cloud.identities(d)))).every((ids) => ids.length >= perAgent),
    60_000,
    'backlog drained to the cloud',
  );
  await waitFor(() => collector.spool.depth().rows === 0, 10_000, 'spool empty again');
  for (const id of ['out-1', 'out-2']) {
    const seqs = (await cloud.identities(id)).map((r) => r.seq);
    t.same(
      seqs,
      Array.from({ length: perAgent }, (_, k) => k + 1),
      `${id}: all ${perAgent} readings, once each, none missing`,
    );
  }
  t.equal(collector.health().ok, true, 'healthy again');
  for (const a of agents) await a.stop();
  await collector.stop();
  await cloud.stop();
});

t.test('a full spool holds PUBACKs (back-pressure) and drops nothing', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const sink = new SwitchSink();
  const c = await startRegistryCollector(dir, { auth: { mode: 'open' }, spool: { maxBytes: 65536, whenFull: 'block' } }, { sinks: [sink] });
  const { client } = await connectOnce(`mqtt://127.0.0.1:${c.mqttPort}`, { clientId: 'bp-1' });
  const payloads = Array.from({ length: 400 }, (_, i) => batch('bp-1', 1, i + 1, 2));
  let acked = 0;
  const all = Promise.all(payloads.map((p) => publishQos1(client, topics.telemetry('bp-1'), p).then(() => acked++)));
  // Wait until acknowledgements stop while publishes are still outstanding.
  let last = -1;
  await waitFor(
    async () => {
      const before = acked;
      // About time: acknowledgements count as stopped when none came for 300 ms.
      await new Promise((r) => setTimeout(r, 300));
      last = acked;
      return before > 0 && before === acked;
    },
    10_000,
    'PUBACKs held',
  );
  t.ok(last < payloads.length, `PUBACKs stopped at ${last} of ${payloads.length} while the spool is full`);
  t.ok(c.spool.depth().bytes <= 65536, `the spool stays within spool.maxBytes (${c.spool.depth().bytes} bytes)`);
  t.equal(c.spool.depth().rows, last, 'exactly the acknowledged messages are in the spool');
  // About time: no PUBACK for another 300 ms while nothing drains (a check that nothing happens).
  await new Promise((r) => setTimeout(r, 300));
  t.equal(acked, last, 'still no PUBACK while nothing drains');
  t.ok(client.connected, 'the device stays connected, it is only slowed down');
  sink.up = true;
  await all;
  t.equal(acked, payloads.length, 'every publish acknowledged once the sink drained the spool');
  await waitFor(() => sink.received.length === payloads.length, 10_000, 'all delivered');
  t.same(sink.received, payloads, 'nothing dropped, order kept');
  client.end(true);
  await c.stop();
});

async function pumpUntilKilled(client: MqttClient, acked: string[], stopAfter: () => boolean): Promise<void> {
  for (let i = 1; !stopAfter(); i++) {
    const p = batch('crash-1', 1, i, 3);
    // Several in flight at once, like a real device: PUBACKs come back per group commit.
    const inflight = [p, batch('crash-1', 2, i, 3)].map((x) =>
      publishQos1(client, topics.telemetry('crash-1'), x).then(() => acked.push(x)),
    );
    await Promise.all(inflight).catch(() => undefined);
  }
}

t.test('kill -9 of the collector mid-stream loses no acknowledged message', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const port = await freePort();
  const out = join(dir, 'out');
  const cfgFile = join(dir, 'collector.json');
  writeFileSync(
    cfgFile,
    JSON.stringify({
      stateDir: join(dir, 'state'),
      mqtt: { port },
      admin: { enabled: false },
      runner: { flushIntervalMs: 5 },
      sinks: { http: { enabled: false }, file: { enabled: true, dir: out } },
    }),
  );
  let proc = spawnDaemon(['collector', '--config', cfgFile], { EDGETWIN_LOG_LEVEL: 'warn' });
  t.teardown(() => void proc.kill('SIGKILL'));
  await proc.ready;
  const { client } = await connectOnce(`mqtt://127.0.0.1:${port}`, { clientId: 'crash-1' });
  const acked: string[] = [];
  let killed = false;
  const pump = pumpUntilKilled(client, acked, () => killed || !client.connected);
  await waitFor(() => acked.length >= 300, 20_000, 'traffic flowing');
  proc.kill('SIGKILL');
  killed = true;
  await proc.exited;
  await pump;
  const ackedBeforeKill = [...acked];
  t.ok(ackedBeforeKill.length >= 300, `${ackedBeforeKill.length} messages acknowledged before kill -9`);
  client.end(true);

  proc = spawnDaemon(['collector', '--config', cfgFile], { EDGETWIN_LOG_LEVEL: 'warn' });
  await proc.ready;
  const lines = (): Set<string> =>
    new Set(
      readdirSync(out)
        .filter((n) => n.includes('.jsonl'))
        .flatMap((n) => readFileSync(join(out, n), 'utf8').split('\n')),
    );
  // The restarted collector drains its spool into the file sink; the open file is flushed at each batch.
  await waitFor(() => ackedBeforeKill.every((p) => lines().has(p)), 20_000, 'every acknowledged message delivered after the restart');
  t.pass('every acknowledged message survived kill -9 and reached the sink');
  proc.kill('SIGTERM');
  t.equal(await proc.exited, 0, 'graceful stop after the restart');
  t.ok(
    readdirSync(out).every((n) => !n.endsWith('.part')),
    'the file sink closed its file on SIGTERM',
  );
});

t.test('a corrupt spool is quarantined and the collector starts fresh', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const state = join(dir, 'state');
  const cfgFile = join(dir, 'collector.json');
  writeFileSync(
    cfgFile,
    JSON.stringify({ stateDir: state, mqtt: { port: 0 }, admin: { enabled: false }, sinks: { http: { enabled: false } } }),
  );
  // First run creates the spool; then the file is overwritten with garbage.
  let proc = spawnDaemon(['collector', '--config', cfgFile], { EDGETWIN_LOG_LEVEL: 'warn' });
  await proc.ready;
  proc.kill('SIGTERM');
  await proc.exited;
  writeFileSync(join(state, 'spool.db'), Buffer.alloc(8192, 0x5a));
  proc = spawnDaemon(['collector', '--config', cfgFile], { EDGETWIN_LOG_LEVEL: 'warn' });
  t.teardown(() => void proc.kill('SIGKILL'));
  const ready = await proc.ready;
  t.ok(
    readdirSync(state).some((n) => /^spool\.db\.corrupt-/.test(n)),
    'the bad file was moved aside',
  );
  t.match(proc.output(), /EDGETWIN_ERR_STORE_CORRUPT/, 'and the move logged with its code');
  const { client } = await connectOnce(`mqtt://127.0.0.1:${String(ready['mqttPort'])}`, { clientId: 'fresh-1' });
  await publishQos1(client, topics.telemetry('fresh-1'), batch('fresh-1', 1, 1));
  t.pass('the collector accepts data on the fresh spool');
  client.end(true);
  proc.kill('SIGTERM');
  t.equal(await proc.exited, 0);
});
