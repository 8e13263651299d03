/**
 * Local ingest over HTTP (`POST /v1/readings` on 127.0.0.1): a 200 means the readings are in the
 * outbox; bad readings are refused by index with EDGETWIN_ERR_BAD_READING while the good ones of
 * the same request are kept; bad JSON, empty and oversize bodies are refused whole; a full outbox
 * (whenFull=block) answers 503 and keeps nothing.
 */
import t from 'tap';
import { request } from 'undici';
import type { Agent } from '../../agent/agent.js';
import { LANE_NORMAL, LANE_PRIORITY } from '../../common/outbox/outbox.js';
import { TestBroker, startAgent, tempDir, waitFor } from '../helpers/stack.js';

async function post(agent: Agent, body: unknown, raw = false): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await request(`http://127.0.0.1:${agent.httpPort}/v1/readings`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: raw ? (body as string) : JSON.stringify(body),
  });
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
}

const reading = (metric: string, value: number, extra: object = {}): object => ({ metric, value, unit: 'A', ...extra });

t.test('POST /v1/readings answers after the commit, refusing bad readings by index', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  // Nothing listens on port 1: what is accepted stays in the outbox, where the test can see it.
  const agent = await startAgent(`${dir}/agent`, 'http-1', 1, undefined, {
    twin: { enabled: false },
    outbox: { flushIntervalMs: 60_000 },
    sources: { simulator: { enabled: false }, http: { enabled: true, port: 0, maxBodyBytes: 4096 } },
  });
  t.teardown(() => agent.stop(100));
  t.ok(agent.httpPort, 'listening on a port of its own');

  let r = await post(agent, reading('current', 4.2, { ts: 1_700_000_000_000 }));
  t.same(r, { status: 200, body: { accepted: 1, rejected: [] } });
  t.equal(agent.outbox.depth().rows, 1, 'durable when the 200 arrives (the flush timer would wait a minute)');
  t.same(JSON.parse(agent.outbox.read(LANE_NORMAL, 0, 10)[0]!.body), {
    ts: 1_700_000_000_000,
    metric: 'current',
    value: 4.2,
    unit: 'A',
    seq: 1,
  });

  r = await post(agent, [reading('a', 1), { metric: 'b', value: 'two', unit: 'A' }, reading('c', 3, { alert: true })]);
  t.equal(r.status, 200);
  t.equal(r.body['accepted'], 2);
  t.same(r.body['rejected'], [{ index: 1, code: 'EDGETWIN_ERR_BAD_READING', message: 'readings[1].value must be number' }]);
  t.equal(agent.outbox.read(LANE_PRIORITY, 0, 10).length, 1, 'the alert went to the priority lane');

  r = await post(agent, { readings: [reading('d', 4), reading('e', 5)] });
  t.same(r.body, { accepted: 2, rejected: [] }, '{"readings": [...]} form');
  t.equal(agent.outbox.depth().rows, 5);

  r = await post(agent, '{"metric": ', true);
  t.equal(r.status, 400);
  t.match(r.body, { code: 'EDGETWIN_ERR_BAD_READING', message: /body is not valid JSON/ });
  r = await post(agent, { readings: [] });
  t.match(r, { status: 400, body: { code: 'EDGETWIN_ERR_BAD_READING', message: 'no readings' } });
  r = await post(agent, [{ metric: 'x' }]);
  t.match(r, { status: 400, body: { code: 'EDGETWIN_ERR_BAD_READING', rejected: [{ index: 0 }] } }, 'nothing usable: 400');
  r = await post(
    agent,
    Array.from({ length: 300 }, (_, i) => reading('big', i)),
  );
  t.match(r, { status: 413, body: { code: 'EDGETWIN_ERR_PAYLOAD_TOO_LARGE' } });
  const get = await request(`http://127.0.0.1:${agent.httpPort}/v1/readings`);
  t.equal(get.statusCode, 405);
  await get.body.dump();
  const other = await request(`http://127.0.0.1:${agent.httpPort}/v1/other`, { method: 'POST', body: '{}' });
  t.equal(other.statusCode, 404);
  await other.body.dump();
  t.equal(agent.outbox.depth().rows, 5, 'refused requests stored nothing');
  t.match(await agent.registry.metrics(), /edgetwin_agent_rejected_total\{source="http-readings",code="EDGETWIN_ERR_BAD_READING"[^}]*\} 4/);
});

t.test('a full outbox with whenFull=block answers 503 and keeps nothing of the request', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const agent = await startAgent(`${dir}/agent`, 'http-2', 1, undefined, {
    twin: { enabled: false },
    outbox: { maxBytes: 262144, whenFull: 'block' },
    sources: { simulator: { enabled: false }, http: { enabled: true, port: 0 } },
  });
  t.teardown(() => agent.stop(100));
  let r: Awaited<ReturnType<typeof post>> | undefined;
  let sent = 0;
  for (let i = 0; i < 200; i++) {
    r = await post(
      agent,
      Array.from({ length: 100 }, (_, k) => reading('fill', i * 100 + k)),
    );
    if (r.status !== 200) break;
    sent += 100;
  }
  t.match(r, { status: 503, body: { code: 'EDGETWIN_ERR_STORE_FULL' } }, 'refused once full');
  t.equal(agent.outbox.depth().rows, sent, 'exactly the acknowledged readings are stored, none of the refused request');
  t.equal(agent.identity.nextSeq - 1, sent, 'no seq was spent on the refused readings');
});

t.test('accepted readings reach the collector', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const broker = new TestBroker();
  await broker.start();
  const agent = await startAgent(`${dir}/agent`, 'http-3', broker.port, undefined, {
    twin: { enabled: false },
    sources: { simulator: { enabled: false }, http: { enabled: true, port: 0 } },
  });
  t.teardown(async () => {
    await agent.stop(100);
    await broker.stop();
  });
  for (let i = 0; i < 10; i++) t.equal((await post(agent, reading('i', i))).status, 200);
  await waitFor(() => broker.readings('http-3').length === 10, 5000, 'ten readings at the broker');
  t.same(
    broker.readings('http-3').map((r) => r.value),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  );
});
