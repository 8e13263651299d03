/**
 * A full disk under the cloud's database (issue 13): ingest answers EDGETWIN_ERR_DISK_FULL (507,
 * retryable, Retry-After) — not a 500 and not STORE_CORRUPT — nothing of the batch is stored, the
 * error is logged, /healthz degrades at once naming the code, and all of it ends with the first
 * write that commits once there is room. SQLite's own SQLITE_FULL is produced for real by capping
 * the file (`PRAGMA max_page_count`), which is the error a full file system gives it.
 */
import { join } from 'node:path';
import t from 'tap';
import { ErrorCodes } from '../../common/errors.js';
import type { SqliteStore } from '../../cloud/store/sqlite-store.js';
import { DiskFullWatch } from '../../cloud/store/disk-full.js';
import { call, envelope, readings, startTestCloud, telemetry } from '../helpers/cloud.js';
import { tempDir } from '../helpers/util.js';

t.test('cloud database disk full: 507 DISK_FULL, /healthz degraded, back once there is room', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'));
  t.teardown(() => cloud.stop());
  const db = (cloud.store as SqliteStore).db;
  const ok = await call('POST', `${cloud.url}/v1/ingest`, { body: envelope('f-0', 'site-a', [telemetry('f-1', 1, readings(3))]) });
  t.equal(ok.status, 200);

  const pages = Number(db.pragma('page_count', { simple: true }));
  db.pragma(`max_page_count = ${pages}`);
  const big = readings(2000, 10);
  const full = await call('POST', `${cloud.url}/v1/ingest`, { body: envelope('f-1', 'site-a', [telemetry('f-1', 1, big)]) });
  t.match(full, { status: 507, body: { code: ErrorCodes.DISK_FULL } }, 'its own code, not a 500 or STORE_CORRUPT');
  t.ok(Number(full.headers['retry-after']) > 0, 'with Retry-After: the collector keeps its spool and retries');
  const h = await call('GET', `${cloud.url}/healthz`);
  t.equal(h.status, 503, '/healthz degraded at once');
  t.match(h.body.reasons, [new RegExp(ErrorCodes.DISK_FULL)]);
  t.equal((await call('GET', `${cloud.url}/v1/twins/f-1`)).body.readings, 3, 'nothing of the refused batch was stored');

  db.pragma('max_page_count = 1073741823');
  const again = await call('POST', `${cloud.url}/v1/ingest`, { body: envelope('f-1', 'site-a', [telemetry('f-1', 1, big)]) });
  t.match(again, { status: 200, body: { stored: 2000 } }, 'the same batch is stored when retried with room');
  t.equal((await call('GET', `${cloud.url}/healthz`)).status, 200, 'healthy again');
});

t.test('PostgreSQL disk_full (53100) and ENOSPC are DISK_FULL; other errors are not', (t) => {
  const w = new DiskFullWatch('db');
  t.match(w.map(Object.assign(new Error('could not extend file'), { code: '53100' })), { code: ErrorCodes.DISK_FULL });
  t.ok(w.failingForMs() >= 0 && w.map(Object.assign(new Error('x'), { code: 'ENOSPC' })), 'ENOSPC');
  t.equal(w.map(Object.assign(new Error('x'), { code: 'SQLITE_CORRUPT' })), undefined);
  t.equal(w.map(new Error('syntax')), undefined);
  w.committed();
  t.equal(w.failingForMs(), 0, 'a commit ends it');
  t.end();
});
