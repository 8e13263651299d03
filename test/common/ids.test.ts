/**
 * Device and model ids `.` and `..` are refused at every boundary that takes them (agent config,
 * device registry, MQTT CONNECT, cloud ingest, model upload, model topics, desired `model`), and
 * no model file can land outside the models folder whatever the name.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { loadAgentConfig } from '../../agent/config.js';
import { loadCloudConfig } from '../../cloud/config.js';
import { loadCollectorConfig } from '../../collector/config.js';
import { DeviceRegistry } from '../../collector/registry/device-registry.js';
import { ErrorCodes } from '../../common/errors.js';
import { ModelFiles } from '../../common/models/files.js';
import { checkEnvelope } from '../../common/wire/ingest-envelope.js';
import { parseDesiredModel, parseModelTopic } from '../../common/wire/model-protocol.js';
import { call, envelope, readings, startTestCloud, telemetry } from '../helpers/cloud.js';
import { connectOnce } from '../helpers/collector.js';
import { variant } from '../helpers/models.js';
import { silent, startCollector, tempDir } from '../helpers/stack.js';

const DOTS = ['.', '..'];

t.test('device ids . and .. are refused by the agent, the registry, the broker and the cloud', async (t) => {
  const { dir, cleanup } = tempDir('edgetwin-ids-');
  t.teardown(cleanup);
  for (const id of DOTS) {
    t.throws(() => loadAgentConfig(undefined, { deviceId: id, stateDir: dir }, {}), { code: ErrorCodes.CONFIG }, `agent deviceId "${id}"`);
  }
  const reg = new DeviceRegistry(join(dir, 'devices.db'), silent());
  t.teardown(() => reg.close());
  for (const id of DOTS) await t.rejects(reg.add(id, 'sas'), { code: ErrorCodes.USAGE }, `registry add "${id}"`);
  t.ok(await reg.add('...', 'sas'), 'three dots are an ordinary IoT Hub id');

  const cloud = await startTestCloud(join(dir, 'cloud'));
  t.teardown(() => cloud.stop());
  const collector = await startCollector(join(dir, 'collector'), cloud.url);
  t.teardown(() => collector.stop());
  for (const id of DOTS) {
    const r = await connectOnce(`mqtt://127.0.0.1:${collector.mqttPort}`, { clientId: id });
    t.equal(r.refusedCode, 2, `CONNECT as "${id}": CONNACK 2`);
  }
  const res = await call('POST', `${cloud.url}/v1/ingest`, {
    body: envelope('dots-1', 'site-a', [
      telemetry('..', 1, readings(2)),
      telemetry('.', 1, readings(2)),
      telemetry('ok-1', 1, readings(2)),
    ]),
  });
  t.equal(res.status, 200);
  t.match(res.body, { stored: 2, rejected: [{ index: 0 }, { index: 1 }] }, 'the two dot ids rejected per message, the good one stored');
  // (A GET of /v1/twins/.. would test nothing: HTTP clients resolve `..` before sending. Raw paths: test/cloud/twin-limits.test.ts.)
  const ids = ((await call('GET', `${cloud.url}/v1/twins`)).body as { items: { deviceId: string }[] }).items.map((i) => i.deviceId);
  t.same(ids, ['ok-1'], 'no twin for "." or ".."');
});

t.test('site ids . and .. are refused by the collector config and the cloud envelope', async (t) => {
  const { dir, cleanup } = tempDir('edgetwin-ids-');
  t.teardown(cleanup);
  for (const id of DOTS) {
    t.throws(
      () => loadCollectorConfig(undefined, { siteId: id, stateDir: dir }, {}),
      { code: ErrorCodes.CONFIG },
      `collector siteId "${id}"`,
    );
    t.throws(
      () => checkEnvelope({ v: 1, batchId: 'b', site: id, messages: [] }),
      { code: ErrorCodes.BAD_REQUEST },
      `envelope site "${id}"`,
    );
  }
  t.ok(loadCollectorConfig(undefined, { siteId: '...', stateDir: dir }, {}), 'three dots are an ordinary site id');
  const cloud = await startTestCloud(join(dir, 'cloud'));
  t.teardown(() => cloud.stop());
  for (const id of DOTS)
    await t.rejects(
      cloud.tokens.create({ role: 'collector', site: id, createdBy: 'test' }),
      { code: ErrorCodes.USAGE },
      `token site "${id}"`,
    );
  t.ok(await cloud.tokens.create({ role: 'collector', site: '...', createdBy: 'test' }), 'a token for site "..." is fine');
  // Every other place a cloud operator names a site follows the same rule, and fails at start.
  const secret = 'x'.repeat(24);
  const places = (id: string): [string, object][] => [
    ['ingest.tokens site prefix', { ingest: { tokens: [`${id}:${secret}`] } }],
    ['auth.oidc.mapping site', { auth: { oidc: { mapping: [{ value: 'ops', role: 'operator', site: id }] } } }],
    ['alerts.rules site', { alerts: { rules: [{ id: 'r', kind: 'device_anomaly', site: id }] } }],
  ];
  for (const id of DOTS)
    for (const [what, overrides] of places(id))
      t.throws(() => loadCloudConfig(undefined, { stateDir: dir, ...overrides }, {}), { code: ErrorCodes.CONFIG }, `${what} "${id}"`);
  for (const [what, overrides] of places('...'))
    t.ok(loadCloudConfig(undefined, { stateDir: dir, ...overrides }, {}), `${what} "..." is fine`);
});

t.test('model names and versions . and .. are refused; no file lands outside the models folder', async (t) => {
  const { dir, cleanup } = tempDir('edgetwin-ids-');
  t.teardown(cleanup);
  const files = new ModelFiles(join(dir, 'models'));
  for (const [name, version] of [
    ['..', '1.0.0'],
    ['.', '1.0.0'],
    ['m', '..'],
    ['m', '.'],
    ['../x', '1'],
  ]) {
    t.throws(() => files.filePath(name!, version!), { code: ErrorCodes.BAD_REQUEST }, `path of ${name}/${version}`);
    t.equal(files.get(name!, version!), undefined, `get ${name}/${version}: nothing`);
  }
  t.equal(parseModelTopic('$edgetwin/models/GET/../1.0.0/entry/?$rid=1').kind, 'unknown', 'a model topic naming ".."');
  t.throws(() => parseDesiredModel({ name: '..', version: '1', sha256: 'a'.repeat(64) }), { code: ErrorCodes.CONFIG });

  const state = join(dir, 'cloud');
  const cloud = await startTestCloud(state, { models: { reconcileIntervalMs: 0, verifyOnUpload: false } });
  t.teardown(() => cloud.stop());
  for (const changes of [{ name: '..' }, { version: '..' }, { name: '.' }]) {
    const up = await call('POST', `${cloud.url}/v1/models`, { body: variant('9.9.9', changes) });
    t.equal(up.status, 400, `upload with ${JSON.stringify(changes)}: ${JSON.stringify(up.body)}`);
  }
  const stray = readdirSync(state).filter((f) => f.endsWith('.onnx') || (f.endsWith('.json') && !f.startsWith('edgetwin.lock')));
  t.same(stray, [], 'no model file beside the models folder');
  t.notOk(existsSync(join(dir, '9.9.9.onnx')));
});
