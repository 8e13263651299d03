/**
 * CSV replay: NAB files (`timestamp,value`) and multi-column files go through with their
 * timestamps, values, metric names and units; bad rows are refused by line number and skipped;
 * N× speed paces the rows; progress is a bar on a terminal and log lines otherwise.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import t from 'tap';
import { ReplayProgress } from '../../agent/sources/progress.js';
import { createLogger } from '../../common/log.js';
import { spawnDaemon } from '../helpers/cli.js';
import { TestBroker, startAgent, tempDir, waitFor } from '../helpers/stack.js';

const NAB_START = Date.UTC(2014, 3, 1, 0, 0, 0);

function nabFile(dir: string, rows: number): string {
  const lines = ['timestamp,value'];
  for (let i = 0; i < rows; i++) {
    const d = new Date(NAB_START + i * 300_000).toISOString().replace('T', ' ').slice(0, 19);
    lines.push(`${d},${(70 + i * 0.25).toFixed(2)}`);
  }
  lines.splice(11, 0, 'yesterday,71.0'); // line 12: bad timestamp
  lines.splice(21, 0, '2014-04-01 09:00:00,n/a'); // line 22: bad value
  const f = join(dir, 'machine_temperature.csv');
  writeFileSync(f, `${lines.join('\n')}\n`);
  return f;
}

t.test('a NAB file replays with its timestamps and values; bad rows are skipped and counted', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const broker = new TestBroker();
  await broker.start();
  const file = nabFile(dir, 50);
  const agent = await startAgent(`${dir}/agent`, 'nab-1', broker.port, undefined, {
    twin: { enabled: false },
    sources: { simulator: { enabled: false }, csvReplay: { enabled: true, file, speed: 0, unit: 'degF', progress: 'off' } },
  });
  t.teardown(async () => {
    await agent.stop(200);
    await broker.stop();
  });
  await waitFor(() => broker.readings('nab-1').length >= 50, 10_000, 'the replay');
  const got = broker.batches.flatMap((b) => b.readings).sort((a, b) => a.seq - b.seq);
  t.equal(got.length, 50, 'one reading per good row');
  t.same(
    got[0],
    { seq: 1, ts: NAB_START, metric: 'machine_temperature', value: 70, unit: 'degF' },
    'metric named after the file, NAB time read as UTC',
  );
  t.same(
    got.map((r) => r.ts),
    Array.from({ length: 50 }, (_, i) => NAB_START + i * 300_000),
    'original timestamps, in order',
  );
  t.equal(got[49]!.value, 70 + 49 * 0.25);
  const h = agent.health();
  t.match(h.sources['csv-replay'], { state: 'finished', rejected: 2 }, 'finished, two rows refused');
  t.match(await agent.registry.metrics(), /edgetwin_agent_rejected_total\{source="csv-replay",code="EDGETWIN_ERR_BAD_READING"[^}]*\} 2/);
});

t.test('multi-column CSV with a column map, epoch-second timestamps, replay time stamps and N× pacing', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const f = join(dir, 'pump.csv');
  writeFileSync(
    f,
    'time,flow,"head, m",ignored\n1700000000,1.5,10,x\n1700000001,1.6,11,x\n1700000002,1.7,12,x\n1700000003,1.8,13,x\n1700000004,1.9,14,x\n',
  );
  const broker = new TestBroker();
  await broker.start();
  const started = Date.now();
  const agent = await startAgent(`${dir}/agent`, 'pump-1', broker.port, undefined, {
    twin: { enabled: false },
    sources: {
      simulator: { enabled: false },
      csvReplay: {
        enabled: true,
        file: f,
        speed: 20,
        timestampColumn: 'time',
        timestamps: 'now',
        progress: 'off',
        columns: [
          { column: 'flow', metric: 'flow_rate', unit: 'm3/h' },
          { column: 'head, m', metric: 'head', unit: 'm' },
        ],
      },
    },
  });
  t.teardown(async () => {
    await agent.stop(200);
    await broker.stop();
  });
  await waitFor(() => broker.readings('pump-1').length >= 10, 10_000, 'the replay');
  const got = broker.batches.flatMap((b) => b.readings).sort((a, b) => a.seq - b.seq);
  t.same(
    got.map((r) => [r.metric, r.value, r.unit]),
    [1.5, 1.6, 1.7, 1.8, 1.9].flatMap((v, i) => [
      ['flow_rate', v, 'm3/h'],
      ['head', 10 + i, 'm'],
    ]),
    'mapped columns only, with their units',
  );
  t.ok(
    got.every((r) => r.ts >= started),
    'stamped with the replay time',
  );
  // Rows one second apart at 20× speed: the last is replayed at least 4 s / 20 after the first.
  t.ok(got[9]!.ts - got[0]!.ts >= 190, `paced: ${got[9]!.ts - got[0]!.ts} ms between first and last row`);
});

t.test('progress: a bar on a terminal, log lines otherwise', async (t) => {
  let drawn = '';
  const tty = { isTTY: true, columns: 80, write: (s: string) => (drawn += s) };
  const bar = new ReplayProgress('csv-replay x.csv', 1000, 'auto', createLogger('t', { level: 'silent' }), tty);
  bar.update(500, 5, true);
  bar.done(1000, 10);
  t.match(drawn, /\rcsv-replay x\.csv \[#+-+\]  50% 5 rows/, 'half-way bar');
  t.match(drawn, /\rcsv-replay x\.csv \[#+\] 100% 10 rows\n$/, 'full bar, then a newline');

  const lines: string[] = [];
  const sink = new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) });
  const plain = new ReplayProgress('csv-replay x.csv', 1000, 'auto', createLogger('t', { level: 'info' }, sink), {
    isTTY: false,
    write: () => t.fail('no bar when not a terminal'),
  });
  for (let b = 0; b <= 1000; b += 50) plain.update(b, b / 10);
  plain.done(1000, 100);
  t.same(
    lines.map((l) => (JSON.parse(l) as { percent: number }).percent),
    [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100],
    'one line per 10 %',
  );

  // And the real thing: the agent process with its output on a pipe logs plain progress lines.
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const file = nabFile(dir, 200);
  const cfg = join(dir, 'agent.json');
  writeFileSync(
    cfg,
    JSON.stringify({
      deviceId: 'csv-p',
      stateDir: join(dir, 'agent'),
      uplink: { url: 'mqtt://127.0.0.1:1' },
      sources: { simulator: { enabled: false }, csvReplay: { enabled: true, file, speed: 0 } },
      twin: { enabled: false },
      scoring: { enabled: false },
    }),
  );
  const agent = spawnDaemon(['agent', '--config', cfg]);
  t.teardown(() => void agent.kill('SIGKILL'));
  await agent.ready;
  await waitFor(() => agent.output().includes('"percent":100'), 10_000, 'the 100 % line');
  t.match(agent.output(), /"msg":"csv-replay machine_temperature\.csv: 100% \(202 rows\)"/);
  t.notMatch(agent.output(), /\r/, 'no carriage returns in a log');
  agent.kill('SIGTERM');
  await agent.exited;
});
