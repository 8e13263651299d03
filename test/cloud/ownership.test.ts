/**
 * Device ownership (board decision D1) over real HTTP: device ids are global; the first site whose
 * data arrives owns a device, and another site's collector can neither take it over (issue 13,
 * critical 2) nor lose its own readings as silent "duplicates" (critical 3): its messages are
 * refused with EDGETWIN_ERR_DEVICE_CLAIMED, per message or 409 for a batch of nothing else. A
 * collector token reaches nothing of another site; only an unscoped admin moves a device, audited.
 */
import t from 'tap';
import { call, envelope, readings, telemetry, tokenCloud } from '../helpers/cloud.js';

const CLAIMED = 'EDGETWIN_ERR_DEVICE_CLAIMED';

t.test('ownership: claimed on first contact, never taken over, moved only by an admin', async (t) => {
  const { url, mk } = await tokenCloud(t);
  const admin = await mk('admin', undefined, 'alice');
  const adminDemo = await mk('admin', 'demo-site');
  const operatorDemo = await mk('operator', 'demo-site');
  const viewerOther = await mk('viewer', 'other-site');
  const demo = await mk('collector', 'demo-site');
  const other = await mk('collector', 'other-site');
  const ingest = (token: string, id: string, site: string, messages: unknown[]): ReturnType<typeof call> =>
    call('POST', `${url}/v1/ingest`, { token, body: envelope(id, site, messages) });
  const twin = async (device: string): Promise<{ site: string; readings: number; etag: string; claimed: { by: string } }> =>
    (await call('GET', `${url}/v1/twins/${device}`, { token: admin })).body;

  t.equal((await ingest(demo, 'd-1', 'demo-site', [telemetry('dev9', 1, readings(5))])).status, 200, 'demo-site claims dev9');
  t.match(await twin('dev9'), { site: 'demo-site', readings: 5, claimed: { by: 'ingest' } });

  await t.test('critical 2: another site cannot take a device over', async (t) => {
    const taken = await ingest(other, 'o-1', 'other-site', [telemetry('dev9', 7, readings(3))]);
    t.same([taken.status, taken.body.code], [409, CLAIMED], 'a batch about nothing but the claimed device: 409');
    t.match(taken.body.details.rejected, [{ index: 0, code: CLAIMED }]);
    t.notMatch(JSON.stringify(taken.body), /demo-site/, 'the refusal does not name the owner');
    const reported = await ingest(other, 'o-2', 'other-site', [
      { v: 1, kind: 'reported', device: 'dev9', ts: Date.now(), version: 9, patch: { pwned: true } },
    ]);
    t.equal(reported.status, 409, 'nor its reported properties');
    const after = await twin('dev9');
    t.match(after, { site: 'demo-site', readings: 5 }, 'the twin still belongs to demo-site, no injected telemetry');
    t.notOk((await call('GET', `${url}/v1/twins/dev9`, { token: admin })).body.reportedProperties.pwned, 'no injected property');
    const patched = await call('PATCH', `${url}/v1/twins/dev9/desired`, {
      token: operatorDemo,
      body: { secret: 'demo-only' },
      headers: { 'if-match': after.etag },
    });
    t.equal(patched.status, 200, "demo-site's operator still writes its device");
    t.equal((await call('GET', `${url}/v1/twins/dev9`, { token: viewerOther })).status, 404, "other-site's viewer cannot read it");
    const feed = await call('GET', `${url}/v1/desired?site=other-site`, { token: other });
    t.same(feed.body.items, [], "the desired state never reaches other-site's collector");
    t.equal((await call('GET', `${url}/v1/desired?site=demo-site`, { token: other })).status, 403, "nor may it read demo-site's feed");
  });

  await t.test('critical 3: the same identity from two sites is never "200 stored 0 duplicates"', async (t) => {
    // The identity (dev9, epoch 1, seq 1..5) is demo-site's; other-site's reading with it is refused, not dropped as a duplicate.
    const same = await ingest(other, 'o-3', 'other-site', [telemetry('dev9', 1, readings(5))]);
    t.equal(same.status, 409);
    t.notSame([same.body.stored, same.body.duplicates], [0, 5]);
    // A mixed batch: its own device is stored, the claimed one refused on its own and reported back.
    const mixed = await ingest(other, 'o-4', 'other-site', [telemetry('own-1', 1, readings(2)), telemetry('dev9', 1, readings(5))]);
    t.equal(mixed.status, 200);
    t.match(mixed.body, { stored: 2, duplicates: 0, rejected: [{ index: 1, code: CLAIMED }], quality: { rejected: 5 } });
    // The collector never got the first answer and sends the batch again: still refused, never a silent duplicate.
    const retry = await ingest(other, 'o-4', 'other-site', [telemetry('own-1', 1, readings(2)), telemetry('dev9', 1, readings(5))]);
    t.match(retry.body, { duplicateBatch: true, duplicates: 2, rejected: [{ index: 1, code: CLAIMED }] });
    t.equal(
      (await ingest(other, 'o-3', 'other-site', [telemetry('dev9', 1, readings(5))])).status,
      409,
      'a retried refused batch: 409 again',
    );
    t.match(await twin('own-1'), { site: 'other-site', readings: 2 });
  });

  await t.test('Event Hubs events without a site ("unassigned") hold a device only until a real site sends for it', async (t) => {
    t.equal((await ingest(admin, 'eh-1', 'unassigned', [telemetry('eh-dev', 1, readings(2))])).status, 200);
    t.match(await twin('eh-dev'), { site: 'unassigned' });
    t.equal((await ingest(demo, 'd-eh', 'demo-site', [telemetry('eh-dev', 2, readings(2))])).body.stored, 2, 'a real site takes it over');
    t.match(await twin('eh-dev'), { site: 'demo-site', readings: 4 });
    t.equal((await ingest(admin, 'eh-2', 'unassigned', [telemetry('eh-dev', 3, readings(1))])).status, 409, 'then "unassigned" is refused');
  });

  await t.test('a collector token reaches nothing of another site', async (t) => {
    t.equal((await call('GET', `${url}/v1/twins`, { token: other })).status, 403, 'no twin reads at all');
    t.equal((await call('GET', `${url}/v1/twins/dev9/telemetry`, { token: other })).status, 403, 'no history');
    t.equal((await call('GET', `${url}/v1/anomalies?site=demo-site`, { token: other })).status, 403, 'no anomalies');
    t.equal((await call('GET', `${url}/v1/models/promotions?site=demo-site`, { token: other })).status, 403, 'no promotions of demo-site');
    t.equal((await call('GET', `${url}/v1/sites`, { token: other })).status, 403, 'no site list');
    const report = {
      v: 1,
      at: new Date().toISOString(),
      collectorVersion: '9.9.9',
      intervalMs: 10_000,
      spool: { rows: 0, bytes: 0 },
      devices: { connected: 1 },
      sinks: { http: { ok: true, lagRows: 0 } },
    };
    t.equal((await call('PUT', `${url}/v1/sites/other-site/status`, { token: other, body: report })).status, 200, 'its own status: yes');
    const status = await call('PUT', `${url}/v1/sites/demo-site/status`, { token: other, body: report });
    t.equal(status.status, 403, "no writing demo-site's status");
    const patch = await call('PATCH', `${url}/v1/twins/dev9/desired`, { token: other, body: { x: 1 }, headers: { 'if-match': '*' } });
    t.equal(patch.status, 403, 'no desired writes');
    const move = await call('PUT', `${url}/v1/twins/dev9/site`, {
      token: other,
      body: { site: 'other-site' },
      headers: { 'if-match': '*' },
    });
    t.equal(move.status, 403, 'no moving it');
  });

  await t.test('only an unscoped admin moves a device: If-Match (strong), audited under both sites', async (t) => {
    const put = (token: string, device: string, site: string, ifMatch?: string): ReturnType<typeof call> =>
      call('PUT', `${url}/v1/twins/${device}/site`, { token, body: { site }, headers: ifMatch ? { 'if-match': ifMatch } : {} });
    t.equal((await put(operatorDemo, 'dev9', 'other-site', '*')).status, 403, 'not an operator');
    t.equal((await put(adminDemo, 'dev9', 'other-site', '*')).status, 403, 'not a site-scoped admin');
    t.equal((await put(admin, 'dev9', 'other-site')).status, 428, 'If-Match needed');
    const before = await twin('dev9');
    const weak = await put(admin, 'dev9', 'other-site', `W/${before.etag}`);
    t.same([weak.status, weak.body.code], [412, 'EDGETWIN_ERR_PRECONDITION_FAILED'], 'a weak ETag never matches (strong comparison)');
    const weakDesired = await call('PATCH', `${url}/v1/twins/dev9/desired`, {
      token: admin,
      body: { y: 1 },
      headers: { 'if-match': `W/${before.etag}` },
    });
    t.equal(weakDesired.status, 412, 'on every twin write: desired too');
    const listed = await call('PATCH', `${url}/v1/twins/dev9/desired`, {
      token: admin,
      body: {},
      headers: { 'if-match': `W/${before.etag}, "999"` },
    });
    t.equal(listed.status, 412, 'a weak tag in a list does not match either');
    const moved = await put(admin, 'dev9', 'other-site', before.etag);
    t.equal(moved.status, 200);
    t.match(
      moved.body,
      { site: 'other-site', claimed: { by: 'admin:alice' }, desired: { secret: 'demo-only' } },
      'desired state goes along',
    );
    t.not(moved.headers['etag'], before.etag, 'a new ETag');
    const feed = await call('GET', `${url}/v1/desired?site=other-site`, { token: other });
    t.match(feed.body.items, [{ device: 'dev9', desired: { secret: 'demo-only' } }], "the desired document goes out on other-site's feed");
    t.equal((await ingest(demo, 'd-2', 'demo-site', [telemetry('dev9', 2, readings(1))])).status, 409, "demo-site's data is refused now");
    t.equal((await ingest(other, 'o-5', 'other-site', [telemetry('dev9', 9, readings(3))])).body.stored, 3, "other-site's is stored");
    for (const site of ['demo-site', 'other-site']) {
      const audit = await call('GET', `${url}/v1/audit?site=${site}&action=twin.site`, { token: admin });
      t.match(
        audit.body.items,
        [{ actor: 'alice', device: 'dev9', detail: { from: 'demo-site', to: 'other-site' } }],
        `audited under ${site}`,
      );
    }
    // Claiming an id for a site before any data: another site's first message for it is refused.
    t.equal((await put(admin, 'pre-1', 'demo-site')).status, 200, 'claimed before its first data (no twin: no If-Match)');
    t.equal((await ingest(other, 'o-6', 'other-site', [telemetry('pre-1', 1, readings(1))])).status, 409);
    t.equal((await ingest(demo, 'd-3', 'demo-site', [telemetry('pre-1', 1, readings(1))])).body.stored, 1);
  });
});
