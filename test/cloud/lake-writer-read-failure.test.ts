/**
 * The lakehouse writer when reading the staged batches fails (the database goes away between two
 * flushes — found by store-outage.test.ts as an unhandled rejection that would end the process, and
 * that also left every later flush chained behind the rejected one): the flush resolves, the
 * failure shows in the writer's status, and the next flush writes the batch.
 */
import { join } from 'node:path';
import t from 'tap';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import { call, duckSql, envelope, readings, startTestCloud, telemetry } from '../helpers/cloud.js';
import { tempDir } from '../helpers/util.js';

t.test('a failed read of the staged batches is retried by the next flush, never a rejection', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'state'), { lakehouse: { flushIntervalMs: 3_600_000 } });
  t.teardown(() => cloud.stop());
  const token = (await cloud.tokens.create({ role: 'admin', createdBy: 'test' })).token;
  const posted = await call('POST', `${cloud.url}/v1/ingest`, {
    token,
    body: envelope('b-1', 'site-a', [telemetry('dev-1', 1, readings(5))]),
  });
  t.equal(posted.status, 200);

  const staging = cloud.staging;
  const take = staging.take.bind(staging);
  let failures = 0;
  staging.take = async () => {
    failures++;
    throw new EdgetwinError(
      ErrorCodes.STORE_UNAVAILABLE,
      'the database is unavailable: terminating connection due to administrator command',
    );
  };
  await t.resolves(cloud.flush(), 'the failing flush resolves');
  t.equal(failures, 1);
  const status = cloud.lake.writer.status();
  t.equal(status.pendingBatches, 1, 'the batch stays staged');
  t.ok(status.lastError, `the failure is reported (${status.lastError})`);
  t.equal(cloud.health().ok, false, 'and /healthz says the lake writes are failing');

  staging.take = take;
  await t.resolves(cloud.flush(), 'the next flush runs (not chained behind a rejection)');
  t.equal(cloud.lake.writer.status().pendingBatches, 0);
  t.equal(cloud.lake.writer.status().lastError, null, 'and clears the error');
  const glob = join(dir, 'state', 'lakehouse', 'silver', 'readings', '**', '*.parquet');
  const rows = await duckSql(`SELECT count(*)::INT AS n FROM read_parquet('${glob}')`);
  t.equal(rows[0]!['n'], 5, 'every reading reached silver once');
});
