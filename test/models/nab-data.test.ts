/** NAB's file layout and the windowed-Gaussian baseline, on hand-made inputs. */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import {
  listNabFiles,
  parseNabCsv,
  parseNabTime,
  readNabProfiles,
  readNabSeries,
  windowTimes,
  writeNabResult,
} from '../../models/eval/nab-data.js';
import { windowedGaussianScores } from '../../models/eval/windowed-gaussian.js';

t.test('NAB timestamps are read as UTC, with or without microseconds', async (t) => {
  t.equal(parseNabTime('2014-07-01 00:30:00'), Date.UTC(2014, 6, 1, 0, 30));
  t.equal(parseNabTime('2014-04-10 07:15:00.000000'), Date.UTC(2014, 3, 10, 7, 15));
  t.equal(parseNabTime('2014-04-10 07:15:00.250000'), Date.UTC(2014, 3, 10, 7, 15, 0, 250));
  t.ok(Number.isNaN(parseNabTime('yesterday')));
  t.same(windowTimes([['2014-01-01 00:00:00.000000', '2014-01-01 01:00:00.000000']]), [[Date.UTC(2014, 0, 1), Date.UTC(2014, 0, 1, 1)]]);
});

t.test('CSV rows are parsed by header name and bad rows are refused with a stable code', async (t) => {
  const s = parseNabCsv('value,timestamp\n1.5,2014-01-01 00:00:00\n2,2014-01-01 00:05:00\n', 'x.csv');
  t.same([...s.values], [1.5, 2]);
  t.same(s.stamps, ['2014-01-01 00:00:00', '2014-01-01 00:05:00']);
  t.equal(s.times[1]! - s.times[0]!, 300_000);
  t.throws(() => parseNabCsv('timestamp,value\n2014-01-01 00:00:00,abc\n', 'x.csv'), { code: 'EDGETWIN_ERR_BAD_PAYLOAD' });
  t.throws(() => parseNabCsv('time,v\n', 'x.csv'), { code: 'EDGETWIN_ERR_BAD_PAYLOAD' });
});

t.test('folders are listed as <category>/<file>.csv and results written in NAB layout', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nab-data-'));
  mkdirSync(join(dir, 'data', 'b'), { recursive: true });
  mkdirSync(join(dir, 'data', 'a'), { recursive: true });
  writeFileSync(join(dir, 'data', 'b', 'z.csv'), 'timestamp,value\n2014-01-01 00:00:00,1\n');
  writeFileSync(join(dir, 'data', 'a', 'y.csv'), 'timestamp,value\n2014-01-01 00:00:00,3\n2014-01-01 01:00:00,4\n');
  writeFileSync(join(dir, 'data', 'a', 'notes.txt'), 'ignored');
  t.same(listNabFiles(join(dir, 'data')), ['a/y.csv', 'b/z.csv']);
  const series = readNabSeries(join(dir, 'data'), 'a/y.csv');
  const path = writeNabResult(join(dir, 'out'), 'det', series, [0, 0.75]);
  t.equal(path, join(dir, 'out', 'det', 'a', 'det_y.csv'));
  t.equal(readFileSync(path, 'utf8'), 'timestamp,value,anomaly_score\n2014-01-01 00:00:00,3,0\n2014-01-01 01:00:00,4,0.75\n');
  t.throws(() => listNabFiles(join(dir, 'missing')), { code: 'EDGETWIN_ERR_USAGE' });
});

t.test('profiles are read from NAB CostMatrix entries', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nab-prof-'));
  const file = join(dir, 'profiles.json');
  writeFileSync(file, JSON.stringify({ p: { CostMatrix: { tpWeight: 1, fnWeight: 2, fpWeight: 0.5, tnWeight: 1 } } }));
  t.same(readNabProfiles(file), { p: { tpWeight: 1, fnWeight: 2, fpWeight: 0.5 } });
});

t.test('windowed Gaussian: 1 - two-sided Gaussian tail of the value under the window so far', async (t) => {
  const s = windowedGaussianScores([1, 1, 3, 2]);
  t.equal(s[0], 0, 'nothing to compare the first value with');
  // Window [1]: mean 1, std 0 → 1e-6; the value 1 sits on the mean: tail 0.5.
  t.ok(Math.abs(s[1]! - 0.5) < 1e-6);
  // Window [1, 1]: the value 3 is 2e6 standard deviations out.
  t.ok(s[2]! > 1 - 1e-12);
  // Window [1, 1, 3]: mean 5/3, std sqrt(8/9); z = (2 - 5/3) / sqrt(8/9), so z / sqrt 2 = 0.25
  // and the tail is 0.5 * erfc(0.25) = 0.5 * (1 - 0.2763264) (erf from tables).
  t.ok(Math.abs(s[3]! - (1 - 0.5 * (1 - 0.2763264))) < 1e-6);
});
