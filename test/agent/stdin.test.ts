/**
 * JSON lines on the agent process's stdin: single readings, arrays and `{"readings": [...]}`
 * batches go through; each bad line is refused whole with EDGETWIN_ERR_BAD_READING and its line
 * number, counted, and skipped without costing the lines after it. End of input finishes the
 * source, and the agent stays up and healthy.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { spawnDaemon } from '../helpers/cli.js';
import { TestBroker, tempDir, waitFor } from '../helpers/stack.js';

const good = (metric: string, value: number, extra: object = {}): object => ({ metric, value, unit: 'bar', ...extra });

t.test('good lines flow, bad lines are reported by number, counted and skipped', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const broker = new TestBroker();
  await broker.start();
  t.teardown(() => broker.stop());
  const cfg = join(dir, 'agent.json');
  writeFileSync(
    cfg,
    JSON.stringify({
      deviceId: 'pipe-1',
      stateDir: join(dir, 'agent'),
      uplink: { url: broker.url, batchMaxDelayMs: 10 },
      sources: { simulator: { enabled: false }, jsonLines: { enabled: true, maxLineBytes: 200 } },
      twin: { enabled: false },
      scoring: { enabled: false },
    }),
  );
  const agent = spawnDaemon(['agent', '--config', cfg], {}, { stdin: 'pipe' });
  t.teardown(() => void agent.kill('SIGKILL'));
  const ready = await agent.ready;
  const lines = [
    JSON.stringify(good('p1', 1, { ts: 1_700_000_000_000 })), // 1
    'not json at all', // 2 ✗
    JSON.stringify([good('p2', 2), good('p3', 3)]), // 3
    JSON.stringify({ readings: [good('p4', 4), { metric: 'bad metric!', value: 5, unit: 'bar' }] }), // 4 ✗ whole line
    JSON.stringify({ metric: 'p5', value: '12', unit: 'bar' }), // 5 ✗
    JSON.stringify(good('p6', 6, { note: 'x'.repeat(300) })), // 6 ✗ too long
    '', // 7 (blank: skipped, not an error)
    JSON.stringify({ readings: [good('p8', 8), good('p9', 9), good('p10', 10, { alert: true })] }), // 8
    JSON.stringify(good('p11', 11, { ts: '2026-01-02T03:04:05Z' })), // 9
    JSON.stringify(good('p12', 12, { foo: 1 })), // 10 ✗ unknown field
  ];
  agent.stdin!.end(`${lines.join('\n')}\n`);

  await waitFor(() => broker.readings('pipe-1').length >= 7, 10_000, 'the good readings at the broker');
  // About time: a wrongly accepted line would reach the broker within this window (checked below by t.same).
  await new Promise((r) => setTimeout(r, 200));
  const got = broker.readings('pipe-1').sort((a, b) => a.seq - b.seq);
  t.same(
    got.filter((r) => !r.alert).map((r) => [r.metric, r.value]),
    [
      ['p1', 1],
      ['p2', 2],
      ['p3', 3],
      ['p8', 8],
      ['p9', 9],
      ['p11', 11],
    ],
    'telemetry of the good lines, in line order, with its values',
  );
  t.same(
    got.map((r) => r.metric).sort(),
    ['p1', 'p10', 'p11', 'p2', 'p3', 'p8', 'p9'],
    'exactly the readings of the good lines, once each',
  );
  t.same(
    got.find((r) => r.metric === 'p10'),
    { epoch: 1, seq: got.find((r) => r.metric === 'p10')!.seq, metric: 'p10', value: 10, alert: true },
    'alert flag kept (priority lane)',
  );

  const out = agent.output();
  const warned = out
    .split('\n')
    .filter((l) => l.includes('EDGETWIN_ERR_BAD_READING'))
    .map((l) => JSON.parse(l) as { line: number; msg: string; code: string });
  t.same(
    warned.map((w) => w.line),
    [2, 4, 5, 6, 10],
    'one clear error per bad line, with its number',
  );
  t.match(warned[0]!.msg, /^stdin line 2: not valid JSON/);
  t.match(warned[1]!.msg, /^stdin line 4: readings\[1\]\.metric must match pattern/);
  t.match(warned[2]!.msg, /^stdin line 5: reading\.value must be number/);
  t.match(warned[3]!.msg, /^stdin line 6: longer than 200 bytes/);
  t.match(warned[4]!.msg, /^stdin line 10: reading must NOT have additional properties "foo"/);

  const admin = `http://127.0.0.1:${String(ready['adminPort'])}`;
  const metrics = await (await request(`${admin}/metrics`)).body.text();
  t.match(
    metrics,
    /edgetwin_agent_rejected_total\{source="json-lines",code="EDGETWIN_ERR_BAD_READING"[^}]*\} 5\n/,
    'five refused lines counted',
  );
  await waitFor(
    async () =>
      ((await (await request(`${admin}/healthz`)).body.json()) as { sources: Record<string, { state: string }> }).sources['json-lines']
        ?.state === 'finished',
    5000,
    'end of input finishes the source',
  );
  const health = await request(`${admin}/healthz`);
  t.equal(health.statusCode, 200, 'and the agent stays healthy');
  t.equal(agent.exitCode, null, 'and running');
  agent.kill('SIGTERM');
  t.equal(await agent.exited, 0);
});
