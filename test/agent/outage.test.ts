/**
 * The collector (broker) is down while the agent keeps producing; when it returns, the backlog
 * drains alongside live readings and the cloud ends with every reading exactly once.
 *
 * The outage lasts EDGETWIN_OUTAGE_S seconds: 3 in `npm test`, 60 with
 * `npm run test:agent-outage-60s` (the full-length proof).
 */
import t from 'tap';
import { CountingSource, startAgent, startCloud, startCollector, tempDir, waitFor } from '../helpers/stack.js';

const OUTAGE_S = Number(process.env['EDGETWIN_OUTAGE_S'] ?? 3);
const DEVICE = 'outage-1';

t.test(`collector down ${OUTAGE_S} s while producing: backlog drains, nothing lost`, { timeout: (OUTAGE_S + 120) * 1000 }, async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startCloud(`${dir}/cloud`);
  let collector = await startCollector(`${dir}/collector`, cloud.url);
  const port = collector.mqttPort;
  // About 2000 readings a second, for as long as the test runs.
  const source = new CountingSource(Number.MAX_SAFE_INTEGER, 10, 5);
  const agent = await startAgent(`${dir}/agent`, DEVICE, port, [source], {
    twin: { enabled: false },
    uplink: { backoff: { initialMs: 100, maxMs: 1000 } },
  });

  await waitFor(async () => (await cloud.identities(DEVICE)).length > 500, 20_000, 'traffic flowing');
  await collector.stop();
  const atOutage = source.emitted;
  await new Promise((r) => setTimeout(r, OUTAGE_S * 1000)); // About time: an outage of OUTAGE_S seconds
  t.notOk(agent.uplink.connected, 'the agent saw the collector go');
  // Counted, not timed: on a loaded machine the source runs slower, so the test waits for the
  // backlog it needs (a second's worth per outage second) rather than asserting a rate.
  await waitFor(() => agent.outbox.depth().rows > OUTAGE_S * 1000, 60_000, 'a backlog in the outbox');
  t.notOk(agent.uplink.connected, 'still away');
  t.ok(source.emitted > atOutage, `the agent kept producing: ${source.emitted - atOutage} readings during the outage`);

  collector = await startCollector(`${dir}/collector`, cloud.url, port);
  await waitFor(() => agent.uplink.connected, 10_000, 'reconnected');
  // Live production goes on during the drain, then stops so the totals can be compared.
  await new Promise((r) => setTimeout(r, 1000)); // About time: a second of live production during the drain
  source.stop();
  await agent.flush();
  const total = agent.identity.nextSeq - 1;
  t.equal(total, source.emitted, 'every emitted reading was committed');
  await waitFor(() => agent.outbox.depth().rows === 0, 60_000 + OUTAGE_S * 1000, 'backlog drained');
  await waitFor(async () => (await cloud.identities(DEVICE)).length >= total, 60_000, 'everything in the cloud');
  const seqs = (await cloud.identities(DEVICE)).map((r) => r.seq).sort((a, b) => a - b);
  t.equal(seqs.length, total, `${total} readings stored, none twice`);
  t.same(
    seqs,
    Array.from({ length: total }, (_, i) => i + 1),
    'the complete sequence',
  );
  const metrics = await agent.registry.metrics();
  t.match(metrics, /edgetwin_uplink_published_batches_total\{stream="live"[^}]*\} [1-9]/, 'live readings were sent during the drain');
  t.match(metrics, /edgetwin_uplink_published_batches_total\{stream="backlog"[^}]*\} [1-9]/);

  await agent.stop();
  await collector.stop();
  await cloud.stop();
});
