/**
 * `GET /v1/stream` over real HTTP: twin changes, anomalies, desired and reported changes arrive as
 * Server-Sent Events once committed, filtered by type and device, and never across a token's site
 * scope.
 */
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { call, envelope, readings, startTestCloud, telemetry } from './helpers/cloud.js';
import { tempDir, waitFor } from './helpers/util.js';

interface Sse {
  event: string;
  data: { id: number; type: string; site: string; device: string; data: Record<string, unknown> };
}

async function openStream(url: string, headers: Record<string, string> = {}): Promise<{ events: Sse[]; status: number; contentType: string; close: () => void }> {
  const ac = new AbortController();
  const res = await request(url, { headers, signal: ac.signal });
  const events: Sse[] = [];
  let buf = '';
  res.body.on('data', (chunk: Buffer) => {
    buf += chunk.toString('utf8');
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (event && data) events.push({ event, data: JSON.parse(data) as Sse['data'] });
    }
  });
  res.body.on('error', () => undefined);
  return { events, status: res.statusCode, contentType: String(res.headers['content-type']), close: () => ac.abort() };
}

t.test('SSE: events arrive, filtered and scoped', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'));
  t.teardown(() => cloud.stop());
  const admin = cloud.tokens.create({ role: 'admin', createdBy: 'test' }).token;
  const viewerA = cloud.tokens.create({ role: 'viewer', site: 'site-a', createdBy: 'test' }).token;
  await new Promise((r) => setTimeout(r, 1100));

  const refused = await call('GET', `${cloud.url}/v1/stream`);
  t.equal(refused.status, 401, 'a stream needs a token too');
  const badType = await call('GET', `${cloud.url}/v1/stream?types=gossip`, { token: admin });
  t.same([badType.status, badType.body.code], [400, 'EDGETWIN_ERR_BAD_REQUEST']);

  const scoped = await openStream(`${cloud.url}/v1/stream?access_token=${viewerA}`);
  const anomaliesOnly = await openStream(`${cloud.url}/v1/stream?types=anomaly`, { authorization: `Bearer ${admin}` });
  const oneDevice = await openStream(`${cloud.url}/v1/stream?device=b-1&types=twin,desired`, { authorization: `Bearer ${admin}` });
  t.teardown(() => [scoped, anomaliesOnly, oneDevice].forEach((s) => s.close()));
  t.equal(scoped.status, 200);
  t.match(scoped.contentType, /^text\/event-stream/);
  await waitFor(() => cloud.events.count === 3, 2000, 'three subscribers');

  for (const [site, device] of [['site-a', 'a-1'], ['site-b', 'b-1']]) {
    const rs = readings(4);
    Object.assign(rs[3]!, { score: 0.95, model: 'm-2', alert: true });
    const r = await call('POST', `${cloud.url}/v1/ingest`, { token: admin, body: envelope(`e-${device}`, site!, [telemetry(device!, 1, rs)]) });
    t.equal(r.status, 200);
  }
  for (const d of ['a-1', 'b-1']) {
    t.equal((await call('PATCH', `${cloud.url}/v1/twins/${d}/desired`, { token: admin, body: { samplingIntervalMs: 3000 }, headers: { 'if-match': '*' } })).status, 200);
  }
  await call('POST', `${cloud.url}/v1/ingest`, { token: admin, body: envelope('r-1', 'site-a', [{ v: 1, kind: 'reported', device: 'a-1', ts: Date.now(), version: 1, patch: { applied: { desiredVersion: 1 } } }]) });

  await waitFor(() => scoped.events.length >= 4 && anomaliesOnly.events.length >= 2 && oneDevice.events.length >= 2, 5000, 'events');
  await new Promise((r) => setTimeout(r, 100));
  t.same(scoped.events.map((e) => [e.event, e.data.device]), [['twin', 'a-1'], ['anomaly', 'a-1'], ['desired', 'a-1'], ['reported', 'a-1']], 'the site-a reader hears site-a only');
  t.match(scoped.events[1]!.data, { type: 'anomaly', site: 'site-a', data: { metric: 'm0', score: 0.95, model: 'm-2', seq: 4 } });
  t.match(scoped.events[0]!.data.data, { added: 4, latest: { m0: { value: 0.75 } } });
  t.match(scoped.events[2]!.data.data, { version: 1, patch: { samplingIntervalMs: 3000 } });
  t.same(anomaliesOnly.events.map((e) => [e.event, e.data.device]), [['anomaly', 'a-1'], ['anomaly', 'b-1']]);
  t.same(oneDevice.events.map((e) => [e.event, e.data.device]), [['twin', 'b-1'], ['desired', 'b-1']]);
  t.ok(scoped.events.every((e, i) => i === 0 || e.data.id > scoped.events[i - 1]!.data.id), 'ids increase');

  scoped.close();
  await waitFor(() => cloud.events.count === 2, 2000, 'a closed stream unsubscribes');
  const m = (await call('GET', `${cloud.url}/metrics`)).body as string;
  t.match(m, /edgetwin_cloud_sse_clients\{component="cloud"\} 2/);
});
