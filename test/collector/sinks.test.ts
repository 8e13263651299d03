/**
 * Several sinks at once, each with its own durable cursor: a stalled sink neither blocks the others
 * nor loses anything, and spool rows go only when every sink has them. The file sink (JSON lines,
 * rotated, crash-safe) and the HTTP ingest sink's wire behaviour (keep-alive pool, gzip, one
 * idempotency key per batch, kept across retries, per-record rejections).
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import t from 'tap';
import type { Sink, SinkBatch, SinkWriteResult } from '../../collector/sinks/sink.js';
import { FileSink } from '../../collector/sinks/file.js';
import { topics } from '../../common/wire/record.js';
import { batch, connectOnce, metric, publishQos1, startRegistryCollector } from '../helpers/collector.js';
import { tempDir, waitFor } from '../helpers/stack.js';

/** A sink that records what it gets and can be stalled (a slow or unreachable destination). */
class GateSink implements Sink {
  readonly received: string[] = [];
  private open = true;
  private waiters: (() => void)[] = [];
  constructor(readonly name: string) {}
  stall(): void {
    this.open = false;
  }
  release(): void {
    this.open = true;
    for (const w of this.waiters.splice(0)) w();
  }
  async connect(): Promise<void> {}
  async write(b: SinkBatch): Promise<SinkWriteResult> {
    while (!this.open) await new Promise<void>((r) => this.waiters.push(r));
    for (const m of b.messages) this.received.push(m.payload);
    return {};
  }
  /** Like a destination that hangs: closing does not unblock a write in flight. */
  async close(): Promise<void> {}
}

/** A stand-in cloud ingest: answers 404 to everything else (the twin feed polls the same URL). */
function ingestServer<B>(handle: (req: IncomingMessage, res: ServerResponse, body: B) => void): Server {
  return createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/v1/ingest') return void res.writeHead(404).end();
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      handle(req, res, JSON.parse((req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw).toString()) as B);
    });
  });
}

t.test('a stalled sink blocks no other sink, and holds its rows until it catches up', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const fast = new GateSink('fast');
  const slow = new GateSink('slow');
  const file = new FileSink(
    { enabled: true, dir: join(dir, 'out'), maxFileBytes: 1 << 20, maxFileAgeMs: 3_600_000, fsync: true },
    'site-1',
  );
  slow.stall();
  const opts = { auth: { mode: 'open' }, runner: { stopGraceMs: 200 } };
  let c = await startRegistryCollector(`${dir}/c`, opts, { sinks: [fast, slow, file] });
  let { client } = await connectOnce(`mqtt://127.0.0.1:${c.mqttPort}`, { clientId: 'multi-1' });
  const sent: string[] = [];
  for (let i = 1; i <= 60; i++) {
    const p = batch('multi-1', 1, i);
    await publishQos1(client, topics.telemetry('multi-1'), p);
    sent.push(p);
  }
  await waitFor(() => fast.received.length === 60, 5000, 'fast sink has everything');
  await waitFor(() => file.files().length === 0 && readdirSync(join(dir, 'out')).length === 1, 5000, 'file sink writing');
  t.same(fast.received, sent, 'the fast sink got every message while the slow one was stuck');
  t.equal(slow.received.length, 0, 'the slow sink got nothing yet');
  t.equal(c.spool.depth().rows, 60, 'rows stay in the spool until every sink has them');
  t.equal(await metric(c.registry, 'edgetwin_sink_lag_rows', { sink: 'fast' }), 0, 'lag is per sink');

  // Restart with the slow sink still stuck: each sink resumes from its own durable cursor.
  client.end(true);
  await c.stop();
  t.equal(slow.received.length, 0, 'the hung sink was abandoned at shutdown');
  const fast2 = new GateSink('fast');
  const slow2 = new GateSink('slow');
  const file2 = new FileSink(
    { enabled: true, dir: join(dir, 'out'), maxFileBytes: 1 << 20, maxFileAgeMs: 3_600_000, fsync: true },
    'site-1',
  );
  slow.release();
  await waitFor(() => slow.received.length > 0, 5000, 'the hung write to complete');
  t.ok(slow.received.length > 0, 'its hung write completes late, after the shutdown; its cursor is not recorded');
  c = await startRegistryCollector(`${dir}/c`, opts, { sinks: [fast2, slow2, file2] });
  ({ client } = await connectOnce(`mqtt://127.0.0.1:${c.mqttPort}`, { clientId: 'multi-1' }));
  const more = batch('multi-1', 1, 61);
  await publishQos1(client, topics.telemetry('multi-1'), more);
  await waitFor(() => slow2.received.length === 61 && fast2.received.length === 1, 5000, 'slow sink caught up');
  t.same(slow2.received, [...sent, more], 'after the restart the slow sink gets everything, in order');
  t.same(fast2.received, [more], 'the fast sink does not get again what it already had');
  await waitFor(() => c.spool.depth().rows === 0, 5000, 'spool released once all sinks passed');
  client.end(true);
  await c.stop();
  const lines = file2.files().flatMap((f) => readFileSync(f, 'utf8').trimEnd().split('\n'));
  t.same(lines, [...sent, more], 'the file sink has every message as one JSON line, in order');
});

t.test('file sink: rotation by size and age, crash leftovers recovered', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const out = join(dir, 'out');
  mkdirSync(out);
  // What a kill -9 mid-write leaves: an open .part file with a torn last line.
  writeFileSync(join(out, 'edgetwin-s-2026-01-01T00-00-00-000Z-0.jsonl.part'), '{"a":1}\n{"b":2}\n{"c":');
  const sink = new FileSink({ enabled: true, dir: out, maxFileBytes: 1024, maxFileAgeMs: 1000, fsync: true }, 's');
  await sink.connect();
  t.same(
    readFileSync(join(out, 'edgetwin-s-2026-01-01T00-00-00-000Z-0.jsonl'), 'utf8'),
    '{"a":1}\n{"b":2}\n',
    'a leftover .part is cut at its last full line and published',
  );
  const payloads = Array.from({ length: 40 }, (_, i) => batch('f-1', 1, i + 1));
  for (let i = 0; i < 40; i += 4) {
    await sink.write({
      batchId: `b${i}`,
      siteId: 's',
      messages: payloads.slice(i, i + 4).map((p, k) => ({ id: i + k + 1, device: 'f-1', payload: p })),
    });
  }
  await sink.write({ batchId: 'pretty', siteId: 's', messages: [{ id: 99, device: 'f-1', payload: '{\n  "v": 1\n}' }] });
  // About time: maxFileAgeMs is 1000, so the next write rotates the file by age.
  await new Promise((r) => setTimeout(r, 1100));
  await sink.write({ batchId: 'late', siteId: 's', messages: [{ id: 100, device: 'f-1', payload: '{"late":true}' }] });
  await sink.close();
  const files = sink.files().filter((f) => !f.includes('2026-01-01'));
  t.ok(files.length >= 4, `rotated into ${files.length} files by size`);
  t.ok(
    files.every((f) => readFileSync(f).length <= 1024 + 4 * 200),
    'each file stops growing once over maxFileBytes',
  );
  const lines = files.flatMap((f) => readFileSync(f, 'utf8').trimEnd().split('\n'));
  t.same(lines, [...payloads, '{   "v": 1 }', '{"late":true}'], 'every message once, in order, one line each');
  t.equal(
    readFileSync(files[files.length - 1]!, 'utf8'),
    '{"late":true}\n',
    'a file older than maxFileAgeMs is closed and a new one started',
  );
  t.equal(readdirSync(out).filter((n) => n.endsWith('.part')).length, 0, 'close() publishes the open file');
});

t.test('HTTP ingest sink: keep-alive, gzip, idempotency key per batch kept across retries, partial success', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const requests: { key: string; batchId: string; encoding: string | undefined; n: number; socket: string; auth: string | undefined }[] =
    [];
  let failNext = 0;
  const server = ingestServer<{ batchId: string; messages: unknown[] }>((req, res, body) => {
    requests.push({
      key: String(req.headers['idempotency-key']),
      batchId: body.batchId,
      encoding: req.headers['content-encoding'],
      n: body.messages.length,
      socket: `${req.socket.remotePort}`,
      auth: req.headers.authorization,
    });
    if (failNext > 0) {
      failNext--;
      res.writeHead(503, { 'retry-after': '0' }).end('busy');
      return;
    }
    // Refuse the second message of every batch on its own (bad data): counted, not retried. Malformed
    // entries beside it (the same index again, out of range, not an integer) change nothing.
    const junk = [{ index: 1, code: 'EDGETWIN_ERR_BAD_PAYLOAD' }, { index: 99, code: 'x' }, { index: '0' }, { index: -1 }, null];
    res.writeHead(200, { 'content-type': 'application/json' }).end(
      JSON.stringify({
        batchId: body.batchId,
        rejected: body.messages.length > 1 ? [{ index: 1, code: 'EDGETWIN_ERR_BAD_PAYLOAD', message: 'bad' }, ...junk] : [],
      }),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const c = await startRegistryCollector(dir, {
    auth: { mode: 'open' },
    sinks: { http: { enabled: true, url, token: 'site-token-0123456789', connections: 2 } },
    runner: { batchMaxMessages: 10, flushIntervalMs: 20 },
  });
  const { client } = await connectOnce(`mqtt://127.0.0.1:${c.mqttPort}`, { clientId: 'http-1' });
  failNext = 2;
  for (let round = 0; round < 5; round++) {
    await Promise.all(
      Array.from({ length: 10 }, (_, i) => publishQos1(client, topics.telemetry('http-1'), batch('http-1', 1, round * 10 + i + 1))),
    );
    await waitFor(() => c.spool.depth().rows === 0, 10_000, `round ${round} delivered`);
  }
  t.ok(
    requests.every((r) => r.encoding === 'gzip'),
    'bodies are gzip-compressed',
  );
  t.ok(
    requests.every((r) => r.key === r.batchId && r.key.length > 0),
    'idempotency-key header = the envelope batchId',
  );
  t.ok(
    requests.every((r) => r.auth === 'Bearer site-token-0123456789'),
    'site token sent as bearer',
  );
  t.same(
    requests.slice(0, 3).map((r) => r.key),
    [requests[0]!.key, requests[0]!.key, requests[0]!.key],
    'a retried batch keeps its idempotency key',
  );
  const distinctKeys = new Set(requests.map((r) => r.key));
  t.equal(distinctKeys.size, requests.length - 2, 'every other batch has a key of its own');
  t.ok(new Set(requests.map((r) => r.socket)).size <= 2, `keep-alive: ${requests.length} requests over ≤ 2 connections`);
  const multi = requests.slice(2).filter((r) => r.n > 1).length;
  t.equal(await metric(c.registry, 'edgetwin_sink_rejected_total', { sink: 'http' }), multi, 'per-record rejections counted, not retried');
  t.equal(await metric(c.registry, 'edgetwin_sink_failures_total', { sink: 'http' }), 2, 'the two 503s were retried');
  client.end(true);
  await c.stop();
  server.close();
});

t.test(
  'HTTP ingest sink: a batch refused for good (413, 400, 409, 422) is split; only the bad messages are dead-lettered, with the code',
  async (t) => {
    const { dir, cleanup } = tempDir();
    t.teardown(cleanup);
    const stored: number[] = [];
    const statuses: number[] = [];
    let unauthorizedNext = 1;
    // The cloud's refusals of a whole batch, as its error handler writes them: 409 when every message is
    // for a device another site owns (D1), 422 when a message is over a limit (metrics per device, depth).
    const refusal: Record<number, [number, string]> = {
      13: [400, '{"code":"EDGETWIN_ERR_400"}'], // not a code of the table (a proxy's answer): BAD_PAYLOAD
      17: [409, '{"code":"EDGETWIN_ERR_DEVICE_CLAIMED","message":"device split-1 belongs to another site"}'],
      23: [422, '{"code":"EDGETWIN_ERR_LIMIT_EXCEEDED","message":"more than 500 metrics"}'],
    };
    const server = ingestServer<{ messages: { readings: { seq: number }[] }[] }>((_req, res, body) => {
      const seqs = body.messages.map((m) => m.readings[0]!.seq);
      // A wrong token is fixed by an operator, not by dropping data: retried, never dead-lettered.
      const bad = seqs.find((s) => refusal[s]);
      const [status, text] = unauthorizedNext-- > 0 ? [401, '{}'] : seqs.length > 4 ? [413, '{}'] : bad ? refusal[bad]! : [200, '{}'];
      statuses.push(status);
      if (status === 200) stored.push(...seqs);
      res.writeHead(status, { 'content-type': 'application/json' }).end(text);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    t.teardown(() => server.close());
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    const c = await startRegistryCollector(dir, {
      auth: { mode: 'open' },
      sinks: { http: { enabled: true, url } },
      runner: { batchMaxMessages: 10, flushIntervalMs: 200, backoff: { initialMs: 20, maxMs: 50 } },
    });
    const { client } = await connectOnce(`mqtt://127.0.0.1:${c.mqttPort}`, { clientId: 'split-1' });
    for (let seq = 1; seq <= 30; seq++) await publishQos1(client, topics.telemetry('split-1'), batch('split-1', 1, seq));
    await waitFor(() => c.spool.depth().rows === 0, 20_000, 'spool drained past the refused messages');
    t.same(
      stored,
      Array.from({ length: 30 }, (_, i) => i + 1).filter((s) => !refusal[s]),
      'everything but the bad messages delivered, once, in order',
    );
    for (const s of [413, 400, 409, 422]) t.ok(statuses.includes(s), `the ${s} was met (${statuses.join(',')})`);
    t.equal(statuses[0], 401, 'the 401 came first');
    t.equal(
      await metric(c.registry, 'edgetwin_sink_failures_total', { sink: 'http' }),
      1,
      'the 401 counts as a failed attempt and is retried',
    );
    for (const code of ['BAD_PAYLOAD', 'DEVICE_CLAIMED', 'LIMIT_EXCEEDED']) {
      t.equal(
        await metric(c.registry, 'edgetwin_sink_rejected_total', { sink: 'http', code: `EDGETWIN_ERR_${code}` }),
        1,
        `one message refused for good with ${code}`,
      );
    }
    t.equal(
      await metric(c.registry, 'edgetwin_sink_rejected_total', { sink: 'http', code: 'EDGETWIN_ERR_PAYLOAD_TOO_LARGE' }),
      0,
      'no message was too large on its own',
    );
    const dead = readFileSync(join(dir, 'dead-letter', 'http.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { device: string; code: string; payload: string });
    t.same(
      dead.map((d) => [d.device, (JSON.parse(d.payload) as { readings: { seq: number }[] }).readings[0]!.seq, d.code]),
      [
        ['split-1', 13, 'EDGETWIN_ERR_BAD_PAYLOAD'],
        ['split-1', 17, 'EDGETWIN_ERR_DEVICE_CLAIMED'],
        ['split-1', 23, 'EDGETWIN_ERR_LIMIT_EXCEEDED'],
      ],
      'three dead letters, each with the code the cloud gave (a code outside the table is BAD_PAYLOAD)',
    );
    t.same(JSON.parse(dead[0]!.payload), JSON.parse(batch('split-1', 1, 13)), 'the dead letter keeps the payload as the device sent it');
    client.end(true);
    await c.stop();
  },
);

t.test('HTTP ingest sink: a cloud that never answers costs one timeoutMs per attempt, and close() ends a hung write', async (t) => {
  const held: ServerResponse[] = [];
  const server = createServer((req, res) => {
    req.resume();
    held.push(res); // accepted, never answered
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => {
    for (const r of held) r.destroy();
    server.close();
  });
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const { HttpIngestSink } = await import('../../collector/sinks/http-ingest.js');
  const { RetryableSinkError } = await import('../../common/errors.js');
  const sink = new HttpIngestSink({ enabled: true, url, gzip: true, timeoutMs: 300, connections: 1 });
  await sink.connect();
  const b = { batchId: 'b-1', siteId: 's', messages: [{ id: 1, device: 'd-1', payload: batch('d-1', 1, 1) }] };
  const err = await sink.write(b).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof RetryableSinkError, 'a timeout is retryable');
  t.match(String((err as Error).message), /did not complete within 300 ms/);
  // A deadline far beyond the test's own timeout: only close() can end this write.
  const slow = new HttpIngestSink({ enabled: true, url, gzip: true, timeoutMs: 3_600_000, connections: 1 });
  await slow.connect();
  const reached = held.length;
  const hung = slow.write(b).then(
    () => 'answered',
    (e: unknown) => (e instanceof RetryableSinkError ? 'ended' : 'other'),
  );
  await waitFor(() => held.length > reached, 5000, 'the write to reach the server that never answers');
  await slow.close();
  await sink.close();
  t.equal(await hung, 'ended', 'close() ends the write in flight (the runner is stopping)');
});
