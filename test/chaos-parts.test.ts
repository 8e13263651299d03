import { connect, createServer, type Socket } from 'node:net';
import t from 'tap';
import { FaultyTcpProxy } from '../bench/chaos/tcp-proxy.js';
import { makeSchedule } from '../bench/chaos/schedule.js';
import { waitFor } from './helpers/util.js';

async function echoServer(): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const s = createServer((c) => {
    sockets.add(c);
    c.on('close', () => sockets.delete(c));
    c.pipe(c);
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return {
    port: (s.address() as { port: number }).port,
    close: () => {
      for (const c of sockets) c.destroy();
      return new Promise((r) => s.close(() => r()));
    },
  };
}

function client(port: number): Promise<{ sock: Socket; received: () => string; closed: () => boolean }> {
  return new Promise((resolve, reject) => {
    let data = '';
    let closed = false;
    const sock = connect(port, '127.0.0.1', () => resolve({ sock, received: () => data, closed: () => closed }));
    sock.on('data', (d) => (data += d.toString()));
    sock.on('close', () => (closed = true));
    sock.on('error', () => (closed = true));
    sock.once('error', reject);
  });
}

t.test('the proxy passes, delays, black-holes, cuts and partitions', async (t) => {
  const echo = await echoServer();
  const proxy = new FaultyTcpProxy(echo.port);
  const port = await proxy.start();
  t.teardown(async () => {
    await proxy.stop();
    await echo.close();
  });

  const a = await client(port);
  a.sock.write('hello');
  await waitFor(() => a.received() === 'hello', 2000, 'echo through the proxy');

  proxy.mode = 'blackhole';
  a.sock.write('lost');
  await new Promise((r) => setTimeout(r, 150));
  t.equal(a.received(), 'hello', 'a black hole swallows traffic but keeps the connection');
  t.notOk(a.closed());

  proxy.mode = 'pass';
  proxy.delayMs = 100;
  const sent = Date.now();
  a.sock.write('!');
  await waitFor(() => a.received() === 'hello!', 2000, 'delayed echo');
  t.ok(Date.now() - sent >= 190, 'both directions were delayed');
  proxy.delayMs = 0;

  t.equal(proxy.cutAll(), 1);
  await waitFor(() => a.closed(), 2000, 'client sees the cut');

  proxy.mode = 'partition';
  const b = await client(port);
  await waitFor(() => b.closed(), 2000, 'a partition refuses new connections');
  proxy.mode = 'pass';
  const c = await client(port);
  c.sock.write('back');
  await waitFor(() => c.received() === 'back', 2000, 'healed');
  c.sock.destroy();
});

t.test('the same seed gives the same schedule; every asked kind occurs; the tail stays quiet', async (t) => {
  const opts = { seed: 42, runMs: 300_000, agents: 20, perMinute: 6, kinds: ['kill_agent', 'kill_collector', 'cloud_outage', 'partition'] as const, cloudOutageMs: 60_000 };
  const a = makeSchedule(opts);
  t.same(makeSchedule(opts), a);
  t.notSame(makeSchedule({ ...opts, seed: 43 }), a);
  for (const k of opts.kinds) t.ok(a.some((f) => f.kind === k), `${k} occurs`);
  t.ok(a.every((f) => f.atMs <= 240_000), 'no fault starts in the last fifth');
  t.ok(a.filter((f) => f.kind === 'kill_agent').every((f) => f.target! >= 0 && f.target! < 20));
  t.ok(a.every((f, i) => i === 0 || f.atMs >= a[i - 1]!.atMs), 'sorted by time');
});
