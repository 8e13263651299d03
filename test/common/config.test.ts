import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { loadAgentConfig } from '../../agent/config.js';
import { loadCloudConfig } from '../../cloud/config.js';
import { loadCollectorConfig } from '../../collector/config.js';
import { readSecretFile } from '../../common/config.js';
import { ErrorCodes } from '../../common/errors.js';
import { tempDir } from '../helpers/stack.js';

t.test('defaults alone are valid for every component', async (t) => {
  t.equal(loadAgentConfig(undefined, undefined, {}).uplink.url, 'mqtt://127.0.0.1:1883');
  t.equal(loadCollectorConfig(undefined, undefined, {}).spool.synchronous, 'full');
  t.equal(loadCloudConfig(undefined, undefined, {}).http.port, 8480);
});

t.test('YAML file merges over defaults, env overrides the file', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const f = join(dir, 'agent.yaml');
  writeFileSync(f, 'deviceId: pump-1\nuplink:\n  url: mqtt://10.0.0.5:1883\n  inflightMax: 4\n');
  const cfg = loadAgentConfig(f, undefined, { EDGETWIN_UPLINK_PASSWORD: 's3cret', EDGETWIN_DEVICE_ID: 'pump-2' });
  t.equal(cfg.deviceId, 'pump-2');
  t.equal(cfg.uplink.url, 'mqtt://10.0.0.5:1883');
  t.equal(cfg.uplink.inflightMax, 4);
  t.equal(cfg.uplink.batchMaxReadings, 500, 'untouched defaults stay');
  t.equal(cfg.uplink.password, 's3cret');
});

t.test('bad config fails fast naming the key', async (t) => {
  t.throws(() => loadAgentConfig(undefined, { uplink: { inflightMax: 0 } }, {}), {
    code: ErrorCodes.CONFIG,
    message: /"uplink\.inflightMax"/,
  });
  t.throws(() => loadAgentConfig(undefined, { uplink: { urll: 'x' } }, {}), {
    code: ErrorCodes.CONFIG,
    message: /unknown key "uplink\.urll"/,
  });
  t.throws(() => loadCollectorConfig(undefined, { spool: { whenFull: 'sometimes' } }, {}), {
    message: /collector config: key "spool\.whenFull"/,
  });
  t.throws(() => loadCloudConfig(undefined, { http: { port: 'eighty' } }, {}), { message: /"http\.port"/ });
  t.throws(() => loadAgentConfig(undefined, { deviceId: 'has space' }, {}), { message: /"deviceId"/ });
});

t.test('config files that cannot be read or parsed say which file', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, '{ "deviceId": ');
  t.throws(() => loadAgentConfig(bad, undefined, {}), { code: ErrorCodes.CONFIG, message: /bad\.json is not valid/ });
  t.throws(() => loadAgentConfig(join(dir, 'missing.yaml'), undefined, {}), { code: ErrorCodes.CONFIG, message: /cannot read/ });
});

t.test('env list of ingest tokens replaces the file list and is validated', async (t) => {
  const cfg = loadCloudConfig(undefined, undefined, { EDGETWIN_INGEST_TOKENS: 'aaaaaaaaaaaaaaaa1, bbbbbbbbbbbbbbbb2' });
  t.same(cfg.ingest.tokens, ['aaaaaaaaaaaaaaaa1', 'bbbbbbbbbbbbbbbb2']);
  t.throws(() => loadCloudConfig(undefined, undefined, { EDGETWIN_INGEST_TOKENS: 'short' }), { message: /ingest\.tokens/ });
});

t.test('secret files readable by others are refused', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const f = join(dir, 'key');
  writeFileSync(f, 'topsecret\n');
  chmodSync(f, 0o644);
  t.throws(() => readSecretFile(f, 'uplink.password'), { message: /uplink\.password.*chmod 600/ });
  chmodSync(f, 0o600);
  t.equal(readSecretFile(f, 'uplink.password'), 'topsecret');
});

t.test('a config file holding a credential must be private (mode 600), like a passwordFile', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const write = (name: string, body: string, mode: number): string => {
    const f = join(dir, name);
    writeFileSync(f, body);
    chmodSync(f, mode);
    return f;
  };
  const cases: [string, string, string][] = [
    ['password', 'deviceId: p-1\nuplink:\n  password: hunter2-secret\n', 'uplink.password'],
    ['sas key', 'deviceId: p-1\nuplink:\n  sasKey: c2VjcmV0LWtleQ==\n', 'uplink.sasKey'],
    ['url userinfo', 'deviceId: p-1\nuplink:\n  url: mqtt://p-1:hunter2@10.0.0.5:1883\n', 'uplink.url'],
  ];
  for (const [what, body, key] of cases) {
    const open = write(`${what.replace(/ /g, '-')}.yaml`, body, 0o644);
    t.throws(
      () => loadAgentConfig(open, undefined, {}),
      { code: ErrorCodes.CONFIG, message: new RegExp(`key "${key.replace('.', '\\.')}" holds a credential.*chmod 600`) },
      `${what} in a world-readable file is refused`,
    );
    chmodSync(open, 0o600);
    t.doesNotThrow(() => loadAgentConfig(open, undefined, {}), `${what} in a mode-600 file is accepted`);
  }
  const collector = write('collector.json', JSON.stringify({ sinks: { http: { token: 'tok-0123456789abcdef' } } }), 0o640);
  t.throws(() => loadCollectorConfig(collector, undefined, {}), { code: ErrorCodes.CONFIG, message: /"sinks\.http\.token"/ });
  const cloud = write('cloud.json', JSON.stringify({ ingest: { tokens: ['site-a:0123456789abcdef0123'] } }), 0o604);
  t.throws(() => loadCloudConfig(cloud, undefined, {}), { code: ErrorCodes.CONFIG, message: /"ingest\.tokens"/ });
  const plain = write('plain.yaml', 'deviceId: p-1\nuplink:\n  url: mqtt://p-1@10.0.0.5:1883\n  password: ""\n', 0o644);
  t.equal(loadAgentConfig(plain, undefined, {}).deviceId, 'p-1', 'no credential (a user name alone, an empty value): any mode');
});
