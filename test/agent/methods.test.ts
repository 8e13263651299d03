/**
 * The agent's built-in direct methods, called through a real collector (broker, ACL, $rid
 * routing) on the agent's own MQTT connection: ping, flush, restartSource, getDiagnostics,
 * setLogLevel, and the 404 that lists the known methods.
 */
import t from 'tap';
import { ErrorCodes } from '../../common/errors.js';
import { CountingSource, startAgent, startCollector, tempDir, waitFor } from '../helpers/stack.js';

t.test('built-in methods answer through the collector', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const collector = await startCollector(`${dir}/c`, 'http://127.0.0.1:9', 0, { sinks: { http: { enabled: false } } });
  t.teardown(() => collector.stop());
  const source = new CountingSource(1_000_000, 1, 20);
  // Batches wait a minute to fill up: only `flush` can make them go now.
  const agent = await startAgent(`${dir}/a`, 'dev-1', collector.mqttPort, [source], {
    uplink: { batchMaxDelayMs: 60_000, batchMaxReadings: 100_000 },
    outbox: { flushIntervalMs: 10 },
  });
  t.teardown(() => agent.stop());
  const call = (method: string, payload: unknown = null) => collector.c2d!.methods.invoke('dev-1', method, payload, 10_000, 5000);

  const ping = await call('ping');
  t.equal(ping.status, 200);
  t.match(ping.payload, { pong: true, deviceId: 'dev-1', epoch: agent.identity.epoch });

  const unknown = await call('selfDestruct');
  t.equal(unknown.status, 404, 'an unknown method answers 404');
  t.match(unknown.payload, {
    errorCode: ErrorCodes.NOT_FOUND,
    methods: ['flush', 'getDiagnostics', 'ping', 'restartSource', 'setLogLevel'],
  });

  await waitFor(() => agent.outbox.depth().rows > 5, 5000, 'readings waiting in the outbox');
  const spooledBefore = collector.spool.depth().rows;
  const flushed = await call('flush', { waitMs: 5000 });
  t.equal(flushed.status, 200);
  t.match(flushed.payload, { drained: true, connected: true });
  t.ok(collector.spool.depth().rows > spooledBefore, 'the lingering readings reached the collector at once');

  const diag = await call('getDiagnostics');
  t.equal(diag.status, 200);
  t.match(diag.payload, {
    deviceId: 'dev-1',
    identity: { epoch: agent.identity.epoch },
    outbox: { rows: Number },
    sources: { counting: { state: 'running' } },
    uplink: { connected: true, url: `mqtt://127.0.0.1:${collector.mqttPort}` },
    model: null,
  });

  // (fatal rather than debug: the test's logger must stay quiet)
  t.same((await call('setLogLevel', { level: 'fatal' })).payload, { level: 'fatal', previous: 'silent' });
  t.equal(agent.log.level, 'fatal', 'the level changed');
  const bad = await call('setLogLevel', { level: 'loud' });
  t.equal(bad.status, 400, 'a bad level is refused with 400');
  t.match(bad.payload, { errorCode: ErrorCodes.BAD_REQUEST });

  const before = source.emitted;
  const restarted = await call('restartSource', { name: 'counting' });
  t.equal(restarted.status, 200);
  t.match(restarted.payload, { name: 'counting', status: { state: 'running' } });
  await waitFor(() => source.emitted > before, 5000, 'the source emits again after its restart');
  const missing = await call('restartSource', { name: 'nope' });
  t.equal(missing.status, 404, 'an unknown source: 404');
  t.match(missing.payload, { errorCode: ErrorCodes.NOT_FOUND });
  t.equal((await call('restartSource', {})).status, 400, 'no name: 400');
});
