/**
 * A batch id is a duplicate only for a true copy (issue 13: "never 200 with stored 0 for data that
 * is not a true duplicate"): the same id from another site, or reused for other readings, is
 * refused with EDGETWIN_ERR_CONFLICT (409, permanent: the collector splits the batch under new
 * ids), and nothing of it is lost or stored over the first batch.
 */
import { join } from 'node:path';
import t from 'tap';
import { call, envelope, readings, startTestCloud, telemetry } from '../helpers/cloud.js';
import { tempDir } from '../helpers/util.js';

t.test('a batch id reused by another site or for other data is a 409, never a silent duplicate', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'));
  t.teardown(() => cloud.stop());
  const post = (site: string, messages: unknown[]) => call('POST', `${cloud.url}/v1/ingest`, { body: envelope('same', site, messages) });
  const first = [telemetry('a-1', 1, readings(3))];
  t.match(await post('site-a', first), { status: 200, body: { stored: 3 } });

  const other = await post('site-b', [telemetry('b-1', 1, readings(3))]);
  t.match(
    other,
    { status: 409, body: { code: 'EDGETWIN_ERR_CONFLICT', details: { batchId: 'same' } } },
    "another site's batch under the id",
  );
  t.equal((await call('GET', `${cloud.url}/v1/twins/b-1`)).status, 404, 'nothing of it was taken as stored');

  t.match(await post('site-a', first), { status: 200, body: { stored: 0, duplicates: 3, duplicateBatch: true } }, 'a true retry');
  const reused = await post('site-a', [telemetry('a-1', 1, readings(2, 4))]);
  t.match(reused, { status: 409, body: { code: 'EDGETWIN_ERR_CONFLICT' } }, 'the id reused for new readings');

  const ok = await call('POST', `${cloud.url}/v1/ingest`, { body: envelope('same.0', 'site-b', [telemetry('b-1', 1, readings(3))]) });
  t.match(ok, { status: 200, body: { stored: 3 } }, 'under a new id (as the collector splits it) it is stored');
  t.equal((await call('GET', `${cloud.url}/v1/twins/a-1`)).body.readings, 3, "the first batch's data unchanged");
});
