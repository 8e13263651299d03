/**
 * The site heartbeat through real HTTP: a real collector whose uplink refuses its batches keeps
 * them in its spool and reports the depth; `GET /v1/sites` and the `site` stream event show it;
 * another site's token, a viewer or operator cannot write a site's status; a bad body is a 400 with
 * a stable code; a site that stops reporting turns stale; the route is in /openapi.json.
 */
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { topics } from '../../common/wire/record.js';
import { batch, connectOnce, metric, publishQos1 } from '../helpers/collector.js';
import { call, startTestCloud } from '../helpers/cloud.js';
import { startCollector, tempDir, waitFor } from '../helpers/stack.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function put(url: string, token: string, body: unknown): Promise<{ status: number; body: any }> {
  const r = await request(url, {
    method: 'PUT',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await r.body.text();
  return { status: r.statusCode, body: JSON.parse(text) as unknown };
}

const report = (over: object = {}): object => ({
  v: 1,
  at: new Date().toISOString(),
  collectorVersion: '9.9.9',
  intervalMs: 10_000,
  spool: { rows: 3, bytes: 300 },
  devices: { connected: 1 },
  sinks: { http: { ok: true, lagRows: 0 } },
  ...over,
});

t.test('site heartbeat: spool depth reaches GET /v1/sites, scoped, validated, stale when silent', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'));
  t.teardown(() => cloud.stop());
  const url = cloud.url;
  const mk = async (role: 'viewer' | 'operator' | 'admin' | 'collector', site?: string): Promise<string> =>
    (await cloud.tokens.create({ role, site: site ?? null, createdBy: 'test' })).token;
  const admin = await mk('admin');
  const viewer = await mk('viewer');
  const operator = await mk('operator');
  const viewerB = await mk('viewer', 'site-b');
  const collectorA = await mk('collector', 'site-a');
  const collectorB = await mk('collector', 'site-b');

  // The uplink refuses the batches (a viewer token may not ingest), so they stay in the spool; the
  // heartbeat and desired feed use the site's own collector token.
  const collector = await startCollector(join(dir, 'collector'), url, 0, {
    siteId: 'site-a',
    sinks: { http: { url, token: viewer } },
    twin: { cloudUrl: url, cloudToken: collectorA },
    siteStatus: { intervalMs: 200, timeoutMs: 2000 },
  });
  t.teardown(() => collector.stop());
  const { client } = await connectOnce(`mqtt://127.0.0.1:${collector.mqttPort}`, { clientId: 'dev-1' });
  t.teardown(() => client.endAsync());
  for (let i = 1; i <= 5; i++) await publishQos1(client, topics.telemetry('dev-1'), batch('dev-1', 1, i));

  type Site = { site: string; devices: number; lastSeen: string | null; status: any }; // eslint-disable-line @typescript-eslint/no-explicit-any
  const siteA = async (): Promise<Site | undefined> =>
    ((await call('GET', `${url}/v1/sites`, { token: viewer })).body.items as Site[]).find((s) => s.site === 'site-a');
  await waitFor(async () => (await siteA())?.status?.spool.rows === 5, 20_000, 'the spool depth in GET /v1/sites');
  const a = (await siteA())!;
  t.match(a, { site: 'site-a', devices: 0, lastSeen: null }, 'a site known only from its heartbeat is listed');
  t.match(a.status, { v: 1, intervalMs: 200, devices: { connected: 1 }, stale: false, staleAfterMs: 600, spool: { rows: 5 } });
  t.ok(a.status.spool.bytes > 0, 'spool bytes are reported');
  t.match(a.status.sinks.http, { ok: false, lagRows: 5 }, 'the refusing sink is behind by the five batches');
  t.match(a.status.sinks.http.lastError, /403/, 'with the reason');
  t.match(a.status.collectorVersion, /^\d+\.\d+\.\d+/);
  t.ok(Date.parse(a.status.receivedAt) > 0 && a.status.ageMs >= 0);

  await t.test('writes: own site only, ingest roles only', async (t) => {
    const other = await put(`${url}/v1/sites/site-a/status`, collectorB, report());
    t.same([other.status, other.body.code], [403, 'EDGETWIN_ERR_FORBIDDEN'], "another site's collector token");
    const asViewer = await put(`${url}/v1/sites/site-b/status`, viewer, report());
    t.same([asViewer.status, asViewer.body.code], [403, 'EDGETWIN_ERR_FORBIDDEN'], 'a viewer cannot write');
    const asOperator = await put(`${url}/v1/sites/site-b/status`, operator, report());
    t.same([asOperator.status, asOperator.body.code], [403, 'EDGETWIN_ERR_FORBIDDEN'], 'nor an operator');
    const own = await put(`${url}/v1/sites/site-b/status`, collectorB, report({ extraFromANewerCollector: { x: 1 } }));
    t.equal(own.status, 200, 'its own site');
    t.match(own.body, { spool: { rows: 3, bytes: 300 }, stale: false });
    t.notOk('extraFromANewerCollector' in own.body, 'unknown fields are accepted and not stored');
    t.same(
      (await call('GET', `${url}/v1/sites`, { token: viewerB })).body.items.map((s: Site) => s.site),
      ['site-b'],
      'a site-scoped reader sees only its site',
    );
  });

  await t.test('a bad body is a 400 with a stable code, and changes nothing', async (t) => {
    const bad: [string, unknown][] = [
      ['no spool', { ...report(), spool: undefined }],
      ['negative rows', report({ spool: { rows: -1, bytes: 0 } })],
      ['wrong version', report({ v: 2 })],
      ['a time that is not one', report({ at: 'yesterday-ish' })],
      ['a sink without lag', report({ sinks: { http: { ok: true } } })],
      ['not an object', [1, 2]],
    ];
    for (const [what, body] of bad) {
      const r = await put(`${url}/v1/sites/site-b/status`, collectorB, body);
      t.same([r.status, r.body.code], [400, 'EDGETWIN_ERR_BAD_REQUEST'], what);
      t.type(r.body.message, 'string');
    }
    const badSite = await put(`${url}/v1/sites/no%20spaces/status`, admin, report());
    t.same([badSite.status, badSite.body.code], [400, 'EDGETWIN_ERR_BAD_REQUEST'], 'a site id outside the pattern');
    const b = ((await call('GET', `${url}/v1/sites`, { token: viewer })).body.items as Site[]).find((s) => s.site === 'site-b')!;
    t.equal(b.status.spool.rows, 3, 'the last good report stands');
  });

  await t.test('a site that stops reporting turns stale; the stream carries site events', async (t) => {
    const res = await request(`${url}/v1/stream?types=site&site=site-a`, { headers: { authorization: `Bearer ${viewer}` } });
    let text = '';
    res.body.on('data', (c: Buffer) => (text += c.toString()));
    res.body.on('error', () => undefined); // the teardown's destroy
    t.teardown(() => res.body.destroy());
    await waitFor(() => /event: site\n/.test(text), 10_000, 'a site event');
    const data = JSON.parse(/event: site\ndata: (.*)\n/.exec(text)![1]!) as {
      type: string;
      site: string;
      device: unknown;
      data: { spool: { rows: number } };
    };
    t.match(data, { type: 'site', site: 'site-a', device: null, data: { spool: { rows: 5 } } });

    t.equal((await put(`${url}/v1/sites/site-c/status`, admin, report({ intervalMs: 100 }))).status, 200);
    // About time: staleness is wall-clock time (three missed 100 ms heartbeats).
    await new Promise((r) => setTimeout(r, 500));
    const c = ((await call('GET', `${url}/v1/sites`, { token: viewer })).body.items as Site[]).find((s) => s.site === 'site-c')!;
    t.match(c.status, { stale: true, staleAfterMs: 300 }, 'three missed heartbeats make a site stale');
    t.ok(c.status.ageMs >= 500);
  });

  await t.test('documented in /openapi.json', async (t) => {
    const doc = (await call('GET', `${url}/openapi.json`)).body as {
      paths: Record<string, Record<string, { requestBody?: unknown; 'x-edgetwin-action'?: string }>>;
    };
    const op = doc.paths['/v1/sites/{site}/status']?.['put'];
    t.ok(op?.requestBody, 'the PUT with its body schema');
    t.equal(op?.['x-edgetwin-action'], 'ingest');
    t.ok(doc.paths['/v1/sites']?.['get']);
  });

  const sent = await collector.registry.metrics();
  t.match(sent, /edgetwin_site_status_reports_total\{[^}]*result="ok"[^}]*\} [1-9]/, 'the collector counts its reports');
});

t.test('site heartbeat: a cloud that never answers is cut at siteStatus.timeoutMs, and stop does not hang', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  // Accepts connections and reads the request, never answers.
  const sockets = new Set<Socket>();
  const silentCloud = createServer((s) => {
    sockets.add(s);
    s.on('data', () => undefined);
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => silentCloud.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    silentCloud.close();
  });
  const url = `http://127.0.0.1:${(silentCloud.address() as AddressInfo).port}`;
  const collector = await startCollector(join(dir, 'collector'), url, 0, {
    sinks: { http: { enabled: false } },
    twin: { cloudUrl: url, feedTimeoutMs: 300 },
    siteStatus: { intervalMs: 100, timeoutMs: 300 },
  });
  let stopped = false;
  t.teardown(() => (stopped ? undefined : collector.stop()));
  await waitFor(
    async () => (await metric(collector.registry, 'edgetwin_site_status_reports_total', { result: 'error' })) >= 2,
    20_000,
    'two timed-out reports',
  );
  t.equal(await metric(collector.registry, 'edgetwin_site_status_failing'), 1, 'the failing gauge is up');
  t.equal(await metric(collector.registry, 'edgetwin_site_status_reports_total', { result: 'ok' }), 0);
  await t.resolves(
    collector.siteStatus!.reportOnce().then(
      () => 'answered',
      (e: Error) => e.message,
    ),
    'reportOnce settles',
  );
  await t.rejects(collector.siteStatus!.reportOnce(), /siteStatus\.timeoutMs \(300 ms\)/, 'a report is cut at the deadline');
  void collector.siteStatus!.reportOnce().catch(() => undefined);
  await collector.stop();
  stopped = true;
  t.pass('the collector stops with a report in flight');
});
