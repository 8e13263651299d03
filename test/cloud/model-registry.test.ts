/**
 * The cloud model registry over real HTTP (fastify, SQLite, onnxruntime for the upload check):
 * upload rules (sha256, manifest schema, immutability, roles), reading an entry and the file back,
 * promotions per site, tag and device setting desired `model` (most specific wins), reconcile for
 * twins tagged later, withdrawal, site scope, and signing.
 */
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { loadSigningKey, verifyEntry } from '../../common/models/signature.js';
import { sha256Hex } from '../../common/models/files.js';
import { call, envelope, readings, startTestCloud, telemetry } from '../helpers/cloud.js';
import { baseModel, variant } from '../helpers/models.js';
import { tempDir } from '../helpers/util.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function del(url: string, opts: { token: string }): Promise<{ status: number; body: any }> {
  const r = await request(url, { method: 'DELETE', headers: { authorization: `Bearer ${opts.token}` } });
  return { status: r.statusCode, body: await r.body.json() };
}

t.test('upload, read back, promote, reconcile, withdraw', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'), { models: { reconcileIntervalMs: 0 } });
  t.teardown(() => cloud.stop());
  const url = cloud.url;
  const mk = async (role: 'viewer' | 'operator' | 'admin' | 'collector', site?: string): Promise<string> =>
    (await cloud.tokens.create({ role, site: site ?? null, createdBy: 'test' })).token;
  const admin = await mk('admin');
  const operator = await mk('operator');
  const operatorA = await mk('operator', 'site-a');
  const viewer = await mk('viewer');
  const collectorA = await mk('collector', 'site-a');
  // Twins in two sites.
  for (const [site, device] of [
    ['site-a', 'a-1'],
    ['site-a', 'a-2'],
    ['site-b', 'b-1'],
  ] as const) {
    t.equal(
      (await call('POST', `${url}/v1/ingest`, { token: admin, body: envelope(`${device}-b`, site, [telemetry(device, 1, readings(2))]) }))
        .status,
      200,
    );
  }
  const desiredModel = async (device: string): Promise<unknown> =>
    (await call('GET', `${url}/v1/twins/${device}`, { token: admin })).body.desired.model;

  await t.test('upload rules', async (t) => {
    const v = variant('forecaster-9.1.0');
    const byOperator = await call('POST', `${url}/v1/models`, { token: operator, body: v });
    t.same([byOperator.status, byOperator.body.code], [403, 'EDGETWIN_ERR_FORBIDDEN'], 'operators may not upload');
    const up = await call('POST', `${url}/v1/models`, { token: admin, body: v });
    t.equal(up.status, 201, JSON.stringify(up.body));
    t.match(up.body, { name: 'forecaster', version: 'forecaster-9.1.0', sha256: baseModel().entry.sha256, signed: false });
    t.equal((await call('POST', `${url}/v1/models`, { token: admin, body: v })).status, 200, 'the same bytes again: idempotent');
    const other = variant('forecaster-9.1.0');
    other.file = Buffer.concat([Buffer.from(other.file, 'base64'), Buffer.from([0])]).toString('base64');
    other.entry = { ...other.entry, sha256: sha256Hex(Buffer.from(other.file, 'base64')), bytes: other.entry.bytes + 1 };
    const conflict = await call('POST', `${url}/v1/models`, { token: admin, body: other });
    t.same([conflict.status, conflict.body.code], [409, 'EDGETWIN_ERR_CONFLICT'], 'a version is immutable');
    const badSha = variant('forecaster-9.2.0', { sha256: 'f'.repeat(64) });
    const refused = await call('POST', `${url}/v1/models`, { token: admin, body: badSha });
    t.same([refused.status, refused.body.code], [400, 'EDGETWIN_ERR_MODEL'], 'bytes that do not match the sha256');
    t.same(refused.body.details.expected, 'f'.repeat(64));
    const badEntry = await call('POST', `${url}/v1/models`, {
      token: admin,
      body: { ...variant('forecaster-9.3.0'), entry: { name: 'x' } },
    });
    t.same([badEntry.status, badEntry.body.code], [400, 'EDGETWIN_ERR_MODEL'], 'an entry the agent could not use');
    // Bytes that match their digest but are not a model onnxruntime can load.
    const junk = Buffer.from('not an onnx graph at all');
    const notOnnx = await call('POST', `${url}/v1/models`, {
      token: admin,
      body: {
        entry: { ...baseModel().entry, version: 'forecaster-9.4.0', sha256: sha256Hex(junk), bytes: junk.length },
        file: junk.toString('base64'),
      },
    });
    t.same([notOnnx.status, notOnnx.body.code], [400, 'EDGETWIN_ERR_MODEL'], 'onnxruntime refused it at upload');
    const list = await call('GET', `${url}/v1/models`, { token: viewer });
    t.same(
      list.body.items.map((m: { version: string }) => m.version),
      ['forecaster-9.1.0'],
      'only the good upload is listed',
    );
    const missing = await call('GET', `${url}/v1/models/forecaster/forecaster-0.0.1`, { token: viewer });
    t.same([missing.status, missing.body.code], [404, 'EDGETWIN_ERR_NOT_FOUND']);
  });

  await t.test('collectors read entry and file', async (t) => {
    const e = await call('GET', `${url}/v1/models/forecaster/forecaster-9.1.0`, { token: collectorA });
    t.equal(e.status, 200);
    t.equal(e.body.entry.version, 'forecaster-9.1.0');
    t.equal(e.body.signature, undefined, 'unsigned without a key');
    const f = await request(`${url}/v1/models/forecaster/forecaster-9.1.0/file`, { headers: { authorization: `Bearer ${collectorA}` } });
    const bytes = Buffer.from(await f.body.arrayBuffer());
    t.equal(f.statusCode, 200);
    t.equal(sha256Hex(bytes), baseModel().entry.sha256, 'the file comes back byte for byte');
    t.equal(f.headers['x-edgetwin-sha256'], baseModel().entry.sha256);
  });

  await t.test('promotions set desired model; the most specific wins; withdraw falls back', async (t) => {
    t.equal((await call('POST', `${url}/v1/models`, { token: admin, body: variant('forecaster-9.5.0') })).status, 201);
    const byViewer = await call('POST', `${url}/v1/models/forecaster/forecaster-9.1.0/promote`, {
      token: viewer,
      body: { site: 'site-a' },
    });
    t.equal(byViewer.status, 403);
    const scoped = await call('POST', `${url}/v1/models/forecaster/forecaster-9.1.0/promote`, {
      token: operatorA,
      body: { site: 'site-b' },
    });
    t.same([scoped.status, scoped.body.code], [403, 'EDGETWIN_ERR_FORBIDDEN'], 'a site-scoped operator promotes in its site only');
    const site = await call('POST', `${url}/v1/models/forecaster/forecaster-9.1.0/promote`, { token: operatorA, body: { tag: 'ring' } });
    t.equal(site.status, 201, JSON.stringify(site.body));
    t.equal(site.body.promotion.site, 'site-a', "scoped: the tag promotion is limited to the operator's site");
    t.same(site.body.devices, [], 'no twin has the tag yet');
    const siteA = await call('POST', `${url}/v1/models/forecaster/forecaster-9.1.0/promote`, { token: operator, body: { site: 'site-a' } });
    t.same(siteA.body.devices.sort(), ['a-1', 'a-2']);
    const want91 = { name: 'forecaster', version: 'forecaster-9.1.0', sha256: baseModel().entry.sha256 };
    t.same(await desiredModel('a-1'), want91);
    t.equal(await desiredModel('b-1'), undefined, 'other sites untouched');
    const dev = await call('POST', `${url}/v1/models/forecaster/forecaster-9.5.0/promote`, { token: operator, body: { device: 'a-2' } });
    t.same(dev.body.devices, ['a-2']);
    t.same(await desiredModel('a-2'), { ...want91, version: 'forecaster-9.5.0' }, 'a device promotion beats the site one');
    t.same(await desiredModel('a-1'), want91);
    // A device tagged later gets its group's model at the next reconcile.
    const tagged = await call('PATCH', `${url}/v1/twins/b-1`, {
      token: operator,
      body: { tags: { canary: 'yes' } },
      headers: { 'if-match': '*' },
    });
    t.equal(tagged.status, 200);
    const canary = await call('POST', `${url}/v1/models/forecaster/forecaster-9.5.0/promote`, {
      token: operator,
      body: { tag: 'canary:yes' },
    });
    t.same(canary.body.devices, ['b-1']);
    t.equal(
      (await call('PATCH', `${url}/v1/twins/a-1`, { token: operator, body: { tags: { canary: 'yes' } }, headers: { 'if-match': '*' } }))
        .status,
      200,
    );
    t.same(await desiredModel('a-1'), want91, 'not before the reconcile');
    // reconcileIntervalMs is 0 here: a promotion or withdrawal reconciles; so does the timer in a deployment.
    const collectorView = await call('GET', `${url}/v1/models/promotions?site=site-b`, { token: await mk('collector', 'site-b') });
    t.same(
      collectorView.body.items.map((p: { version: string; tag: string | null }) => [p.version, p.tag]),
      [['forecaster-9.5.0', 'canary:yes']],
      "site-b's collector sees the promotions that can reach it",
    );
    const withdrawn = await del(`${url}/v1/models/promotions/${siteA.body.promotion.id}`, { token: operator });
    t.equal(withdrawn.status, 200, JSON.stringify(withdrawn.body));
    t.ok(withdrawn.body.promotion.withdrawnAt);
    t.same(
      await desiredModel('a-1'),
      { ...want91, version: 'forecaster-9.5.0' },
      'a-1 now follows the tag promotion (reconciled with the withdrawal)',
    );
    t.same(await desiredModel('a-2'), { ...want91, version: 'forecaster-9.5.0' }, 'the device promotion still holds');
    for (const p of [dev.body.promotion.id, canary.body.promotion.id])
      t.equal((await del(`${url}/v1/models/promotions/${p}`, { token: operator })).status, 200);
    t.equal(await desiredModel('a-2'), undefined, 'no promotion left: desired model removed, the device runs its own');
    t.equal(await desiredModel('b-1'), undefined);
    const audit = await call('GET', `${url}/v1/audit?action=model.promote`, { token: admin });
    t.equal(audit.body.items.length, 4, 'every promotion is audited');
  });
});

t.test('a signing key signs every entry; the signature verifies with the public key', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const keyFile = join(dir, 'signing.pem');
  writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o644 });
  t.throws(() => loadSigningKey(keyFile, 'models.signingKeyFile'), { code: 'EDGETWIN_ERR_CONFIG' }, 'a key others can read is refused');
  chmodSync(keyFile, 0o600);
  const cloud = await startTestCloud(join(dir, 'cloud'), { models: { signingKeyFile: keyFile } });
  t.teardown(() => cloud.stop());
  const up = await call('POST', `${cloud.url}/v1/models`, { body: variant('forecaster-7.0.0') });
  t.equal(up.status, 201);
  t.equal(up.body.signed, true);
  const got = await call('GET', `${cloud.url}/v1/models/forecaster/forecaster-7.0.0`);
  t.doesNotThrow(() => verifyEntry(got.body.entry, got.body.signature, publicKey, 'forecaster-7.0.0'));
  t.throws(
    () => verifyEntry({ ...got.body.entry, thresholds: { alert: 0 } }, got.body.signature, publicKey, 'forecaster-7.0.0'),
    { code: 'EDGETWIN_ERR_MODEL' },
    'a changed entry no longer verifies',
  );
});
