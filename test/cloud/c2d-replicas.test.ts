/**
 * The cloud's cloud-to-device service on its store, with real collectors connecting over real
 * WebSockets: on both engines the message lifecycle (pending → queued → delivered) through a
 * replica's channel; on PostgreSQL with two replicas — the call arrives at replica A while the
 * site's collector holds its channel on replica B — methods are relayed through the store and
 * its LISTEN/NOTIFY bus, messages are sent by B, and a site nobody holds answers 404 at once.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { configDefaults } from '../../common/config.js';
import { ErrorCodes, isEdgetwinError } from '../../common/errors.js';
import { createRegistry } from '../../common/metrics.js';
import { createLogger } from '../../common/log.js';
import { AuditLog } from '../../cloud/audit/audit-log.js';
import { Authenticator } from '../../cloud/auth/authenticator.js';
import { TokenStore } from '../../cloud/auth/tokens.js';
import { CloudC2d } from '../../cloud/c2d/cloud-c2d.js';
import { cloudC2dConfigSchema } from '../../cloud/c2d/config.js';
import { cloudConfigSchema } from '../../cloud/config.js';
import type { Store } from '../../cloud/store/store.js';
import { C2dDevice } from '../helpers/c2d-device.js';
import { eachStore } from '../helpers/stores.js';
import { silent, startCollector, tempDir, waitFor } from '../helpers/stack.js';

interface Replica {
  store: Store;
  c2d: CloudC2d;
  url: string;
  close(): Promise<void>;
}

/** One cloud replica's C2D service on `store`, serving channels on its own HTTP server. */
async function replica(store: Store): Promise<Replica> {
  const cfg = configDefaults(cloudConfigSchema);
  const auth = new Authenticator(new TokenStore(store), cfg);
  const c2d = new CloudC2d(
    { ...configDefaults(cloudC2dConfigSchema), sweepIntervalMs: 100, pingIntervalMs: 1000 },
    {
      store,
      audit: new AuditLog(store),
      auth,
      log: process.env['DBG'] ? createLogger('dbg', { level: 'debug' }) : silent(),
      registry: createRegistry('cloud'),
    },
  );
  const server: Server = createServer((_req, res) => res.writeHead(404).end());
  c2d.attach(server);
  c2d.start();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    store,
    c2d,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      await c2d.stop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const call = (device: string, method: string, connectTimeoutMs = 0) => ({
  site: 'site-r',
  device,
  method,
  payload: { x: 1 },
  responseTimeoutMs: 5000,
  connectTimeoutMs,
});

eachStore(t, 'a message goes pending → queued → delivered through the channel', async (t, f) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const store = await f.open();
  const r = await replica(store);
  t.teardown(() => r.close());
  const collector = await startCollector(`${dir}/c`, r.url, 0, {
    siteId: 'site-r',
    sinks: { http: { enabled: false } },
    c2d: { cloudUrl: r.url },
  });
  t.teardown(() => collector.stop());
  const dev = await C2dDevice.connect(collector.mqttPort, 'm-1', { methods: false, messages: 1 });
  t.teardown(() => dev.end());
  const m = await store.tx((tx) =>
    r.c2d.messages.add(tx, { device: 'm-1', site: 'site-r', body: 'hello', properties: { a: 'b' }, ttlMs: 60_000, createdBy: 'test' }),
  );
  t.equal(m.state, 'pending');
  await waitFor(() => dev.messages.length === 1, 10_000, 'the message at the device');
  t.match(dev.messages[0], { body: 'hello', properties: { '$.mid': m.messageId, a: 'b' } });
  await waitFor(async () => (await r.c2d.messages.get('m-1', m.messageId))?.state === 'delivered', 10_000, 'delivered');
  await waitFor(() => collector.c2d!.store.depth().feedback === 0, 5000, 'the collector forgot the feedback once the cloud had it');
});

eachStore(t, 'two replicas: calls and messages reach the site whose channel another replica holds', async (t, f) => {
  if (f.kind === 'sqlite') {
    t.pass('one SQLite store is one process: no second replica to relay through');
    return;
  }
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const a = await replica(await f.open());
  const b = await replica(await f.replica());
  t.teardown(() => Promise.all([a.close(), b.close()]));
  const collector = await startCollector(`${dir}/c`, b.url, 0, {
    siteId: 'site-r',
    sinks: { http: { enabled: false } },
    c2d: { cloudUrl: b.url },
  });
  const dev = await C2dDevice.connect(collector.mqttPort, 'r-1', { answer: (req) => [200, { got: req.payload }], messages: 1 });
  t.teardown(() => dev.end());
  await waitFor(() => b.c2d.channels.get('site-r') !== undefined, 10_000, "site-r's channel on replica B");

  const answer = await a.c2d.invoke(call('r-1', 'hello', 5000));
  t.same(answer, { status: 200, payload: { got: { x: 1 } } }, 'a call to replica A is answered through B');
  const t0 = performance.now();
  for (let i = 0; i < 20; i++) await a.c2d.invoke(call('r-1', 'hello'));
  t.comment(`relayed call round trip: ${((performance.now() - t0) / 20).toFixed(1)} ms mean over 20 (informational)`);
  const offline = await a.c2d.invoke(call('nobody', 'hello')).catch((e: unknown) => e);
  t.ok(isEdgetwinError(offline, ErrorCodes.DEVICE_NOT_ONLINE), "B's collector says the device is not online, and A passes it on");

  const m = await a.store.tx((tx) =>
    a.c2d.messages.add(tx, { device: 'r-1', site: 'site-r', body: 'via A', properties: {}, ttlMs: 60_000, createdBy: 't' }),
  );
  await waitFor(() => dev.messages.some((x) => x.body === 'via A'), 10_000, 'a message stored through A, sent by B');
  await waitFor(async () => (await a.c2d.messages.get('r-1', m.messageId))?.state === 'delivered', 10_000, 'delivered, as A sees it');

  // The call in flight when the site's collector goes away: 502 through the relay.
  dev.setAnswer(() => undefined);
  const inflight = a.c2d.invoke({ ...call('r-1', 'slow'), responseTimeoutMs: 60_000 }).catch((e: unknown) => e);
  await waitFor(() => dev.requests.some((q) => q.method === 'slow'), 10_000, 'the slow call at the device');
  await collector.stop();
  t.ok(isEdgetwinError(await inflight, ErrorCodes.GATEWAY), 'the collector gone mid-call: 502 at replica A');
  await waitFor(async () => !(await a.store.get("SELECT 1 AS x FROM site_channels WHERE site = 'site-r'")), 10_000, 'presence withdrawn');
  const t1 = Date.now();
  const nobody = await a.c2d.invoke(call('r-1', 'hello')).catch((e: unknown) => e);
  t.ok(isEdgetwinError(nobody, ErrorCodes.DEVICE_NOT_ONLINE), 'no replica holds the site: 404');
  t.ok(Date.now() - t1 < 1000, 'at once (connectTimeout 0)');
});
