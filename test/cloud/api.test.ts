/**
 * The twin API through real HTTP: filters and cursor pagination, ETag-checked desired changes
 * (412 when stale), the desired feed collectors poll, "applied" from reported patches, the audit
 * trail, telemetry history (raw and from gold), sites, OpenAPI and per-route latency metrics.
 */
import { join } from 'node:path';
import t from 'tap';
import { call, envelope, readings, startTestCloud, telemetry } from '../helpers/cloud.js';
import { rulPrediction } from '../helpers/readings.js';
import { tempDir } from '../helpers/util.js';

t.test('twin API', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'));
  t.teardown(() => cloud.stop());
  const url = cloud.url;
  const ingest = async (site: string, msgs: unknown[]): Promise<void> => {
    const r = await call('POST', `${url}/v1/ingest`, { body: envelope(`b-${Math.random()}`, site, msgs) });
    if (r.status !== 200) throw new Error(JSON.stringify(r.body));
  };

  // 7 devices on two sites; p-3 and p-5 have an alert as their newest reading.
  for (const d of ['p-1', 'p-2', 'p-3', 'p-4']) {
    const rs = readings(5);
    if (d === 'p-3') Object.assign(rs[4]!, { score: 0.97, model: 'vib-1.0', alert: true });
    await ingest('plant-a', [telemetry(d, 1, rs)]);
  }
  // About time (both sleeps): `between` must be a wall-clock instant strictly between the two groups' ingest times.
  await new Promise((r) => setTimeout(r, 30));
  const between = Date.now();
  await new Promise((r) => setTimeout(r, 30)); // About time: see above
  for (const d of ['p-5', 'p-6', 'p-7']) {
    const rs = readings(5);
    if (d === 'p-5') Object.assign(rs[4]!, { score: 0.91, model: 'vib-1.0', alert: true });
    await ingest('plant-b', [telemetry(d, 1, rs)]);
  }

  await t.test('tags and device type are set with If-Match', async (t) => {
    for (const [d, type, tags] of [
      ['p-1', 'pump', { line: '1', critical: 'yes' }],
      ['p-2', 'pump', { line: '2' }],
      ['p-5', 'fan', { line: '1' }],
    ] as const) {
      const cur = await call('GET', `${url}/v1/twins/${d}`);
      const r = await call('PATCH', `${url}/v1/twins/${d}`, {
        body: { deviceType: type, tags },
        headers: { 'if-match': cur.headers['etag'] as string },
      });
      t.equal(r.status, 200);
      t.same(r.body.tags, tags);
    }
  });

  await t.test('filters', async (t) => {
    const ids = async (q: string): Promise<string[]> => {
      const r = await call('GET', `${url}/v1/twins?${q}`);
      t.equal(r.status, 200, q);
      return r.body.items.map((i: { deviceId: string }) => i.deviceId);
    };
    t.same(await ids(''), ['p-1', 'p-2', 'p-3', 'p-4', 'p-5', 'p-6', 'p-7']);
    t.same(await ids('site=plant-b'), ['p-5', 'p-6', 'p-7']);
    t.same(await ids('type=pump'), ['p-1', 'p-2']);
    t.same(await ids('tag=line:1'), ['p-1', 'p-5']);
    t.same(await ids('tag=line:1&tag=critical'), ['p-1']);
    t.same(await ids('tag=critical:no'), []);
    t.same(await ids('anomalous=true'), ['p-3', 'p-5']);
    t.same(await ids('anomalous=false&site=plant-a'), ['p-1', 'p-2', 'p-4']);
    t.same(await ids(`lastSeenBefore=${between}`), ['p-1', 'p-2', 'p-3', 'p-4']);
    t.same(await ids(`lastSeenAfter=${new Date(between).toISOString()}`), ['p-5', 'p-6', 'p-7']);
    const bad = await call('GET', `${url}/v1/twins?lastSeenAfter=yesterday`);
    t.equal(bad.status, 400);
    t.equal(bad.body.code, 'EDGETWIN_ERR_BAD_REQUEST');
    t.equal((await call('GET', `${url}/v1/twins?limit=0`)).status, 400);
  });

  await t.test('cursor pagination visits every twin once', async (t) => {
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const r: { body: { items: { deviceId: string }[]; next: string | null } } = await call(
        'GET',
        `${url}/v1/twins?limit=3${cursor ? `&cursor=${cursor}` : ''}`,
      );
      seen.push(...r.body.items.map((i) => i.deviceId));
      cursor = r.body.next;
      pages++;
    } while (cursor !== null);
    t.equal(pages, 3);
    t.same(seen, ['p-1', 'p-2', 'p-3', 'p-4', 'p-5', 'p-6', 'p-7']);
    const filtered = await call('GET', `${url}/v1/twins?site=plant-a&limit=2`);
    const second = await call('GET', `${url}/v1/twins?site=plant-a&limit=2&cursor=${filtered.body.next}`);
    t.same(
      second.body.items.map((i: { deviceId: string }) => i.deviceId),
      ['p-3', 'p-4'],
    );
    t.equal(second.body.next, null);
  });

  await t.test('one twin: reported, desired, $version, ETag, health, model, anomaly', async (t) => {
    const r = await call('GET', `${url}/v1/twins/p-3`);
    t.equal(r.status, 200);
    t.equal(r.headers['etag'], r.body.etag);
    t.match(r.body, {
      deviceId: 'p-3',
      site: 'plant-a',
      readings: 5,
      health: { status: 'online' },
      model: 'vib-1.0',
      anomaly: { anomalous: true, score: 0.97, metric: 'm1' },
      desired: { $version: 0 },
      $version: 1,
    });
    t.equal(Object.keys(r.body.reported).length, 3, 'newest reading per metric');
    t.same(r.body.reported['m1'], {
      value: 1,
      unit: 'u',
      ts: r.body.reported['m1'].ts,
      seq: 5,
      epoch: 1,
      score: 0.97,
      alert: true,
      model: 'vib-1.0',
    });
    const missing = await call('GET', `${url}/v1/twins/nobody`);
    t.same([missing.status, missing.body.code], [404, 'EDGETWIN_ERR_NOT_FOUND']);
  });

  await t.test('one twin read again: new telemetry and a new prediction show at once (its body is cached per change)', async (t) => {
    const before = await call('GET', `${url}/v1/twins/p-4`);
    t.match(before.headers['content-type'], /^application\/json/);
    t.same(before.body.predictions, {});
    t.equal(before.body.health.status, 'online', 'health is in the body');
    const again = (await call('GET', `${url}/v1/twins/p-4`)).body;
    t.same({ ...again, health: again.health.status }, { ...before.body, health: before.body.health.status }, 'read twice, the same twin');
    const now = Date.now();
    await ingest('plant-a', [
      telemetry('p-4', 1, [{ seq: 6, ts: now, metric: 'm9', value: 3, unit: 'u' }, rulPrediction(7, now, 'engine-1', 50)]),
    ]);
    const after = await call('GET', `${url}/v1/twins/p-4`);
    t.equal(after.body.reported['m9']?.value, 3, 'the new reading');
    t.match(after.body.predictions, { 'engine-1': { rulCycles: 50, unit: 'cycle' } }, 'the new prediction');
    t.equal(after.headers['etag'], before.headers['etag'], 'telemetry does not change the operator-side version');
    await ingest('plant-a', [telemetry('p-4', 1, [rulPrediction(8, now + 1, 'engine-1', 49)])]);
    t.equal((await call('GET', `${url}/v1/twins/p-4`)).body.predictions['engine-1'].rulCycles, 49, 'a prediction alone');
  });

  await t.test('desired: If-Match, 412 on a stale ETag, versions, audit, feed, applied', async (t) => {
    const before = await call('GET', `${url}/v1/twins/p-1`);
    const etag = before.headers['etag'] as string;
    const noMatch = await call('PATCH', `${url}/v1/twins/p-1/desired`, { body: { samplingIntervalMs: 500 } });
    t.same([noMatch.status, noMatch.body.code], [428, 'EDGETWIN_ERR_PRECONDITION_REQUIRED']);

    const ok = await call('PATCH', `${url}/v1/twins/p-1/desired`, {
      body: { samplingIntervalMs: 500, thresholds: { vib: 0.8 } },
      headers: { 'if-match': etag },
    });
    t.equal(ok.status, 200);
    t.match(ok.body.desired, { samplingIntervalMs: 500, thresholds: { vib: 0.8 }, $version: 1 });
    t.not(ok.headers['etag'], etag, 'a new ETag');

    const stale = await call('PATCH', `${url}/v1/twins/p-1/desired`, { body: { samplingIntervalMs: 900 }, headers: { 'if-match': etag } });
    t.same([stale.status, stale.body.code], [412, 'EDGETWIN_ERR_PRECONDITION_FAILED']);
    t.equal(stale.headers['etag'], ok.headers['etag'], 'the 412 carries the current ETag');
    t.equal((await call('GET', `${url}/v1/twins/p-1`)).body.desired.samplingIntervalMs, 500, 'the stale write changed nothing');

    const second = await call('PATCH', `${url}/v1/twins/p-1/desired`, {
      body: { thresholds: null, samplingIntervalMs: 1000 },
      headers: { 'if-match': ok.headers['etag'] as string, 'content-type': 'application/merge-patch+json' },
    });
    t.same(
      second.body.desired,
      { samplingIntervalMs: 1000, $version: 2, $lastUpdated: second.body.desired.$lastUpdated },
      'merge patch: null removes',
    );
    const bad = await call('PATCH', `${url}/v1/twins/p-1/desired`, { body: { 'a.b': 1 }, headers: { 'if-match': '*' } });
    t.same([bad.status, bad.body.code], [400, 'EDGETWIN_ERR_BAD_PAYLOAD']);
    const p5 = await call('PATCH', `${url}/v1/twins/p-5/desired`, { body: { fan: 'on' }, headers: { 'if-match': '*' } });
    t.equal(p5.status, 200);

    // The feed a collector polls: its site's changed documents, oldest first, with cursors.
    const feedA = await call('GET', `${url}/v1/desired?site=plant-a&since=0`);
    t.same(
      feedA.body.items.map((i: { device: string; version: number; desired: object }) => [i.device, i.version, i.desired]),
      [['p-1', 2, { samplingIntervalMs: 1000 }]],
    );
    const feedB = await call('GET', `${url}/v1/desired?site=plant-b&since=0`);
    t.same(
      feedB.body.items.map((i: { device: string }) => i.device),
      ['p-5'],
    );
    t.ok(feedB.body.items[0].cursor > feedA.body.items[0].cursor, 'cursors are cloud-wide and increasing');
    t.same((await call('GET', `${url}/v1/desired?site=plant-a&since=${feedA.body.next}`)).body, { items: [], next: feedA.body.next });

    // The device reports it applied version 2 (through its collector, in the ingest envelope).
    await ingest('plant-a', [
      {
        v: 1,
        kind: 'reported',
        device: 'p-1',
        ts: Date.now(),
        version: 3,
        patch: { applied: { desiredVersion: 2, samplingIntervalMs: 1000 }, versions: { agent: '1.0' } },
      },
    ]);
    const after = await call('GET', `${url}/v1/twins/p-1`);
    t.match(after.body.applied, { version: 2, inSync: true });
    t.match(after.body.reportedProperties, { applied: { desiredVersion: 2 }, $version: 3 });
    // A retried (older or equal) reported patch does not roll the twin back.
    await ingest('plant-a', [
      { v: 1, kind: 'reported', device: 'p-1', ts: Date.now() - 60_000, version: 2, patch: { applied: { desiredVersion: 1 } } },
    ]);
    t.equal((await call('GET', `${url}/v1/twins/p-1`)).body.applied.version, 2);

    const audit = await call('GET', `${url}/v1/twins/p-1/audit`);
    t.same(
      audit.body.items.map((e: { action: string }) => e.action),
      ['twin.desired.patch', 'twin.desired.patch', 'twin.patch'],
    );
    t.match(audit.body.items[0], {
      actor: 'open loopback mode (no tokens exist)',
      role: 'admin',
      device: 'p-1',
      site: 'plant-a',
      detail: { patch: { thresholds: null, samplingIntervalMs: 1000 }, fromVersion: 1, toVersion: 2 },
    });
    const all = await call('GET', `${url}/v1/audit?limit=2`);
    t.equal(all.body.items.length, 2);
    const rest = await call('GET', `${url}/v1/audit?limit=10&cursor=${all.body.next}`);
    t.equal(all.body.items.length + rest.body.items.length, 6, '3 tag changes and 3 desired changes');
  });

  await t.test('telemetry: raw from silver, downsampled from gold', async (t) => {
    const start = Date.UTC(2026, 0, 5, 10, 0, 0);
    const rs = Array.from({ length: 3600 }, (_, i) => ({
      seq: i + 1,
      ts: start + i * 1000,
      metric: 'temperature',
      value: i % 60,
      unit: 'degC',
    }));
    await ingest('plant-c', [telemetry('h-1', 1, rs)]);
    await cloud.flush();
    const from = new Date(start).toISOString();
    const to = new Date(start + 3_600_000).toISOString();
    const raw = await call('GET', `${url}/v1/twins/h-1/telemetry?metric=temperature&from=${from}&to=${to}&limit=100`);
    t.equal(raw.status, 200);
    t.match(raw.body, { source: 'silver', truncated: true });
    t.equal(raw.body.points.length, 100);
    t.same(raw.body.points[1], { metric: 'temperature', ts: new Date(start + 1000).toISOString(), value: 1, unit: 'degC' });
    const perMin = await call('GET', `${url}/v1/twins/h-1/telemetry?metric=temperature&from=${from}&to=${to}&bucket=1m`);
    t.equal(perMin.body.source, 'gold/rollup_1m');
    t.equal(perMin.body.points.length, 60);
    t.same(perMin.body.points[7], {
      metric: 'temperature',
      ts: new Date(start + 7 * 60_000).toISOString(),
      count: 60,
      min: 0,
      max: 59,
      mean: 29.5,
      last: 59,
      maxScore: null,
      alerts: 0,
    });
    const per15 = await call('GET', `${url}/v1/twins/h-1/telemetry?metric=temperature&from=${from}&to=${to}&bucket=15m`);
    t.same(
      per15.body.points.map((p: { count: number }) => p.count),
      [900, 900, 900, 900],
      '15-minute buckets re-aggregated from 1-minute rollups',
    );
    const perHour = await call('GET', `${url}/v1/twins/h-1/telemetry?metric=temperature&from=${from}&to=${to}&bucket=1h`);
    t.match(perHour.body, { source: 'gold/rollup_1h', points: [{ count: 3600, min: 0, max: 59, mean: 29.5 }] });
    const per10s = await call('GET', `${url}/v1/twins/h-1/telemetry?metric=temperature&from=${from}&to=${to}&bucket=10s`);
    t.match(per10s.body, { source: 'silver' });
    t.equal(per10s.body.points.length, 360);
    t.equal((await call('GET', `${url}/v1/twins/h-1/telemetry?bucket=7x`)).status, 400);
    t.equal((await call('GET', `${url}/v1/twins/h-1/telemetry?from=${to}&to=${from}`)).status, 400);
  });

  await t.test('anomalies and sites', async (t) => {
    await cloud.flush();
    const a = await call('GET', `${url}/v1/anomalies?from=${Date.now() - 3_600_000}`);
    t.same(a.body.items.map((i: { device: string; score: number }) => [i.device, i.score]).sort(), [
      ['p-3', 0.97],
      ['p-5', 0.91],
    ]);
    const onlyB = await call('GET', `${url}/v1/anomalies?site=plant-b&from=${Date.now() - 3_600_000}`);
    t.same(
      onlyB.body.items.map((i: { device: string }) => i.device),
      ['p-5'],
    );
    const sites = await call('GET', `${url}/v1/sites`);
    t.same(
      sites.body.items.map((s: { site: string; devices: number; anomalous: number }) => [s.site, s.devices, s.anomalous]),
      [
        ['plant-a', 4, 1],
        ['plant-b', 3, 1],
        ['plant-c', 1, 0],
      ],
    );
  });

  await t.test('OpenAPI document and route latency histograms', async (t) => {
    const doc = await call('GET', `${url}/openapi.json`);
    t.equal(doc.body.openapi, '3.1.0');
    for (const p of [
      '/v1/ingest',
      '/v1/desired',
      '/v1/twins',
      '/v1/twins/{id}',
      '/v1/twins/{id}/desired',
      '/v1/twins/{id}/telemetry',
      '/v1/anomalies',
      '/v1/sites',
      '/v1/stream',
      '/v1/audit',
      '/v1/quality',
      '/v1/quarantine',
    ]) {
      t.ok(doc.body.paths[p], `documents ${p}`);
    }
    t.match(doc.body.paths['/v1/twins'].get.parameters, [{ name: 'site', in: 'query' }]);
    t.match(doc.body.paths['/v1/twins/{id}/desired'].patch, { security: [{ bearer: [] }], 'x-edgetwin-action': 'write' });
    const m = (await call('GET', `${url}/metrics`)).body as string;
    t.match(
      m,
      /edgetwin_cloud_http_request_duration_seconds_bucket\{le="0.005",component="cloud",method="GET",route="\/v1\/twins\/:id",status="200"\} \d+/,
    );
    t.match(
      m,
      /edgetwin_cloud_http_request_duration_seconds_count\{component="cloud",method="PATCH",route="\/v1\/twins\/:id\/desired",status="412"\} 1/,
    );
    const h = await call('GET', `${url}/healthz`);
    t.match(h, { status: 200, body: { ok: true, lakehouse: { pendingBatches: 0 } } });
  });
});
