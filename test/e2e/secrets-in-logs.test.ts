/**
 * Security checks no component suite owns (the rest are listed in docs/security.md with the test
 * that proves each): secrets never reach the logs of any daemon, even at debug level and on the
 * error paths that are most tempted to print them. (The dependency audit needs the npm registry's
 * audit endpoint: it is the `audit` job of .github/workflows/ci.yml, see docs/security.md.)
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import t from 'tap';
import { request } from 'undici';
import { runCli, spawnDaemon, type DaemonChild } from '../helpers/cli.js';
import { tempDir, waitFor } from '../helpers/util.js';

function json(file: string, cfg: unknown): string {
  writeFileSync(file, JSON.stringify(cfg));
  return file;
}

async function stop(d: DaemonChild): Promise<void> {
  if (d.exitCode !== null || d.signalCode !== null) return;
  d.kill('SIGTERM');
  await d.exited;
}

t.test('secrets never appear in any daemon log, even at debug level and on refusal paths', { timeout: 240_000 }, async (t) => {
  const { dir, cleanup } = tempDir('edgetwin-secrets-');
  t.teardown(cleanup);
  const site = 'sec-site';
  // Distinctive values, so a hit in the logs can only be a leak.
  const ingestToken = `ingest-${randomBytes(12).toString('hex')}`;
  const ehKey = randomBytes(32).toString('base64');
  const ehConn = `Endpoint=sb://127.0.0.1:1/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=${ehKey};EntityPath=hub`;
  const wrongPassword = `wrong-${randomBytes(8).toString('hex')}`;
  const bogusBearer = `bogus-${randomBytes(12).toString('hex')}`;
  const debug = { EDGETWIN_LOG_LEVEL: 'debug' };

  const cloudCfg = json(join(dir, 'cloud.json'), {
    stateDir: join(dir, 'cloud'),
    http: { port: 0 },
    eventHubs: { enabled: true },
    log: { level: 'debug' },
  });
  const admin = runCli(['cloud', 'tokens', 'create', '--config', cloudCfg, '--role', 'admin', '--json'], {
    EDGETWIN_EVENTHUBS_CONNECTION_STRING: ehConn,
  });
  t.equal(admin.status, 0, admin.stderr);
  const adminToken = (JSON.parse(admin.stdout) as { token: string }).token;
  const cloud = spawnDaemon(['cloud', '--config', cloudCfg], {
    ...debug,
    EDGETWIN_INGEST_TOKENS: `${site}:${ingestToken}`,
    EDGETWIN_EVENTHUBS_CONNECTION_STRING: ehConn,
  });
  t.teardown(() => stop(cloud));
  const cloudUrl = String((await cloud.ready)['url']);

  const collectorCfg = json(join(dir, 'collector.json'), {
    siteId: site,
    stateDir: join(dir, 'collector'),
    mqtt: { port: 0 },
    auth: { mode: 'registry', revocationPollMs: 100 },
    sinks: { http: { url: cloudUrl }, eventHubs: { enabled: true } },
    runner: { backoff: { initialMs: 50, maxMs: 500 } },
    log: { level: 'debug' },
  });
  const sas = JSON.parse(
    runCli(['collector', 'devices', 'add', 'dev-sas', '--auth', 'sas', '--config', collectorCfg, '--json'], {
      EDGETWIN_EVENTHUBS_CONNECTION_STRING: ehConn,
    }).stdout,
  ) as { key: string };
  const pw = JSON.parse(
    runCli(['collector', 'devices', 'add', 'dev-pw', '--auth', 'password', '--config', collectorCfg, '--json'], {
      EDGETWIN_EVENTHUBS_CONNECTION_STRING: ehConn,
    }).stdout,
  ) as { password: string };
  // A third device whose password rides in the uplink URL's userinfo (mqtt://id:password@host).
  const pwUrl = JSON.parse(
    runCli(['collector', 'devices', 'add', 'dev-url', '--auth', 'password', '--config', collectorCfg, '--json'], {
      EDGETWIN_EVENTHUBS_CONNECTION_STRING: ehConn,
    }).stdout,
  ) as { password: string };
  t.ok(sas.key && pw.password && pwUrl.password, 'device credentials issued');
  const collector = spawnDaemon(['collector', '--config', collectorCfg], {
    ...debug,
    EDGETWIN_CLOUD_TOKEN: ingestToken,
    EDGETWIN_EVENTHUBS_CONNECTION_STRING: ehConn,
  });
  t.teardown(() => stop(collector));
  const mqttPort = Number((await collector.ready)['mqttPort']);

  const agent = (id: string, env: Record<string, string>): DaemonChild => {
    const cfg = json(join(dir, `${id}.json`), {
      deviceId: id,
      stateDir: join(dir, id),
      uplink: { url: `mqtt://127.0.0.1:${mqttPort}`, backoff: { initialMs: 50, maxMs: 300 } },
      sources: { simulator: { enabled: false }, http: { enabled: true, port: 0 } },
      // Scoring holds no secret; loading the ONNX runtime in three agents only costs the suite time.
      scoring: { enabled: false },
      log: { level: 'debug' },
    });
    return spawnDaemon(['agent', '--config', cfg], { ...debug, ...env });
  };
  const a1 = agent('dev-sas', { EDGETWIN_UPLINK_SAS_KEY: sas.key });
  const a2 = agent('dev-pw', { EDGETWIN_UPLINK_PASSWORD: pw.password });
  const a3 = agent('dev-url', { EDGETWIN_UPLINK_URL: `mqtt://dev-url:${encodeURIComponent(pwUrl.password)}@127.0.0.1:${mqttPort}` });
  t.teardown(() => stop(a1));
  t.teardown(() => stop(a2));
  t.teardown(() => stop(a3));
  for (const a of [a1, a2, a3]) {
    const port = Number((await a.ready)['httpPort']);
    const r = await request(`http://127.0.0.1:${port}/v1/readings`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"metric":"t","value":1,"unit":"u"}',
    });
    t.equal(r.statusCode, 200, await r.body.text());
  }

  // The refusal paths, which are the ones tempted to echo what they were given.
  const refused = await new Promise<number>((resolve) => {
    const c = mqtt.connect(`mqtt://127.0.0.1:${mqttPort}`, {
      clientId: 'dev-pw',
      username: 'dev-pw',
      password: wrongPassword,
      reconnectPeriod: 0,
      protocolVersion: 4,
    });
    c.once('error', (e: Error & { code?: number }) => {
      c.end(true);
      resolve(e.code ?? -1);
    });
    c.once('connect', () => resolve(0));
  });
  t.equal(refused, 5, 'a wrong password is refused (CONNACK 5)');
  const forged = `SharedAccessSignature sr=edgetwin.local%2Fdevices%2Fdev-sas&sig=${encodeURIComponent(randomBytes(32).toString('base64'))}&se=${Math.floor(Date.now() / 1000) + 600}`;
  await new Promise<void>((resolve) => {
    const c = mqtt.connect(`mqtt://127.0.0.1:${mqttPort}`, {
      clientId: 'dev-sas',
      username: 'edgetwin.local/dev-sas/?api-version=2021-04-12',
      password: forged,
      reconnectPeriod: 0,
      protocolVersion: 4,
    });
    c.once('error', () => (c.end(true), resolve()));
    c.once('connect', () => (c.end(true), resolve()));
  });
  for (const [token, path] of [
    [bogusBearer, '/v1/twins'],
    [adminToken, '/v1/no-such-route'],
    [ingestToken, '/v1/twins'],
  ] as const) {
    const r = await request(`${cloudUrl}${path}`, { headers: { authorization: `Bearer ${token}` } });
    await r.body.text();
  }
  const patched = await request(`${cloudUrl}/v1/twins/dev-sas/desired`, {
    method: 'PATCH',
    headers: { authorization: `Bearer ${adminToken}`, 'if-match': '*', 'content-type': 'application/json' },
    body: '{"samplingIntervalMs":1000}',
  });
  await patched.body.text();

  await waitFor(
    async () => {
      const r = await request(`${cloudUrl}/v1/twins`, { headers: { authorization: `Bearer ${adminToken}` } });
      const items = ((await r.body.json()) as { items: { deviceId: string }[] }).items;
      return ['dev-sas', 'dev-pw', 'dev-url'].every((d) => items.some((i) => i.deviceId === d));
    },
    30_000,
    'all three devices reach the cloud',
  );
  for (const d of [a1, a2, a3, collector, cloud]) await stop(d);

  const logs = [cloud, collector, a1, a2, a3].map((d) => d.output()).join('\n');
  t.match(a3.output(), /"url":"mqtt:\/\/\[redacted\]@127\.0\.0\.1:/, 'the uplink URL is logged without its userinfo');
  t.ok(
    logs.split('\n').some((l) => l.includes('"level":20')),
    'the logs hold debug lines',
  );
  t.match(logs, /connection refused/, 'the refusals were logged');
  t.match(logs, /Event Hubs unreachable/, 'the Event Hubs sink went through its error path holding the connection string');
  const secrets: [string, string][] = [
    ['API admin token', adminToken],
    ['ingest token', ingestToken],
    ['Event Hubs SharedAccessKey', ehKey],
    ['Event Hubs connection string', ehConn],
    ['device SAS key', sas.key],
    ['device password', pw.password],
    ['device password in the uplink URL', pwUrl.password],
    ['a wrong password tried', wrongPassword],
    ['a bogus bearer token', bogusBearer],
    ['a forged SAS token', forged],
  ];
  for (const [what, secret] of secrets) t.notOk(logs.includes(secret), `no ${what} in the logs`);
  t.notMatch(logs, /sig=|SharedAccessSignature sr=/, 'no SAS token in the logs');
  t.notMatch(logs, /[Bb]earer [A-Za-z0-9_-]{8,}/, 'no bearer credential in the logs');
});
