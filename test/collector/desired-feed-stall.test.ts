/**
 * The collector's desired feed behind a broken L4 front: a real TCP server on loopback that
 * accepts and closes at once (a proxy whose backend is down) or accepts and never answers, then
 * forwards to a real cloud. Desired changes must resume once the cloud is reachable, the failure
 * must show in health and metrics, and stop() must return while a poll is wedged.
 *
 * undici wedges only a request whose socket closes while its HTTP parser (WebAssembly, compiled
 * when undici loads) is still compiling, which is what a collector starting during an outage
 * meets; so the first test runs a real collector daemon, whose feed polls right after start.
 */
import { writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import t, { type Test } from 'tap';
import { CloudDesiredFeed } from '../../collector/twin/desired-feed.js';
import type { DesiredUpdate } from '../../collector/twin/twin-docs-store.js';
import { createRegistry } from '../../common/metrics.js';
import type { Cloud } from '../../cloud/cloud.js';
import { spawnDaemon } from '../helpers/cli.js';
import { silent, startCloud, tempDir, waitFor } from '../helpers/stack.js';

type Mode = 'close' | 'silent' | 'forward';

/** A TCP front whose behaviour can be switched while it runs; it counts the connections it accepted. */
class Front {
  mode: Mode;
  accepted = 0;
  targetPort = 0;
  readonly sockets = new Set<Socket>();
  private server: Server | undefined;
  constructor(mode: Mode) {
    this.mode = mode;
  }
  async start(): Promise<number> {
    const server = createServer((s) => {
      this.accepted++;
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => undefined);
      if (this.mode === 'close') return void s.destroy();
      if (this.mode === 'silent') return;
      const up = connect(this.targetPort, '127.0.0.1');
      up.on('error', () => s.destroy());
      s.pipe(up).pipe(s);
    });
    this.server = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as { port: number }).port;
  }
  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}

/** Makes the cloud know `device` at `site-1` by ingesting one reading for it. */
async function register(cloud: Cloud, device: string): Promise<void> {
  const env = {
    v: 1,
    batchId: `b-${device}`,
    site: 'site-1',
    messages: [{ v: 1, device, epoch: 1, readings: [{ seq: 1, ts: Date.now(), metric: 'm0', value: 1, unit: 'u' }] }],
  };
  const res = await fetch(`${cloud.url}/v1/ingest`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(env),
  });
  if (res.status >= 300) throw new Error(`ingest: ${res.status} ${await res.text()}`);
}

/** Changes desired state on the cloud with Node's built-in fetch, so this process's undici stays cold for the feed. */
async function patchDesired(cloud: Cloud, device: string, patch: object): Promise<number> {
  const res = await fetch(`${cloud.url}/v1/twins/${device}/desired`, {
    method: 'PATCH',
    headers: { 'content-type': 'application/json', 'if-match': '*' },
    body: JSON.stringify(patch),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`PATCH desired: ${res.status} ${text}`);
  return (JSON.parse(text) as { desired: { $version: number } }).desired.$version;
}

function feedVia(port: number): { feed: CloudDesiredFeed; applied: DesiredUpdate[]; registry: ReturnType<typeof createRegistry> } {
  const applied: DesiredUpdate[] = [];
  let cursor = 0;
  const registry = createRegistry('collector');
  const feed = new CloudDesiredFeed(
    { url: `http://127.0.0.1:${port}`, siteId: 'site-1', pollMs: 50, timeoutMs: 1000, backoff: { initialMs: 50, maxMs: 200 } },
    {
      log: silent(),
      registry,
      cursor: () => cursor,
      apply: (updates, next) => {
        applied.push(...updates);
        cursor = next;
      },
    },
  );
  return { feed, applied, registry };
}

/** stop() within `ms`, or a clear failure instead of a hung test. */
async function stopsWithin(feed: CloudDesiredFeed, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([
    feed.stop().then(() => true),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
  ]);
  clearTimeout(timer);
  return r;
}

async function resumesBehind(t: Test, mode: Mode): Promise<void> {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startCloud(`${dir}/cloud`);
  t.teardown(() => cloud.stop());
  await register(cloud, 'pump-1');
  const front = new Front(mode);
  const port = await front.start();
  front.targetPort = Number(new URL(cloud.url).port);
  t.teardown(() => front.stop());

  const { feed, applied, registry } = feedVia(port);
  feed.start();
  let stopped = false;
  t.teardown(async () => {
    if (!stopped) await stopsWithin(feed, 5000);
  });
  await waitFor(() => front.accepted >= 1, 10_000, 'the feed to reach the front');
  await waitFor(() => !feed.healthy, 15_000, 'the feed to report the wedged poll as failing');
  const metrics = await registry.metrics();
  t.match(metrics, /edgetwin_twin_feed_failing\S* 1/, 'the failing gauge is set');
  t.match(metrics, /edgetwin_twin_feed_polls_total\{result="(timeout|error)"[^}]*\} [1-9]/, 'the failed poll is counted');

  front.mode = 'forward';
  const version = await patchDesired(cloud, 'pump-1', { samplingIntervalMs: 750 });
  await waitFor(
    () => applied.some((u) => u.device === 'pump-1' && u.version === version),
    20_000,
    'the desired change to reach the collector',
  );
  t.same(applied.find((u) => u.version === version)?.desired, { samplingIntervalMs: 750 }, 'desired changes resume once the cloud answers');
  await waitFor(() => feed.healthy, 10_000, 'the feed to be healthy again');
  t.match(await registry.metrics(), /edgetwin_twin_feed_failing\S* 0/, 'the failing gauge is cleared');

  // A poll wedged at the moment of shutdown must not hold stop() up.
  front.mode = 'silent';
  const before = front.accepted;
  await patchDesired(cloud, 'pump-1', { samplingIntervalMs: 500 });
  for (const s of [...front.sockets]) s.destroy();
  await waitFor(() => front.accepted > before, 10_000, 'the feed to open a new connection to the silent front');
  stopped = true;
  t.ok(await stopsWithin(feed, 5000), 'stop() returns while a poll hangs');
}

t.test('a collector that starts behind a front that accepts and closes: desired changes resume, shutdown is clean', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startCloud(`${dir}/cloud`);
  t.teardown(() => cloud.stop());
  await register(cloud, 'pump-1');
  const front = new Front('close');
  const port = await front.start();
  front.targetPort = Number(new URL(cloud.url).port);
  t.teardown(() => front.stop());

  const cfg = {
    siteId: 'site-1',
    stateDir: `${dir}/collector`,
    mqtt: { port: 0 },
    admin: { port: 0 },
    sinks: { http: { url: `http://127.0.0.1:${port}` } },
    twin: { desiredPollMs: 100, feedTimeoutMs: 1000, backoff: { initialMs: 50, maxMs: 200 } },
    // The model client has the same undici exposure (reported separately); off so this test is about the feed.
    models: { enabled: false },
  };
  writeFileSync(`${dir}/collector.json`, JSON.stringify(cfg));
  const child = spawnDaemon(['collector', '--config', `${dir}/collector.json`], { EDGETWIN_LOG_LEVEL: 'warn' });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const ready = await child.ready;
  const metrics = async (): Promise<string> => (await fetch(`http://127.0.0.1:${String(ready['adminPort'])}/metrics`)).text();
  await waitFor(() => front.accepted >= 1, 15_000, 'the collector feed to reach the front');
  await waitFor(
    async () => /edgetwin_twin_feed_polls_total\{result="(timeout|error)"[^}]*\} [1-9]/.test(await metrics()),
    20_000,
    'the collector to count a failed poll',
  );
  t.match(await metrics(), /edgetwin_twin_feed_failing\S* 1/, 'and to report the feed failing');

  front.mode = 'forward';
  await patchDesired(cloud, 'pump-1', { samplingIntervalMs: 750 });
  await waitFor(
    async () => /edgetwin_twin_feed_cursor\S* [1-9]/.test(await metrics()),
    30_000,
    'the desired change to reach the collector',
  );
  t.pass('desired changes reach the collector once the cloud answers');

  child.kill('SIGTERM');
  const code = await child.exited;
  t.equal(code, 0, 'the collector stops cleanly');
  t.notMatch(child.output(), /shutdown took too long/, 'without the forced exit');
});

t.test('a front that accepts and closes at once: the feed times out, retries, resumes, and stops', (t) => resumesBehind(t, 'close'));

t.test('a front that accepts and never answers: the feed times out, retries, resumes, and stops', (t) => resumesBehind(t, 'silent'));
