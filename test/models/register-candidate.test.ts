/**
 * Retraining registers a candidate (issue 16): the trainers' `--register <cloud>` (models/registry-upload.ts)
 * uploads the new version to a running cloud's registry with the admin token from EDGETWIN_TOKEN.
 * It is stored with its kind and validation figures, listed as `stage: candidate`, and promoted
 * nowhere; without a token, or with a token that may not upload, nothing is stored.
 */
import t from 'tap';
import { registerCandidate } from '../../models/registry-upload.js';
import { failureModel } from '../helpers/rul.js';
import { startCloud, tempDir } from '../helpers/stack.js';

t.test('train:rul --register: the new version is a candidate with its figures, promoted nowhere', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startCloud(dir);
  t.teardown(() => cloud.stop());
  const admin = (await cloud.tokens.create({ role: 'admin', createdBy: 'test' })).token;
  const viewer = (await cloud.tokens.create({ role: 'viewer', createdBy: 'test' })).token;
  const saved = process.env['EDGETWIN_TOKEN'];
  t.teardown(() => (saved === undefined ? delete process.env['EDGETWIN_TOKEN'] : (process.env['EDGETWIN_TOKEN'] = saved)));

  const { entry: committed, bytes } = failureModel();
  const entry = { ...committed, version: 'rul-1.3.0' };

  delete process.env['EDGETWIN_TOKEN'];
  await t.rejects(registerCandidate(cloud.url, entry, bytes), /EDGETWIN_TOKEN/, 'no token: refused before any request');
  process.env['EDGETWIN_TOKEN'] = viewer;
  await t.rejects(registerCandidate(cloud.url, entry, bytes), /403/, 'a viewer may not upload');

  process.env['EDGETWIN_TOKEN'] = admin;
  await registerCandidate(cloud.url, entry, bytes);
  const res = await fetch(`${cloud.url}/v1/models?name=rul`, { headers: { authorization: `Bearer ${admin}` } });
  t.equal(res.status, 200);
  const { items } = (await res.json()) as { items: Record<string, unknown>[] };
  t.equal(items.length, 1, 'only the uploaded version');
  t.match(items[0], { name: 'rul', version: 'rul-1.3.0', kind: 'failure', stage: 'candidate', sha256: committed.sha256, promotions: [] });

  const one = await fetch(`${cloud.url}/v1/models/rul/rul-1.3.0`, { headers: { authorization: `Bearer ${admin}` } });
  const stored = (await one.json()) as { entry: { metrics?: unknown; thresholds?: unknown } };
  t.match(stored.entry.metrics, { crossValidation: { rmsePooled: Number, phm08PerEngine: Number } }, 'with its validation figures');
  t.same(stored.entry.metrics, committed.metrics);
  t.same(stored.entry.thresholds, committed.thresholds);
  const promotions = await fetch(`${cloud.url}/v1/models/promotions`, { headers: { authorization: `Bearer ${admin}` } });
  t.match(await promotions.json(), { items: [] }, 'promoted nowhere');
});
