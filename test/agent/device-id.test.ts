/**
 * The agent's device id on existing state (agent/outbox/device-id.ts): a changed id with readings
 * waiting refuses to start unless `outbox.onDeviceIdChange` says what to do with them; `discard`
 * drops them (counted), `send-as-old` delivers them under the old id over a connection of its own.
 * And the default id is no longer one every install shares.
 */
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { Agent } from '../../agent/agent.js';
import { agentDefaults, defaultDeviceId, loadAgentConfig } from '../../agent/config.js';
import { ErrorCodes } from '../../common/errors.js';
import { DEVICE_ID_PATTERN } from '../../common/wire/record.js';
import { metric } from '../helpers/collector.js';
import { freePort } from '../helpers/cli.js';
import { CountingSource, TestBroker, silent, tempDir, waitFor } from '../helpers/stack.js';

function config(stateDir: string, deviceId: string, url: string, onDeviceIdChange?: string): ReturnType<typeof loadAgentConfig> {
  return loadAgentConfig(
    undefined,
    {
      deviceId,
      stateDir,
      uplink: { url, backoff: { initialMs: 50, maxMs: 200 }, batchMaxDelayMs: 10 },
      outbox: { flushIntervalMs: 10, ...(onDeviceIdChange ? { onDeviceIdChange } : {}) },
      admin: { enabled: false },
      twin: { enabled: false },
      scoring: { enabled: false },
    },
    {},
  );
}

/** A state dir holding `n` undelivered readings of `deviceId` (its collector was never reachable). */
async function stateWithBacklog(root: string, deviceId: string, n: number): Promise<string> {
  const stateDir = mkdtempSync(join(root, 'agent-'));
  const source = new CountingSource(n, 10, 2);
  const agent = new Agent(config(stateDir, deviceId, `mqtt://127.0.0.1:${await freePort()}`), { log: silent(), sources: [source] });
  await agent.start();
  await waitFor(() => source.done && agent.outbox.depth().rows === n, 10_000, 'the backlog committed');
  await agent.stop(0);
  return stateDir;
}

t.test('a changed deviceId with readings waiting refuses to start and changes nothing', async (t) => {
  const { dir, cleanup } = tempDir('edgetwin-devid-');
  t.teardown(cleanup);
  const state = await stateWithBacklog(dir, 'pump-old', 40);
  const identityBefore = readFileSync(join(state, 'identity.json'), 'utf8');
  t.match(JSON.parse(identityBefore), { deviceId: 'pump-old' }, 'the owner of the outbox is recorded');
  t.throws(() => new Agent(config(state, 'pump-new', 'mqtt://127.0.0.1:1'), { log: silent(), sources: [] }), {
    code: ErrorCodes.DEVICE_ID_CHANGED,
    message: /holds 40 undelivered readings of "pump-old".*onDeviceIdChange.*send-as-old.*discard/,
  });
  t.equal(readFileSync(join(state, 'identity.json'), 'utf8'), identityBefore, 'the refusal recorded nothing');
  // The refused start released its lock: the old id still starts on the state.
  const again = new Agent(config(state, 'pump-old', 'mqtt://127.0.0.1:1'), { log: silent(), sources: [] });
  t.equal(again.outbox.depth().rows, 40, 'the backlog is still there');
  await again.stop(0);
});

t.test('discard: the old backlog is dropped and counted; the new id is recorded', async (t) => {
  const { dir, cleanup } = tempDir('edgetwin-devid-');
  t.teardown(cleanup);
  const state = await stateWithBacklog(dir, 'pump-old', 30);
  const agent = new Agent(config(state, 'pump-new', 'mqtt://127.0.0.1:1', 'discard'), { log: silent(), sources: [] });
  t.equal(agent.outbox.depth().rows, 0, 'the outbox is empty');
  t.equal(await metric(agent.registry, 'edgetwin_agent_dropped_total', { reason: 'device_id_changed' }), 30, 'and the drop is counted');
  await agent.stop(0);
  t.match(JSON.parse(readFileSync(join(state, 'identity.json'), 'utf8')), { deviceId: 'pump-new' });
  const next = new Agent(config(state, 'pump-new', 'mqtt://127.0.0.1:1'), { log: silent(), sources: [] });
  t.pass('the next start needs no decision');
  await next.stop(0);
});

t.test('send-as-old: the backlog goes out as the old id, new readings as the new id, identities kept', async (t) => {
  const { dir, cleanup } = tempDir('edgetwin-devid-');
  t.teardown(cleanup);
  const state = await stateWithBacklog(dir, 'pump-old', 50);
  const broker = new TestBroker();
  await broker.start();
  t.teardown(() => broker.stop());
  const source = new CountingSource(20, 5, 5);
  const agent = new Agent(config(state, 'pump-new', broker.url, 'send-as-old'), { log: silent(), sources: [source] });
  t.equal(agent.outbox.depth().rows, 0, 'the new id starts with an empty outbox');
  await agent.start();
  await waitFor(() => broker.readings('pump-old').length >= 50 && broker.readings('pump-new').length >= 20, 15_000, 'both delivered');
  const old = broker.readings('pump-old');
  t.same(
    old.map((r) => r.seq).sort((a, b) => a - b),
    Array.from({ length: 50 }, (_, i) => i + 1),
    'the old readings keep their seqs',
  );
  t.ok(
    old.every((r) => r.epoch === 1),
    'and their epoch',
  );
  t.ok(
    broker.readings('pump-new').every((r) => r.epoch === 2),
    'the new id continues with the next epoch',
  );
  t.ok(
    broker.connects.some((c) => c.clientId === 'pump-old') && broker.connects.some((c) => c.clientId === 'pump-new'),
    'one connection per id',
  );
  await waitFor(() => !readdirSync(state).some((f) => f.startsWith('outbox.old-')), 5000, 'the old backlog file removed');
  t.notOk(agent.health()['oldBacklogs'], 'health no longer lists an old backlog');
  await agent.stop();
});

t.test('an empty outbox needs no decision; the default id is the host, not a shared constant', async (t) => {
  const { dir, cleanup } = tempDir('edgetwin-devid-');
  t.teardown(cleanup);
  const state = await stateWithBacklog(dir, 'pump-old', 0);
  const agent = new Agent(config(state, 'pump-new', 'mqtt://127.0.0.1:1'), { log: silent(), sources: [] });
  await agent.stop(0);
  t.match(JSON.parse(readFileSync(join(state, 'identity.json'), 'utf8')), { deviceId: 'pump-new' });

  const machineId = join(dir, 'machine-id');
  writeFileSync(machineId, '3d1219c7a1b2c3d4e5f60718293a4b5c\n');
  t.equal(defaultDeviceId('RaspberryPi', machineId), 'raspberrypi-3d1219c7', 'host name plus machine id');
  t.equal(defaultDeviceId('My Host!.local', join(dir, 'none')), 'my-host-.local', 'made a valid id; no machine id, host alone');
  t.equal(defaultDeviceId('...', join(dir, 'none')), 'edgetwin-agent');
  const re = new RegExp(DEVICE_ID_PATTERN);
  t.ok(re.test(agentDefaults.deviceId), `the default on this machine (${agentDefaults.deviceId}) is a valid id`);
  t.not(agentDefaults.deviceId, 'device-1');
});
