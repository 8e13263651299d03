/**
 * The collector goes away while agents keep producing, then comes back on the same port and
 * state: agents buffer in their outboxes, the spool resumes, and the cloud ends with every
 * reading exactly once.
 */
import t from 'tap';
import { CountingSource, startAgent, startCloud, startCollector, tempDir, waitFor } from '../helpers/stack.js';

const PER_AGENT = 4000;

t.test('collector stop/start loses and duplicates nothing', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startCloud(`${dir}/cloud`);
  let collector = await startCollector(`${dir}/collector`, cloud.url);
  const port = collector.mqttPort;
  const sources = [new CountingSource(PER_AGENT, 20, 5), new CountingSource(PER_AGENT, 20, 5)];
  const agents = await Promise.all(['r-1', 'r-2'].map((id, i) => startAgent(`${dir}/${id}`, id, port, [sources[i]!])));

  await waitFor(async () => (await cloud.identities('r-1')).length > 200, 10_000, 'traffic flowing');
  await collector.stop();
  const producedWhileDown = sources.map((s) => s.emitted);
  await waitFor(() => agents.every((a) => !a.uplink.connected), 5000, 'agents see the collector gone');
  await waitFor(
    () => agents.some((a) => a.outbox.depth().rows > 0) && sources.every((s, i) => s.emitted > producedWhileDown[i]!),
    10_000,
    'agents buffering new readings while the collector is down',
  );
  t.ok(
    agents.some((a) => a.outbox.depth().rows > 0),
    'agents buffer while the collector is down',
  );
  t.ok(
    sources.every((s, i) => s.emitted > producedWhileDown[i]!),
    'agents keep producing',
  );

  collector = await startCollector(`${dir}/collector`, cloud.url, port);
  await waitFor(() => sources.every((s) => s.done), 30_000, 'sources finished');
  await waitFor(
    async () => (await Promise.all(['r-1', 'r-2'].map((d) => cloud.identities(d)))).every((ids) => ids.length >= PER_AGENT),
    30_000,
    'everything in the cloud',
  );
  // About time: a late duplicate would land within this window (checked by the exact counts below).
  await new Promise((r) => setTimeout(r, 300));

  for (const id of ['r-1', 'r-2']) {
    const seqs = (await cloud.identities(id)).map((r) => r.seq);
    t.equal(seqs.length, PER_AGENT, `${id}: no loss, no duplicate`);
    t.same(
      seqs,
      Array.from({ length: PER_AGENT }, (_, k) => k + 1),
      `${id}: the complete sequence`,
    );
  }
  await waitFor(() => collector.spool.depth().rows === 0, 5000, 'spool drained');
  for (const a of agents) await a.stop();
  await collector.stop();
  await cloud.stop();
});
