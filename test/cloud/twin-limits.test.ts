/**
 * The twin's size and the ids routes take (issue 13): metric names per device are capped across
 * batches and collectors (over-cap readings quarantined, reason `limit`), what went to quarantine is
 * counted on the owning site's twin, a page of `GET /v1/twins` ends at `twins.listPageMaxBytes`,
 * and no route takes `.` or `..` for a device or a site — sent as raw paths, since HTTP clients
 * resolve `..` segments before they ever reach the server.
 */
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import t from 'tap';
import { parseTime } from '../../cloud/api/routes/params.js';
import { encodeQuarantine } from '../../common/wire/record.js';
import { call, envelope, startTestCloud, telemetry, type R } from '../helpers/cloud.js';
import { tempDir } from '../helpers/util.js';

/** A request whose path is sent byte for byte (no `..` resolution, no re-encoding). */
function rawRequest(base: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, method, path, headers: { 'content-type': 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as unknown) : undefined });
      });
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

const named = (names: string[], seq0: number): R[] =>
  names.map((metric, i) => ({ seq: seq0 + i, ts: Date.now() - 1000 + i, metric, value: i, unit: 'u' }));

t.test('metric names per device are capped in the twin; the rest is quarantined and counted on the twin', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'), { limits: { metricsPerDevice: 5 } });
  t.teardown(() => cloud.stop());
  const ingest = (batchId: string, site: string, messages: unknown[]) =>
    call('POST', `${cloud.url}/v1/ingest`, { body: envelope(batchId, site, messages) });
  const twin = async (id: string) => (await call('GET', `${cloud.url}/v1/twins/${id}`)).body as Record<string, never>;

  const eight = ['n0', 'n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7'];
  let r = await ingest('cap-1', 'site-a', [telemetry('cap-1', 1, named(eight, 1)), telemetry('cap-2', 1, named(eight.slice(0, 5), 1))]);
  t.match(r, { status: 200, body: { stored: 10, quarantined: 3 } }, 'the first 5 names of each device stored, 3 over the cap quarantined');
  let a = await twin('cap-1');
  t.same(Object.keys(a['reported']).sort(), ['n0', 'n1', 'n2', 'n3', 'n4'], 'the twin holds 5 metrics');
  t.match(a['quarantine'], { count: 3, lastReason: 'limit', lastAt: String }, 'counted on the twin');
  t.match(await twin('cap-2'), { quarantine: { count: 0, lastReason: null, lastAt: null } }, 'the other device is untouched');

  // Known names go on being stored; a new one stays out, in a later batch too (the cap is per device, not per batch).
  r = await ingest('cap-2b', 'site-a', [telemetry('cap-1', 1, named(['n0', 'n9'], 20))]);
  t.match(r, { status: 200, body: { stored: 1, quarantined: 1 } });
  a = await twin('cap-1');
  t.equal(a['reported']['n0']['seq'], 20, 'a known name is updated');
  t.notOk('n9' in a['reported'], 'a sixth name is not');
  t.equal(a['quarantine']['count'], 4);
  const again = await ingest('cap-2c', 'site-a', [telemetry('cap-1', 1, named(['n0', 'n9'], 20))]);
  t.match(again.body, { stored: 0, duplicates: 2, quarantined: 0 }, 'a resent over-cap reading is a duplicate, not counted twice');

  // Another site's data for the device: refused (DEVICE_CLAIMED), and not counted on a twin it cannot see.
  r = await ingest('cap-3', 'site-b', [telemetry('cap-1', 7, named(['x'], 1)), telemetry('b-1', 1, named(['x'], 1))]);
  t.match(r.body, { rejected: [{ index: 0, code: 'EDGETWIN_ERR_DEVICE_CLAIMED' }] });
  t.equal((await twin('cap-1'))['quarantine']['count'], 4, "another site's refused data does not change the owner's twin");

  // A message refused for its value counts too, with its reason.
  r = await ingest('cap-4', 'site-a', [telemetry('cap-1', 2, [{ seq: 1, ts: Date.now(), metric: 'n0', value: 1, unit: '\ud800' }])]);
  t.match(r.body, { rejected: [{ index: 0, code: 'EDGETWIN_ERR_BAD_VALUE' }] });
  t.match((await twin('cap-1'))['quarantine'], { count: 5, lastReason: 'value' });

  // A payload a collector could not read (kept raw) from a device never heard of: its twin shows it.
  const refused = JSON.parse(
    encodeQuarantine({
      device: 'raw-1',
      ts: Date.now(),
      code: 'EDGETWIN_ERR_BAD_PAYLOAD',
      reason: 'not JSON',
      payload: Buffer.from('21.5'),
      whole: true,
    }),
  ) as unknown;
  t.match(await ingest('cap-5', 'site-a', [refused]), { status: 200, body: { rejected: [] } });
  t.match(await twin('raw-1'), { site: 'site-a', quarantine: { count: 1, lastReason: 'refused' } });

  await cloud.flush();
  const q = await call('GET', `${cloud.url}/v1/quarantine?device=cap-1&reason=limit`);
  t.same(
    (q.body as { items: { metric: string }[] }).items.map((i) => i.metric).sort(),
    ['n5', 'n6', 'n7', 'n9'],
    'the over-cap readings are in the quarantine, with their metric',
  );
});

t.test('the reported document and the tags stay within their limits, however many patches add to them', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'), { twins: { reportedMaxBytes: 1024, tagsMaxBytes: 256 } });
  t.teardown(() => cloud.stop());
  const patch = (batchId: string, p: Record<string, unknown>) =>
    call('POST', `${cloud.url}/v1/ingest`, {
      body: envelope(batchId, 'site-a', [{ v: 1, kind: 'reported', device: 'r-1', ts: Date.now(), patch: p }]),
    });
  t.match(await patch('p-1', { a: 'x'.repeat(600) }), { status: 200, body: { rejected: [] } });
  // Each patch is small enough; the document it would make is not.
  t.match(await patch('p-2', { b: 'x'.repeat(600) }), {
    status: 200,
    body: { rejected: [{ index: 0, code: 'EDGETWIN_ERR_LIMIT_EXCEEDED', message: /reported document would be \d+ bytes/ }] },
  });
  let twin = (await call('GET', `${cloud.url}/v1/twins/r-1`)).body;
  t.ok('a' in twin.reportedProperties && !('b' in twin.reportedProperties), 'the document kept as it was');
  t.match(twin.quarantine, { count: 1, lastReason: 'limit' }, 'the refused patch is quarantined and counted');
  t.match(await patch('p-3', { a: null, b: 'x'.repeat(600) }), { status: 200, body: { rejected: [] } }, 'room made in the same patch');
  twin = (await call('GET', `${cloud.url}/v1/twins/r-1`)).body;
  t.ok(!('a' in twin.reportedProperties) && 'b' in twin.reportedProperties);

  const tags = (body: unknown) => call('PATCH', `${cloud.url}/v1/twins/r-1`, { body, headers: { 'if-match': '*' } });
  t.equal((await tags({ tags: { k1: 'v'.repeat(200) } })).status, 200);
  t.match(
    await tags({ tags: { k2: 'v'.repeat(200) } }),
    { status: 422, body: { code: 'EDGETWIN_ERR_LIMIT_EXCEEDED' } },
    'tags over tagsMaxBytes',
  );
  t.same(Object.keys((await call('GET', `${cloud.url}/v1/twins/r-1`)).body.tags), ['k1']);
});

t.test('a page of GET /v1/twins ends at twins.listPageMaxBytes; the cursor still visits every twin once', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'), { twins: { listPageMaxBytes: 64 * 1024 } });
  t.teardown(() => cloud.stop());
  const devices = Array.from({ length: 10 }, (_, i) => `big-${i}`);
  const messages = devices.flatMap((d) => [
    telemetry(d, 1, named(['m'], 1)),
    { v: 1, kind: 'reported', device: d, ts: Date.now(), patch: { note: 'x'.repeat(20_000) } },
  ]);
  t.equal((await call('POST', `${cloud.url}/v1/ingest`, { body: envelope('big', 'site-a', messages) })).status, 200);
  const seen: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const res = await call('GET', `${cloud.url}/v1/twins?limit=1000${cursor ? `&cursor=${cursor}` : ''}`);
    const page = res.body as { items: { deviceId: string }[]; next: string | null };
    const bytes = Buffer.byteLength(JSON.stringify(page));
    t.ok(bytes < 64 * 1024 + 25_000, `page ${pages}: ${bytes} bytes, ${page.items.length} twins`);
    t.ok(page.items.length >= 1, 'at least one twin a page');
    seen.push(...page.items.map((i) => i.deviceId));
    cursor = page.next;
    pages++;
  } while (cursor !== null && pages < 20);
  t.ok(pages >= 3, `${pages} pages for 10 twins of about 20 KB`);
  t.same(seen, devices, 'every twin once, in order');
});

t.test('routes refuse . and .. as a device or a site id', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'));
  t.teardown(() => cloud.stop());
  for (const [method, path, body] of [
    ['GET', '/v1/twins/..', undefined],
    ['GET', '/v1/twins/%2E%2E', undefined],
    ['GET', '/v1/twins/.', undefined],
    ['PUT', '/v1/twins/%2e%2e/site', { site: 'site-a' }],
    ['PUT', '/v1/twins/d-1/site', { site: '..' }],
    ['PATCH', '/v1/twins/%2E/desired', { a: 1 }],
    ['GET', '/v1/twins/%2E%2E/telemetry?metric=m', undefined],
    ['GET', '/v1/twins?site=..', undefined],
    ['GET', '/v1/anomalies?device=..', undefined],
    ['PUT', '/v1/sites/%2E%2E/status', {}],
    ['GET', '/v1/models/%2E%2E/1.0.0', undefined],
  ] as const) {
    const r = await rawRequest(cloud.url, method, path, body);
    t.match(r, { status: 400, body: { code: 'EDGETWIN_ERR_BAD_REQUEST' } }, `${method} ${path}`);
  }
  const res = await call('POST', `${cloud.url}/v1/ingest`, { body: envelope('dots', '..', [telemetry('d-1', 1, named(['m'], 1))]) });
  t.match(res, { status: 400, body: { code: 'EDGETWIN_ERR_BAD_REQUEST' } }, 'an envelope for site ".."');
  t.equal((await call('GET', `${cloud.url}/v1/twins`)).body.items.length, 0, 'no twin was made');
});

t.test('API times without an offset are UTC, whatever the host zone', (t) => {
  const tz = process.env['TZ'];
  process.env['TZ'] = 'Asia/Kolkata'; // +05:30: Date.parse would read a time without an offset in it
  t.teardown(() => (tz === undefined ? delete process.env['TZ'] : (process.env['TZ'] = tz)));
  t.equal(parseTime('2026-01-01T00:00:00', 'from'), Date.UTC(2026, 0, 1), 'no offset: UTC');
  t.equal(parseTime('2026-01-01 00:00:00', 'from'), Date.UTC(2026, 0, 1), 'a space instead of T');
  t.equal(parseTime('2026-01-01T05:30:00+05:30', 'from'), Date.UTC(2026, 0, 1), 'an offset is honoured');
  t.equal(parseTime('1767225600000', 'from'), Date.UTC(2026, 0, 1), 'ms since the epoch');
  t.throws(() => parseTime('Thu, 01 Jan 2026 00:00:00', 'from'), { code: 'EDGETWIN_ERR_BAD_REQUEST' }, 'not ISO 8601');
  t.throws(() => parseTime('2026-13-01', 'from'), { code: 'EDGETWIN_ERR_BAD_REQUEST' }, 'month 13 is not rolled over');
  t.end();
});
