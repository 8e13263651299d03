/**
 * Issue 16 over real HTTP (fastify, SQLite, onnxruntime for the upload check): the failure model goes
 * through the same registry as the anomaly model — signed with the registry's key, listed with its
 * `kind`, promoted onto the desired `failureModel` (never `model`) and withdrawn again — and
 * `GET /v1/models/{name}/{version}/drift` answers per cohort, a tag cohort (`drift.cohortTags`)
 * merging devices of two sites exactly, with its errors (unknown version, bad cohort, another site).
 */
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { compareHistograms } from '../../common/drift/compare.js';
import { Histogram } from '../../common/drift/histogram.js';
import { driftSpecsOf } from '../../common/drift/specs.js';
import { verifyEntry } from '../../common/models/signature.js';
import { call, envelope, readings, startTestCloud, telemetry } from '../helpers/cloud.js';
import { signingKey, variant } from '../helpers/models.js';
import { driftReading, gauss } from '../helpers/readings.js';
import { failureModel } from '../helpers/rul.js';
import { tempDir } from '../helpers/util.js';

const HOUR = 3_600_000;

t.test('failure model: registry, signing, kind, desired failureModel; drift API per site and tag cohort', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const { keyFile, publicKey } = signingKey(dir);
  const cloud = await startTestCloud(join(dir, 'cloud'), {
    models: { signingKeyFile: keyFile, reconcileIntervalMs: 0 },
    drift: { cohortTags: ['line'], evaluateIntervalMs: 3_600_000 },
  });
  t.teardown(() => cloud.stop());
  const url = cloud.url;
  const mk = async (role: 'viewer' | 'operator' | 'admin', site?: string): Promise<string> =>
    (await cloud.tokens.create({ role, site: site ?? null, createdBy: 'test' })).token;
  const admin = await mk('admin');
  const operator = await mk('operator');
  const viewerA = await mk('viewer', 'site-a');
  for (const [site, device] of [
    ['site-a', 'a-1'],
    ['site-b', 'b-1'],
  ] as const) {
    const r = await call('POST', `${url}/v1/ingest`, {
      token: admin,
      body: envelope(`${device}-t`, site, [telemetry(device, 1, readings(2))]),
    });
    t.equal(r.status, 200);
  }
  const desired = async (device: string): Promise<Record<string, unknown>> =>
    (await call('GET', `${url}/v1/twins/${device}`, { token: admin })).body.desired as Record<string, unknown>;

  const { entry: committed, bytes } = failureModel();
  const entry = { ...committed, version: 'rul-7.0.0' };

  await t.test('registry and signing: both kinds, listed with their kind', async (t) => {
    const up = await call('POST', `${url}/v1/models`, { token: admin, body: { entry, file: bytes.toString('base64') } });
    t.equal(up.status, 201, JSON.stringify(up.body));
    t.equal(up.body.signed, true, 'the failure model is signed like the anomaly model');
    const got = await call('GET', `${url}/v1/models/rul/rul-7.0.0`, { token: admin });
    t.equal(got.body.entry.kind, 'failure');
    t.doesNotThrow(() => verifyEntry(got.body.entry, got.body.signature, publicKey, 'rul-7.0.0'));
    t.throws(
      () => verifyEntry({ ...got.body.entry, thresholds: { alertBelow: 0 } }, got.body.signature, publicKey, 'rul-7.0.0'),
      { code: 'EDGETWIN_ERR_MODEL' },
      'a changed failure entry no longer verifies',
    );
    t.equal((await call('POST', `${url}/v1/models`, { token: admin, body: variant('forecaster-7.0.0') })).status, 201);
    const list = await call('GET', `${url}/v1/models`, { token: admin });
    const kinds = Object.fromEntries((list.body.items as { version: string; kind: string }[]).map((m) => [m.version, m.kind]));
    t.same(kinds, { 'rul-7.0.0': 'failure', 'forecaster-7.0.0': 'anomaly' });
  });

  await t.test('promotion of a failure model sets desired failureModel, never model; withdraw removes it', async (t) => {
    const p = await call('POST', `${url}/v1/models/rul/rul-7.0.0/promote`, { token: operator, body: { device: 'a-1' } });
    t.equal(p.status, 201, JSON.stringify(p.body));
    t.same(p.body.devices, ['a-1']);
    const want = { name: 'rul', version: 'rul-7.0.0', sha256: committed.sha256 };
    t.same((await desired('a-1'))['failureModel'], want);
    t.equal((await desired('a-1'))['model'], undefined, "the anomaly model's key is untouched");
    const f = await call('POST', `${url}/v1/models/forecaster/forecaster-7.0.0/promote`, { token: operator, body: { device: 'a-1' } });
    t.equal(f.status, 201);
    t.match((await desired('a-1'))['model'], { version: 'forecaster-7.0.0' });
    t.same((await desired('a-1'))['failureModel'], want, 'an anomaly promotion leaves failureModel as it was');
    const w = await request(`${url}/v1/models/promotions/${p.body.promotion.id}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${operator}` },
    });
    t.equal(w.statusCode, 200, await w.body.text());
    t.equal((await desired('a-1'))['failureModel'], undefined, 'withdrawn: the device runs its own failure model');
    t.match((await desired('a-1'))['model'], { version: 'forecaster-7.0.0' }, 'and keeps its promoted anomaly model');
    t.equal((await desired('b-1'))['failureModel'], undefined, 'other devices never touched');
  });

  await t.test('GET /v1/models/{name}/{version}/drift: site cohorts, a tag cohort merged across sites, errors', async (t) => {
    for (const device of ['a-1', 'b-1']) {
      const r = await call('PATCH', `${url}/v1/twins/${device}`, {
        token: operator,
        body: { tags: { line: 'L1' } },
        headers: { 'if-match': '*' },
      });
      t.equal(r.status, 200);
    }
    const spec = driftSpecsOf(entry).input;
    const g = gauss(71);
    const a = Array.from({ length: 3000 }, () => g());
    const b = Array.from({ length: 5000 }, () => g() + 0.5);
    const from = Date.now() - 2 * HOUR;
    for (const [site, device, values] of [
      ['site-a', 'a-1', a],
      ['site-b', 'b-1', b],
    ] as const) {
      const h = Histogram.of(spec, values);
      const r = await call('POST', `${url}/v1/ingest`, {
        token: admin,
        body: envelope(`${device}-d`, site, [telemetry(device, 1, [driftReading(100, from, from + HOUR, 's2', h, 'rul-7.0.0')])]),
      });
      t.equal(r.status, 200, JSON.stringify(r.body));
    }
    t.equal((await call('POST', `${url}/v1/models/rul/rul-7.0.0/drift/evaluate`, { token: operator })).status, 200);

    const all = await call('GET', `${url}/v1/models/rul/rul-7.0.0/drift`, { token: operator });
    t.equal(all.status, 200, JSON.stringify(all.body));
    t.match(all.body, { name: 'rul', model: 'rul-7.0.0', thresholds: { ks: 0.05, p: 0.01 }, runbook: 'docs/runbooks/model-drift.md' });
    type Cohort = {
      cohort: string;
      reference: { manifest: string | null };
      windows: { streams: { stream: string; n: number; ks: number }[] }[];
    };
    const cohorts = all.body.cohorts as Cohort[];
    t.same(cohorts.map((c) => c.cohort).sort(), ['site:site-a', 'site:site-b', 'tag:line=L1']);
    const s2 = (c: Cohort) => c.windows.flatMap((w) => w.streams).find((s) => s.stream === 's2')!;
    const tag = cohorts.find((c) => c.cohort === 'tag:line=L1')!;
    t.equal(s2(tag).n, a.length + b.length, 'the tag cohort merges the devices of both sites');
    t.match(tag.reference.manifest, /^manifest: /, "judged against the manifest's reference");
    const ref = Histogram.unpack(entry.drift!.reference!.streams['s2']!.input!);
    t.equal(s2(tag).ks, compareHistograms(Histogram.of(spec, [...a, ...b]), ref).ks, "the tag cohort's D is D of the pooled raw values");
    t.equal(s2(cohorts.find((c) => c.cohort === 'site:site-a')!).n, a.length);

    const one = await call('GET', `${url}/v1/models/rul/rul-7.0.0/drift?cohort=${encodeURIComponent('tag:line=L1')}`, { token: operator });
    t.same(
      (one.body.cohorts as Cohort[]).map((c) => c.cohort),
      ['tag:line=L1'],
    );
    const bad = await call('GET', `${url}/v1/models/rul/rul-7.0.0/drift?cohort=plant`, { token: operator });
    t.same([bad.status, bad.body.code], [400, 'EDGETWIN_ERR_BAD_REQUEST']);
    const missing = await call('GET', `${url}/v1/models/rul/rul-0.0.1/drift`, { token: operator });
    t.same([missing.status, missing.body.code], [404, 'EDGETWIN_ERR_NOT_FOUND']);
    const scoped = await call('GET', `${url}/v1/models/rul/rul-7.0.0/drift`, { token: viewerA });
    t.same(
      (scoped.body.cohorts as Cohort[]).map((c) => c.cohort),
      ['site:site-a'],
      'a site-scoped token sees its own site only',
    );
    const other = await call('GET', `${url}/v1/models/rul/rul-7.0.0/drift?cohort=site:site-b`, { token: viewerA });
    t.same([other.status, other.body.code], [403, 'EDGETWIN_ERR_FORBIDDEN']);
  });
});
