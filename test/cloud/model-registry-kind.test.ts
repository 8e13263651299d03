/**
 * The registry and an anomaly entry with and without `kind` over real HTTP (fastify, SQLite,
 * onnxruntime for the upload check). The committed forecaster entry now names its kind, so the other
 * registry tests upload it with one; this keeps the older shape — no `kind`, as every anomaly entry
 * uploaded before issue 16 — covered: stored as uploaded (what its signature covers), listed as
 * anomaly, promoted onto desired `model`.
 */
import { join } from 'node:path';
import t from 'tap';
import { verifyEntry } from '../../common/models/signature.js';
import { call, envelope, readings, startTestCloud, telemetry } from '../helpers/cloud.js';
import { signingKey, variant } from '../helpers/models.js';
import { tempDir } from '../helpers/util.js';

t.test('anomaly entries with and without kind: stored as sent, signed, listed and promoted as anomaly', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const { keyFile, publicKey } = signingKey(dir);
  const cloud = await startTestCloud(join(dir, 'cloud'), { models: { signingKeyFile: keyFile, reconcileIntervalMs: 0 } });
  t.teardown(() => cloud.stop());
  const url = cloud.url;
  const admin = (await cloud.tokens.create({ role: 'admin', site: null, createdBy: 'test' })).token;
  const operator = (await cloud.tokens.create({ role: 'operator', site: null, createdBy: 'test' })).token;
  t.equal(
    (await call('POST', `${url}/v1/ingest`, { token: admin, body: envelope('a-1-b', 'site-a', [telemetry('a-1', 1, readings(2))]) }))
      .status,
    200,
  );

  const explicit = variant('forecaster-8.0.0');
  t.equal(explicit.entry.kind, 'anomaly', 'the committed entry names its kind');
  const { kind: _dropped, ...oldEntry } = variant('forecaster-8.0.1').entry;
  const old = { entry: oldEntry, file: explicit.file };

  for (const [body, kind] of [
    [explicit, 'anomaly'],
    [old, undefined],
  ] as const) {
    const version = body.entry.version;
    const up = await call('POST', `${url}/v1/models`, { token: admin, body });
    t.equal(up.status, 201, JSON.stringify(up.body));
    t.equal(up.body.signed, true);
    const got = await call('GET', `${url}/v1/models/forecaster/${version}`, { token: admin });
    t.equal(got.body.entry.kind, kind, `${version}: the entry comes back as it was sent`);
    t.doesNotThrow(() => verifyEntry(got.body.entry, got.body.signature, publicKey, version), `${version}: its signature verifies`);
  }
  const list = await call('GET', `${url}/v1/models`, { token: admin });
  const kinds = Object.fromEntries((list.body.items as { version: string; kind: string }[]).map((m) => [m.version, m.kind]));
  t.same(kinds, { 'forecaster-8.0.0': 'anomaly', 'forecaster-8.0.1': 'anomaly' }, 'both listed as anomaly');

  const p = await call('POST', `${url}/v1/models/forecaster/forecaster-8.0.1/promote`, { token: operator, body: { device: 'a-1' } });
  t.equal(p.status, 201, JSON.stringify(p.body));
  const desired = (await call('GET', `${url}/v1/twins/a-1`, { token: admin })).body.desired as Record<string, unknown>;
  t.match(desired['model'], { name: 'forecaster', version: 'forecaster-8.0.1' }, 'a kindless entry is promoted onto desired model');
  t.equal(desired['failureModel'], undefined, 'never onto failureModel');
});
