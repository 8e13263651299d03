/**
 * Direct methods end to end: HTTP into the cloud, down the site's push channel, through the
 * collector's broker to real agents (and a raw MQTT device), and back. 100 concurrent calls to 10
 * agents; roles, site scope and the audit trail; not online, connect timeout, a device that drops
 * mid-call; and a collector killed with SIGKILL mid-call answers 502, never a hang.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ErrorCodes } from '../../common/errors.js';
import { C2dDevice } from '../helpers/c2d-device.js';
import { call } from '../helpers/cloud.js';
import { freePort, runCliAsync, spawnDaemonCompiled } from '../helpers/cli.js';
import { startAgent, startCloud, startCollector, tempDir, waitFor } from '../helpers/stack.js';
import type { Agent } from '../../agent/agent.js';

/** The device is known to the cloud once its first batch landed (its twin exists). */
async function known(cloudUrl: string, id: string): Promise<void> {
  await waitFor(async () => (await call('GET', `${cloudUrl}/v1/twins/${id}`)).status === 200, 20_000, `twin ${id}`);
}

t.test('100 concurrent calls to 10 agents, all answered; errors keep their codes; audited', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startCloud(`${dir}/cloud`);
  t.teardown(() => cloud.stop());
  const collector = await startCollector(`${dir}/collector`, cloud.url, 0, { siteId: 'site-a' });
  t.teardown(() => collector.stop());
  const agents: Agent[] = await Promise.all(
    Array.from({ length: 10 }, (_, i) =>
      startAgent(`${dir}/a${i}`, `dev-${i}`, collector.mqttPort, undefined, {
        sources: { simulator: { intervalMs: 60_000 } },
        scoring: { enabled: false },
      }),
    ),
  );
  t.teardown(() => Promise.all(agents.map((a) => a.stop())));
  agents.forEach((a, i) =>
    // A method of the test's own: answers after a moment, with who and what it got.
    a.methods.register('work', async (p) => {
      // About time: the method's own work takes a moment (the answer must wait for it).
      await new Promise((r) => setTimeout(r, 20));
      return { device: `dev-${i}`, got: p };
    }),
  );
  await Promise.all(agents.map((_, i) => known(cloud.url, `dev-${i}`)));
  await waitFor(() => collector.c2d!.health().channel === 'open', 10_000, 'the channel');

  const results = await Promise.all(
    Array.from({ length: 100 }, (_, n) =>
      call('POST', `${cloud.url}/v1/twins/dev-${n % 10}/methods/work`, {
        body: { payload: { n }, responseTimeoutS: 30, connectTimeoutS: 5 },
      }),
    ),
  );
  t.equal(results.filter((r) => r.status === 200).length, 100, 'all 100 answered 200');
  t.ok(
    results.every((r, n) => r.body.status === 200 && r.body.payload.device === `dev-${n % 10}` && r.body.payload.got.n === n),
    'each by the device it was for, with its own payload',
  );

  const ping = await call('POST', `${cloud.url}/v1/twins/dev-3/methods/ping`, { body: {} });
  t.equal(ping.status, 200, 'defaults when the body has no timeouts');
  t.match(ping.body, { status: 200, payload: { pong: true, deviceId: 'dev-3' } });
  const unknownMethod = await call('POST', `${cloud.url}/v1/twins/dev-3/methods/launch`, { body: { payload: null } });
  t.equal(unknownMethod.status, 200, "a method the agent does not know is the device's 404, carried in a 200");
  t.match(unknownMethod.body, {
    status: 404,
    payload: { errorCode: ErrorCodes.NOT_FOUND, methods: ['flush', 'getDiagnostics', 'ping', 'restartSource', 'setLogLevel', 'work'] },
  });

  const ghost = await call('POST', `${cloud.url}/v1/twins/ghost/methods/ping`, { body: {} });
  t.equal(ghost.status, 404, 'an unknown device: 404');
  t.equal(ghost.body.code, ErrorCodes.NOT_FOUND);
  await agents[9]!.stop();
  const offline = await call('POST', `${cloud.url}/v1/twins/dev-9/methods/ping`, { body: {} });
  t.equal(offline.status, 404, 'a known device that is not connected: 404');
  t.equal(offline.body.code, ErrorCodes.DEVICE_NOT_ONLINE);
  const waited = call('POST', `${cloud.url}/v1/twins/dev-9/methods/ping`, { body: { connectTimeoutS: 20 } });
  agents[9] = await startAgent(`${dir}/a9`, 'dev-9', collector.mqttPort, undefined, {
    sources: { simulator: { intervalMs: 60_000 } },
    scoring: { enabled: false },
  });
  t.match((await waited).body, { status: 200, payload: { pong: true } }, 'with connectTimeoutS the call waits for the device to come back');

  const big = await call('POST', `${cloud.url}/v1/twins/dev-1/methods/ping`, { body: { payload: 'x'.repeat(130 * 1024) } });
  t.equal(big.status, 413, 'a payload over 128 KiB: 413');
  const badName = await call('POST', `${cloud.url}/v1/twins/dev-1/methods/a%2Fb`, { body: {} });
  t.equal(badName.status, 400, 'a method name that is not a topic level: 400');
  const badTimeout = await call('POST', `${cloud.url}/v1/twins/dev-1/methods/ping`, { body: { responseTimeoutS: 1 } });
  t.equal(badTimeout.status, 400, 'responseTimeoutS below 5: 400, as IoT Hub');

  // The CLI: `edgetwin invoke` prints the device's answer; its exit code says whether it was 2xx.
  // Without the test runner's NODE_OPTIONS (its process-info hook triples a CLI's start-up).
  const env = { EDGETWIN_CLOUD_URL: cloud.url, NODE_OPTIONS: '' };
  const [cli, cliGhost, cliBad] = await Promise.all([
    runCliAsync(['invoke', 'dev-3', 'getDiagnostics', '--timeout-s', '10'], env),
    runCliAsync(['invoke', 'ghost', 'ping', '--payload', '{"n":1}'], env),
    runCliAsync(['invoke', 'dev-3', 'ping', '--payload', '{oops'], env),
  ]);
  t.equal(cli.status, 0, `edgetwin invoke exits 0 on a 2xx answer (${cli.stderr})`);
  t.match(JSON.parse(cli.stdout), { status: 200, payload: { deviceId: 'dev-3', outbox: { rows: Number } } });
  t.equal(cliGhost.status, 1, 'exit 1 for an API error (and for a device answer that is not 2xx)');
  t.match(JSON.parse(cliGhost.stdout), { error: { httpStatus: 404, code: ErrorCodes.NOT_FOUND } });
  t.equal(cliBad.status, 2, 'a payload that is not JSON is a usage error');

  const audit = await call('GET', `${cloud.url}/v1/twins/dev-3/audit?action=method.invoke`);
  t.ok(audit.body.items.length >= 11, 'every call is in the audit trail');
  t.match(audit.body.items[0], {
    action: 'method.invoke',
    device: 'dev-3',
    site: 'site-a',
    detail: { method: 'getDiagnostics', responseTimeoutS: 10, connectTimeoutS: 0 },
  });
});

t.test('roles and site scope', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startCloud(`${dir}/cloud`);
  t.teardown(() => cloud.stop());
  const admin = (await cloud.tokens.create({ role: 'admin', name: 'admin', createdBy: 'test' })).token;
  const site = (await cloud.tokens.create({ role: 'collector', site: 'site-a', name: 'site-a', createdBy: 'test' })).token;
  const viewer = (await cloud.tokens.create({ role: 'viewer', name: 'viewer', createdBy: 'test' })).token;
  const otherOp = (await cloud.tokens.create({ role: 'operator', site: 'site-b', name: 'op-b', createdBy: 'test' })).token;
  const op = (await cloud.tokens.create({ role: 'operator', site: 'site-a', name: 'op-a', createdBy: 'test' })).token;
  const collector = await startCollector(`${dir}/collector`, cloud.url, 0, {
    siteId: 'site-a',
    sinks: { http: { url: cloud.url, token: site } },
  });
  t.teardown(() => collector.stop());
  const dev = await C2dDevice.connect(collector.mqttPort, 'plain-1', { answer: (r) => [200, { hello: r.payload }] });
  t.teardown(() => dev.end());
  await dev.client.publishAsync(
    'devices/plain-1/messages/events/',
    JSON.stringify({ v: 1, device: 'plain-1', epoch: 1, readings: [{ seq: 1, ts: Date.now(), metric: 'm', value: 1, unit: 'u' }] }),
    { qos: 1 },
  );
  await waitFor(async () => (await call('GET', `${cloud.url}/v1/twins/plain-1`, { token: admin })).status === 200, 20_000, 'twin');
  await waitFor(() => collector.c2d!.health().channel === 'open', 10_000, 'the channel with the site token');

  const body = { body: { payload: 'hi', connectTimeoutS: 5 } };
  t.equal(
    (await call('POST', `${cloud.url}/v1/twins/plain-1/methods/hello`, { ...body, token: viewer })).status,
    403,
    'a viewer may not call methods',
  );
  t.equal(
    (await call('POST', `${cloud.url}/v1/twins/plain-1/methods/hello`, { ...body, token: site })).status,
    403,
    'nor a collector token',
  );
  const other = await call('POST', `${cloud.url}/v1/twins/plain-1/methods/hello`, { ...body, token: otherOp });
  t.equal(other.status, 404, "nor another site's operator, to whom the device does not exist (D1: no oracle)");
  t.equal(other.body.code, ErrorCodes.NOT_FOUND);
  const ok = await call('POST', `${cloud.url}/v1/twins/plain-1/methods/hello`, { ...body, token: op });
  t.same(ok.body, { status: 200, payload: { hello: 'hi' } }, "the site's operator may, and a plain MQTT client answers");
  t.equal(
    (await call('POST', `${cloud.url}/v1/twins/plain-1/messages`, { body: { payload: 'x' }, token: viewer })).status,
    403,
    'a viewer may not send messages',
  );
});

t.test('a collector killed with SIGKILL mid-call: 502 at once; a device that drops mid-call: 502', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  // The collector process starts first (nothing else of the test runs meanwhile); it finds the
  // cloud on its port once that starts.
  const cloudPort = await freePort();
  const logs = join(dir, 'logs');
  mkdirSync(logs, { recursive: true });
  const cfgFile = join(dir, 'collector.json');
  writeFileSync(
    cfgFile,
    JSON.stringify({
      siteId: 'site-k',
      stateDir: join(dir, 'collector'),
      mqtt: { port: 0 },
      sinks: { http: { url: `http://127.0.0.1:${cloudPort}` } },
      c2d: { backoff: { initialMs: 100, maxMs: 500 } },
      admin: { enabled: false },
      log: { level: 'warn' },
    }),
  );
  const child = await spawnDaemonCompiled('collector', cfgFile, join(logs, 'collector.log'));
  const info = child.info;
  t.teardown(() => {
    if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL');
  });
  const cloud = await startCloud(`${dir}/cloud`, { http: { port: cloudPort } });
  t.teardown(() => cloud.stop());
  const agent = await startAgent(`${dir}/agent`, 'victim', Number(info['mqttPort']), undefined, {
    sources: { simulator: { intervalMs: 60_000 } },
    scoring: { enabled: false },
  });
  t.teardown(() => agent.stop());
  let started = 0;
  agent.methods.register('hang', () => {
    started++;
    return new Promise(() => undefined);
  });
  await known(cloud.url, 'victim');
  await waitFor(
    async () => (await call('POST', `${cloud.url}/v1/twins/victim/methods/ping`, { body: {} })).status === 200,
    20_000,
    'a first call through the channel',
  );

  const pending = call('POST', `${cloud.url}/v1/twins/victim/methods/hang`, { body: { responseTimeoutS: 120 } });
  await waitFor(() => started === 1, 10_000, 'the call at the agent');
  const t0 = Date.now();
  child.proc.kill('SIGKILL');
  const r = await pending;
  t.equal(r.status, 502, 'the caller gets 502');
  t.equal(r.body.code, ErrorCodes.GATEWAY);
  t.ok(Date.now() - t0 < 5000, `within seconds of the kill, not at the 120 s timeout (${Date.now() - t0} ms)`);
  const after = await call('POST', `${cloud.url}/v1/twins/victim/methods/ping`, { body: {} });
  t.equal(after.body.code, ErrorCodes.DEVICE_NOT_ONLINE, 'with the site gone, calls answer 404 not online at once');

  // The collector again (in-process now), a raw device that drops its connection mid-call.
  const collector = await startCollector(`${dir}/collector2`, cloud.url, 0, { siteId: 'site-k' });
  t.teardown(() => collector.stop());
  const dev = await C2dDevice.connect(collector.mqttPort, 'dropper');
  await dev.client.publishAsync(
    'devices/dropper/messages/events/',
    JSON.stringify({ v: 1, device: 'dropper', epoch: 1, readings: [{ seq: 1, ts: Date.now(), metric: 'm', value: 1, unit: 'u' }] }),
    { qos: 1 },
  );
  await known(cloud.url, 'dropper');
  const mid = call('POST', `${cloud.url}/v1/twins/dropper/methods/reboot`, { body: { responseTimeoutS: 120, connectTimeoutS: 10 } });
  await waitFor(() => dev.requests.length === 1, 10_000, 'the request at the device');
  dev.client.stream.destroy();
  const dropped = await mid;
  t.equal(dropped.status, 502, 'a device that drops mid-call: 502');
  t.equal(dropped.body.code, ErrorCodes.GATEWAY);
});
