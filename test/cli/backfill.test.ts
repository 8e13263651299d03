/**
 * `edgetwin cloud backfill` loads a NAB file and a multi-column CSV into a real cloud over HTTP:
 * every row lands in silver with its original timestamp and the identity (device, epoch, row),
 * a second run stores nothing twice, a bad row is named and skipped, a wrong site is refused with
 * a message that says what to do, and progress comes as plain lines when stderr is not a terminal.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { runBackfill } from '../../cli/backfill.js';
import { parseCsvTimestamp as parseTimestamp } from '../../common/csv.js';
import { readFileSync } from 'node:fs';
import { duckSql, startTestCloud } from '../helpers/cloud.js';
import { runCliAsync } from '../helpers/cli.js';
import { tempDir } from '../helpers/util.js';

/**
 * A NAB-format file (`timestamp,value`, NAB's own timestamp format, 5-minute steps) written by the
 * test: CI runs from a fresh clone, with no ../shared beside it.
 */
function nabFile(dir: string, rows = 4032): string {
  const file = join(dir, 'ec2_request_latency_system_failure.csv');
  const t0 = Date.UTC(2014, 2, 7, 3, 41);
  const lines = Array.from(
    { length: rows },
    (_, i) =>
      `${new Date(t0 + i * 300_000).toISOString().slice(0, 19).replace('T', ' ')},${(45 + Math.sin(i / 12) * 3 + (i % 7) * 0.125).toFixed(3)}`,
  );
  writeFileSync(file, `timestamp,value\n${lines.join('\n')}\n`);
  return file;
}

t.test('backfill: NAB and multi-column CSV into silver, idempotent, bad rows named, site scope enforced', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'));
  t.teardown(() => cloud.stop());
  const token = (await cloud.tokens.create({ role: 'collector', site: 'site-b', createdBy: 'test' })).token;
  const env = { EDGETWIN_CLOUD_TOKEN: token, EDGETWIN_PROGRESS: 'off' };
  const lines: string[] = [];
  const out = (s: string): void => void lines.push(s);

  const NAB = nabFile(dir);
  const nabRows = readFileSync(NAB, 'utf8')
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.split(','));
  const r1 = await runBackfill({ file: NAB, device: 'ec2-1', site: 'site-b', url: cloud.url, 'batch-readings': '1000' }, out, env);
  t.same(
    r1,
    {
      rows: nabRows.length,
      readings: nabRows.length,
      refused: 0,
      posts: Math.ceil(nabRows.length / 1000),
      stored: nabRows.length,
      duplicates: 0,
      quarantined: 0,
      rejected: 0,
    },
    'every NAB row posted, and the cloud says it stored each',
  );
  await cloud.flush();
  const stored = await cloud.identities('ec2-1');
  t.equal(stored.length, nabRows.length, 'every row stored');
  t.same(new Set(stored.map((s) => s.epoch)), new Set([0]), 'epoch 0: never collides with an agent (epochs start at 1)');
  t.same(
    stored.map((s) => s.seq).sort((a, b) => a - b),
    nabRows.map((_, i) => i + 1),
    'seq = row number',
  );
  const root = cloud.lake.root;
  const [first] = await duckSql(
    `SELECT epoch_ms(ts) AS ts, value, metric FROM read_parquet('${root}/silver/**/*.parquet', hive_partitioning = true) WHERE device = 'ec2-1' AND seq = 1`,
  );
  t.same(
    first,
    { ts: parseTimestamp(nabRows[0]![0]!), value: Number(nabRows[0]![1]), metric: 'ec2_request_latency_system_failure' },
    'original timestamp and value, metric named after the file',
  );

  // Run again: same identities, same batch ids — stored once.
  const again = await runBackfill({ file: NAB, device: 'ec2-1', site: 'site-b', url: cloud.url, 'batch-readings': '1000' }, out, env);
  t.match(again, { stored: 0, duplicates: nabRows.length }, 'the report says so: nothing stored, all duplicates');
  await cloud.flush();
  t.equal((await cloud.identities('ec2-1')).length, nabRows.length, 'a second run stores nothing twice');

  const csv = join(dir, 'pump.csv');
  writeFileSync(
    csv,
    'timestamp,pressure,current\n2024-05-01 00:00:00,1.5,10\n2024-05-01 00:01:00,1.6,11\nnot-a-time,1,1\n2024-05-01 00:03:00,1.8,13\n',
  );
  const r2 = await runBackfill({ file: csv, device: 'pump-1', site: 'site-b', url: cloud.url, unit: 'bar' }, out, env);
  t.match(r2, { rows: 4, readings: 6, refused: 1, posts: 1, stored: 6 }, 'two metrics per row; the bad row refused');
  t.match(
    lines.join('\n'),
    /EDGETWIN_ERR_BAD_READING: .*pump\.csv line 4: bad timestamp "not-a-time" \(skipped\)/,
    'the bad row is named by its line',
  );
  await cloud.flush();
  const pump = await cloud.identities('pump-1');
  t.same(pump.map((p) => `${p.metric}=${p.value}`).sort(), [
    'current=10',
    'current=11',
    'current=13',
    'pressure=1.5',
    'pressure=1.6',
    'pressure=1.8',
  ]);

  await t.rejects(
    runBackfill({ file: csv, device: 'pump-1', site: 'site-other', url: cloud.url }, out, env),
    /answered 403.*set EDGETWIN_CLOUD_TOKEN to a collector token of --site/,
    'a token of another site is refused, and the error says what to do',
  );
});

t.test('edgetwin cloud backfill (compiled CLI): progress lines on a pipe, usage errors name the option', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'));
  t.teardown(() => cloud.stop());
  const NAB = nabFile(dir);
  const r = await runCliAsync(
    ['cloud', 'backfill', '--file', NAB, '--device', 'ec2-2', '--site', 'site-c', '--url', cloud.url, '--batch-readings', '500'],
    { EDGETWIN_PROGRESS: '' },
  );
  t.equal(r.status, 0, r.stderr);
  const progress = r.stderr.split('\n').filter((l) => l.startsWith('backfill ec2_request_latency_system_failure.csv: '));
  t.ok(progress.length >= 5, `plain progress lines, no carriage returns (${progress.length})`);
  t.notMatch(r.stderr, /\r/);
  t.match(progress.at(-1), /100%/);
  t.match(r.stdout, /4032 readings from 4032 rows in \d+ posts: 4032 stored, 0 duplicates/);
  const rerun = await runCliAsync(['cloud', 'backfill', '--file', NAB, '--device', 'ec2-2', '--site', 'site-c', '--url', cloud.url], {
    EDGETWIN_PROGRESS: '',
  });
  t.not(rerun.status, 0, 'a run that stored nothing exits non-zero');
  t.match(rerun.stdout, /0 stored, 4032 duplicates/);
  t.match(rerun.stderr, /stored nothing/);
  const bad = await runCliAsync(['cloud', 'backfill', '--file', NAB, '--device', 'ec2-2']);
  t.equal(bad.status, 2);
  t.match(bad.stderr, /--site is required/);
});
