/**
 * `edgetwin collector devices add|list|revoke|token` against the registry of a running collector
 * process, and Debian's mosquitto_pub / mosquitto_sub (mosquitto-clients) as devices with those
 * credentials, over plain MQTT and TLS. A revoke from the CLI drops the device's live connection.
 */
import { spawnSync } from 'node:child_process';
import Database from 'better-sqlite3';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { verifySasToken } from '../../common/sas-token.js';
import { makePki } from '../helpers/certs.js';
import { runCli, spawnDaemon } from '../helpers/cli.js';
import { closed, connectOnce, HUB, publishQos1, batch } from '../helpers/collector.js';
import { tempDir } from '../helpers/stack.js';
import { DeviceRegistry } from '../../collector/registry/device-registry.js';

function mosquitto(cmd: 'mosquitto_pub' | 'mosquitto_sub', args: string[]): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 15_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** mosquitto_pub of one QoS 1 message to the collector on loopback; `login` and `extra` are its other options. */
function publish(
  port: number,
  login: string[],
  topic: string,
  message: string,
  extra: string[] = [],
): { status: number | null; out: string } {
  return mosquitto('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), ...extra, ...login, '-q', '1', '-t', topic, '-m', message]);
}

t.test('devices CLI and mosquitto clients against a running collector', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const pki = makePki(dir);
  const state = join(dir, 'state');
  const cfgFile = join(dir, 'collector.json');
  writeFileSync(
    cfgFile,
    JSON.stringify({
      stateDir: state,
      mqtt: { port: 0, tls: { enabled: true, port: 0, certFile: pki.certFile, keyFile: pki.keyFile } },
      auth: { mode: 'registry', revocationPollMs: 100 },
      admin: { enabled: true, port: 0 },
      sinks: { http: { enabled: false } },
    }),
  );

  const add = runCli(['collector', 'devices', 'add', 'mosq-1', '--config', cfgFile, '--gateway', '127.0.0.1:8883']);
  t.equal(add.status, 0, add.stderr);
  const key = /primary key:\s+(\S+)/.exec(add.stdout)?.[1];
  t.ok(key && Buffer.from(key, 'base64').length === 32, 'prints a 32-byte key');
  t.match(
    add.stdout,
    new RegExp(
      `connection string: HostName=${HUB.replace('.', '\\.')};DeviceId=mosq-1;SharedAccessKey=${key!.replace(/[+/]/g, '\\$&')};GatewayHostName=127\\.0\\.0\\.1:8883`,
    ),
  );
  const reg = join(state, 'devices.db');
  t.equal(statSync(reg).mode & 0o777, 0o600, 'registry file is owner-only (it holds device keys)');
  t.equal(statSync(state).mode & 0o077, 0, 'its directory too');
  const pw = JSON.parse(runCli(['collector', 'devices', 'add', 'mosq-pw', '--auth', 'password', '--registry', reg, '--json']).stdout) as {
    password: string;
  };
  t.ok(pw.password.length >= 16, 'a generated password is printed once');
  const again = runCli(['collector', 'devices', 'add', 'mosq-1', '--config', cfgFile]);
  t.equal(again.status, 2, 'adding an existing device is a usage error');
  t.match(again.stderr, /already exists/);
  const bad = runCli(['collector', 'devices', 'add', 'has space', '--config', cfgFile]);
  t.equal(bad.status, 2);

  const list = runCli(['collector', 'devices', 'list', '--config', cfgFile, '--json']);
  const devices = JSON.parse(list.stdout) as { id: string; credential: string; status: string }[];
  t.same(
    devices.map((d) => [d.id, d.credential, d.status]),
    [
      ['mosq-1', 'sas', 'active'],
      ['mosq-pw', 'password', 'active'],
    ],
  );
  t.notOk(/key|password_hash|scrypt/i.test(list.stdout), 'list never shows secrets');
  const inDb = new DeviceRegistry(reg);
  t.match(inDb.get('mosq-pw')?.passwordHash ?? '', /^scrypt\$/, 'only the scrypt hash of the password is stored');
  inDb.close();

  const token = runCli(['collector', 'devices', 'token', 'mosq-1', '--config', cfgFile, '--ttl-s', '600']).stdout.trim();
  t.doesNotThrow(() => verifySasToken(token, 'mosq-1', key!), 'token subcommand prints a valid SAS token');

  const proc = spawnDaemon(['collector', '--config', cfgFile], { EDGETWIN_LOG_LEVEL: 'warn' });
  t.teardown(() => void proc.kill('SIGKILL'));
  const ready = await proc.ready;
  const ports = ready['ports'] as { mqtt: number; mqtts: number };
  const cred = ['-i', 'mosq-1', '-u', `${HUB}/mosq-1/?api-version=2021-04-12`, '-P', token];

  const pub = publish(ports.mqtt, cred, 'devices/mosq-1/messages/events/', '{"temperature": 21.5}');
  t.equal(pub.status, 0, `mosquitto_pub with a SAS token: ${pub.out}`);
  const tls = publish(ports.mqtts, cred, 'devices/mosq-1/messages/events/', '{"temperature": 22.5}', ['--cafile', pki.caFile]);
  t.equal(tls.status, 0, `mosquitto_pub over TLS: ${tls.out}`);
  const withPw = publish(
    ports.mqtt,
    ['-i', 'mosq-pw', '-u', 'mosq-pw', '-P', pw.password],
    'devices/mosq-pw/messages/events/',
    '{"rpm": 1200}',
  );
  t.equal(withPw.status, 0, `mosquitto_pub with a password: ${withPw.out}`);
  const wrong = publish(ports.mqtt, ['-i', 'mosq-pw', '-u', 'mosq-pw', '-P', 'guess'], 'devices/mosq-pw/messages/events/', '{}');
  t.not(wrong.status, 0, 'a wrong password is refused');
  t.match(wrong.out, /not authori[sz]ed|bad user name or password|Connection Refused/i);

  const sub = mosquitto('mosquitto_sub', [
    '-h',
    '127.0.0.1',
    '-p',
    String(ports.mqtt),
    ...cred,
    '-d',
    '-W',
    '1',
    '-t',
    'devices/mosq-1/messages/devicebound/#',
    '-t',
    'devices/mosq-pw/#',
  ]);
  t.match(sub.out, /received SUBACK/, 'mosquitto_sub connects with the device credential and subscribes');
  t.match(sub.out, /Subscribed \(mid: \d+\): 0, 128/, "own topic granted, another device's refused (0x80)");

  // The spool (read alongside the running collector) holds the three accepted metric maps, sequenced.
  const spool = new Database(join(state, 'spool.db'), { readonly: true });
  const rows = spool.prepare('SELECT key, body FROM queue ORDER BY id').all() as { key: string; body: string }[];
  spool.close();
  t.same(
    rows.map((r) => r.key),
    ['mosq-1', 'mosq-1', 'mosq-pw'],
  );
  t.same(
    rows.map((r) =>
      (JSON.parse(r.body) as { readings: { seq: number; metric: string; value: number }[] }).readings.map((x) => [
        x.seq,
        x.metric,
        x.value,
      ]),
    ),
    [[[1, 'temperature', 21.5]], [[2, 'temperature', 22.5]], [[1, 'rpm', 1200]]],
  );

  // Revoke from the CLI while the device is connected: the running collector drops it.
  const { client } = await connectOnce(`mqtt://127.0.0.1:${ports.mqtt}`, {
    clientId: 'mosq-1',
    username: `${HUB}/mosq-1/?api-version=2021-04-12`,
    password: token,
  });
  await publishQos1(client, 'devices/mosq-1/messages/events/', batch('mosq-1', 1, 1));
  const revoke = runCli(['collector', 'devices', 'revoke', 'mosq-1', '--config', cfgFile]);
  t.equal(revoke.status, 0, revoke.stderr);
  t.ok(await closed(client, 3000), 'the revoked device is disconnected at once by the running collector');
  const after = publish(ports.mqtt, cred, 'devices/mosq-1/messages/events/', '{}');
  t.not(after.status, 0, 'and its token no longer works');
  t.equal(runCli(['collector', 'devices', 'revoke', 'mosq-1', '--config', cfgFile]).status, 1, 'revoking twice: not found');
  const listed = JSON.parse(runCli(['collector', 'devices', 'list', '--config', cfgFile, '--json']).stdout) as {
    id: string;
    status: string;
  }[];
  t.equal(listed.find((d) => d.id === 'mosq-1')?.status, 'revoked');

  // Operations: /healthz and /metrics on the admin port show what happened.
  const admin = `http://127.0.0.1:${String(ready['adminPort'])}`;
  const health = (await (await fetch(`${admin}/healthz`)).json()) as { ok: boolean; clients: number };
  t.equal(health.ok, true, '/healthz answers ok');
  const metrics = await (await fetch(`${admin}/metrics`)).text();
  t.match(metrics, /edgetwin_broker_auth_failures_total\{reason="bad_password"[^}]*\} 1/, '/metrics counts the refused password');
  t.match(metrics, /edgetwin_broker_disconnects_total\{reason="revoked"[^}]*\} 1/, '/metrics counts the revocation drop');

  proc.kill('SIGTERM');
  t.equal(await proc.exited, 0, 'graceful shutdown');
});
