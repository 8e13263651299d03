/**
 * The chaos run, shortened for `npm test`: three agents and one collector as real processes,
 * 12,000 readings over 15 s, every fault kind at least once with outages of a few seconds (the
 * full run — 20 agents, 1M readings, a 60-s cloud outage — is `npm run chaos`). Also proves the
 * checker itself catches each kind of damage, so a passing run means something.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { LakeChecker } from '../../bench/chaos/verify.js';
import { duckSql } from '../helpers/duck.js';
import { tempDir } from '../helpers/util.js';

const RUNNER = fileURLToPath(new URL('../../dist/bench/chaos/run.js', import.meta.url));

t.test('quick chaos run: nothing acknowledged is lost or duplicated under every kind of fault', { timeout: 170_000 }, async (t) => {
  const { dir, cleanup } = tempDir('edgetwin-chaos-test-');
  t.teardown(cleanup);
  const args = [
    RUNNER,
    '--quick',
    '--json',
    '--seed',
    '7',
    '--agents',
    '3',
    '--readings',
    '12000',
    '--duration-s',
    '15',
    '--outage-s',
    '3',
    '--faults-per-min',
    '36',
    '--dir',
    join(dir, 'run'),
  ];
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 160_000 });
  const lines = r.stdout.trim().split('\n');
  let f: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  try {
    f = JSON.parse(lines[lines.length - 1]!);
  } catch {
    t.fail(`the run did not end with its JSON figures (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
    return;
  }
  t.equal(r.status, 0, `exit 0 (figures: ${lines.slice(-26, -1).join('\n')})`);
  t.equal(f['readings_sent'], 12_000, 'all readings sent');
  t.ok(f['readings_acknowledged'] > 10_000, 'most were acknowledged');
  t.equal(f['readings_lost'], 0, 'no acknowledged reading lost');
  t.equal(f['readings_duplicated'], 0, 'none duplicated');
  t.equal(f['identity_duplicates'], 0);
  t.equal(f['readings_invented'], 0, 'nothing invented');
  t.equal(f['seq_gaps'], 0, 'committed seqs 1..last all present');
  t.equal(f['order_violations'], 0, 'per-device order by seq kept');
  t.equal(
    f['readings_stored'],
    f['readings_acknowledged'] + f['readings_in_doubt_stored'],
    'stored = acknowledged + the in-doubt ones that made it',
  );
  t.equal(f['twin_mismatches'], 0, 'twins show the newest reading per metric');
  t.ok(f['desired_changes'] > 0, 'desired changes were made');
  t.equal(f['desired_not_applied'], 0, 'every desired change applied');
  t.equal(f['daemon_crashes'], 0, 'no daemon crashed');
  for (const kind of ['kill_agent', 'kill_collector', 'cloud_outage', 'partition', 'blackhole', 'delay', 'cut_connections', 'slow_sink']) {
    t.ok((f['faults'][kind] ?? 0) >= 1, `${kind} injected`);
  }
  t.ok(f['spool_peak_bytes'] > f['spool_cap_bytes'] / 2, 'the small spool filled up (back-pressure exercised)');
  t.equal(f['outbox_dropped'] + f['spool_dropped'], 0, 'nothing dropped under disk caps');
  t.ok(f['ok']);
});

t.test('the checker catches loss, duplicates, invented readings, gaps and reordering', async (t) => {
  const { dir, cleanup } = tempDir('edgetwin-chaos-check-');
  t.teardown(cleanup);
  const part = join(dir, 'silver', 'readings', 'site=s1', 'date=2026-01-01');
  mkdirSync(part, { recursive: true });
  // d1: sent 1..6 acknowledged; 6 never arrived and seq 5 carries an older reading than seq 4.
  // d2: sent 1..3; seq 2 stored twice, and a seq 4 with a value no one sent.
  // d3: sent 1..2 in doubt; one of them stored.
  const rows = [
    ['d1', 1, 1, 1],
    ['d1', 1, 2, 2],
    ['d1', 1, 3, 3],
    ['d1', 1, 4, 5],
    ['d1', 2, 5, 4],
    ['d2', 1, 1, 1],
    ['d2', 1, 2, 2],
    ['d2', 1, 2, 2],
    ['d2', 1, 3, 3],
    ['d2', 1, 4, 99],
    ['d3', 1, 1, 1],
  ];
  const values = rows
    .map(
      ([d, e, s, v]) =>
        `('${d}', ${e}, ${s}, TIMESTAMPTZ '2026-01-01 00:00:00+00' + INTERVAL ${s} SECOND, 'm', ${v}::DOUBLE, TIMESTAMPTZ '2026-01-01 00:00:05+00')`,
    )
    .join(', ');
  await duckSql(
    `COPY (SELECT * FROM (VALUES ${values}) AS t(device, epoch, seq, ts, metric, value, received_at)) TO '${join(part, 'part-1-1-0.parquet')}' (FORMAT parquet)`,
  );
  const ledger = join(dir, 'ledger.csv');
  writeFileSync(ledger, 'device,lo,hi,status\nd1,1,6,acked\nd2,1,3,acked\nd3,1,2,in_doubt\n');
  const checker = await LakeChecker.open(dir);
  t.teardown(() => checker.close());
  t.equal(await checker.silverCount(), rows.length);
  const v = await checker.verify({ lakeRoot: dir, ledgerCsv: ledger, lastSeq: { d1: 6, d2: 3, d3: 1 }, workDir: dir });
  t.equal(v.readings_acknowledged, 9);
  t.equal(v.readings_lost, 1, 'd1 value 6');
  t.equal(v.readings_duplicated, 1, 'd2 value 2');
  t.equal(v.identity_duplicates, 1, 'd2 seq 2');
  t.equal(v.readings_invented, 1, 'd2 value 99');
  t.equal(v.seq_gaps, 1, 'd1 seq 6');
  t.equal(v.seq_beyond_committed, 1, 'd2 seq 4');
  t.equal(v.order_violations, 1, 'd1 seq 5 older than seq 4');
  t.equal(v.readings_in_doubt, 2);
  t.equal(v.readings_in_doubt_stored, 1);
  t.equal(v.latency_max_ms, 4000);
  const last = await checker.lastPerMetric();
  t.same(
    last.map((l) => [l.device, l.value]),
    [
      ['d1', 4],
      ['d2', 99],
      ['d3', 1],
    ],
    'newest per metric by sample time',
  );
});
