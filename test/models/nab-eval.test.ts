/** eval:nab's core on a tiny hand-made NAB-layout folder. */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { BASELINE, DETECTOR, evalNab, formatTable, lossBreakdown, NAB_PROFILES } from '../../models/eval/eval-nab.js';
import { scoreAtThreshold } from '../../models/eval/nab-score.js';

const T0 = Date.UTC(2015, 0, 5);
const stamp = (i: number): string => new Date(T0 + i * 300_000).toISOString().slice(0, 19).replace('T', ' ');

function writeCsv(path: string, values: number[]): void {
  writeFileSync(path, ['timestamp,value', ...values.map((v, i) => `${stamp(i)},${v}`)].join('\n') + '\n');
}

t.test('scores every CSV, writes NAB result files, scores only files with windows', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nab-eval-'));
  const data = join(dir, 'data');
  mkdirSync(join(data, 'synthetic'), { recursive: true });
  mkdirSync(join(data, 'unlabelled'), { recursive: true });
  // 1400 readings of a daily wave; a large spike at row 1100 inside the labelled window.
  const wave = Array.from({ length: 1400 }, (_, i) => +(50 + 10 * Math.sin((2 * Math.PI * i) / 288) + Math.sin(i * 1.7)).toFixed(3));
  const spiky = wave.slice();
  spiky[1100] = 400;
  writeCsv(join(data, 'synthetic', 'spike.csv'), spiky);
  writeCsv(join(data, 'unlabelled', 'calm.csv'), wave.slice(0, 600));
  const windows = join(dir, 'windows.json');
  writeFileSync(windows, JSON.stringify({ 'synthetic/spike.csv': [[`${stamp(1080)}.000000`, `${stamp(1120)}.000000`]] }));
  const progress: string[] = [];
  const out = join(dir, 'out');

  const r = await evalNab({ data, out, windows, plots: true, progress: (l) => progress.push(l) });

  t.equal(progress.length, 2, 'one progress line per file');
  t.match(progress[1]!, /unlabelled\/calm\.csv: 600 rows, no windows/);
  t.same(
    r.files.map((f) => [f.key, f.rows, f.windows]),
    [
      ['synthetic/spike.csv', 1400, 1],
      ['unlabelled/calm.csv', 600, null],
    ],
  );
  for (const det of [DETECTOR, BASELINE]) {
    for (const [cat, file, rows] of [
      ['synthetic', 'spike.csv', 1400],
      ['unlabelled', 'calm.csv', 600],
    ] as const) {
      const path = join(out, det, cat, `${det}_${file}`);
      const lines = readFileSync(path, 'utf8').trim().split('\n');
      t.equal(lines[0], 'timestamp,value,anomaly_score', `${path} header`);
      t.equal(lines.length, rows + 1, `${path} has one row per input row`);
      const [ts, value, score] = lines[1101 % rows]!.split(',');
      t.equal(ts, stamp(1100 % rows));
      t.equal(Number(value), (file === 'spike.csv' ? spiky : wave)[1100 % rows]);
      t.ok(Number(score) >= 0 && Number(score) <= 1);
    }
  }
  t.ok(existsSync(join(out, 'plots', 'synthetic', 'spike.html')), 'a plot for the scored file');

  const ours = r.scores[DETECTOR]!;
  const base = r.scores[BASELINE]!;
  t.same(Object.keys(ours).sort(), ['reward_low_FN_rate', 'reward_low_FP_rate', 'standard'], 'the profiles beside the windows file');
  for (const res of [...Object.values(ours), ...Object.values(base), ...Object.values(r.shipped.scores)]) {
    t.ok(res.normalised >= 0 && res.normalised <= 100, `normalised score in range: ${res.normalised}`);
    t.equal(res.tp + res.fn, 1, 'one window in the scored corpus');
  }
  t.equal(ours['standard']!.tp, 1, 'the spike is found');
  t.ok(ours['standard']!.normalised > 90, `an early catch of the only window: ${ours['standard']!.normalised}`);
  t.equal(r.shipped.scores['standard']!.tp, 1, "also at the model's shipped threshold");
  const table = formatTable(r);
  t.match(table, /standard/);
  t.match(table, new RegExp(BASELINE));
  // One category with windows: leaving it out leaves nothing to choose a threshold on (never detect: 0);
  // leaving its one file out, likewise. The figures are there, per profile, and say so.
  t.same(Object.keys(r.cv).sort(), ['reward_low_FN_rate', 'reward_low_FP_rate', 'standard']);
  t.equal(r.cv['standard']!.category.tp, 0, 'no training fold has a window: the held-out one is not caught');
  t.equal(r.cv['standard']!.category.score, 0);
  t.match(table, /CV, leave one category out/);
  t.match(table, /gap: best − shipped/);
  t.match(table, /artificialNoAnomaly: 0 false positives in 0 files/);
  t.same(
    r.perFile.map((f) => f.key),
    ['synthetic/spike.csv'],
    'the per-file breakdown covers the scored files',
  );
  t.ok(Math.abs(r.perFile[0]!.lost - (100 - r.shipped.scores['standard']!.normalised)) < 1e-9, 'one file: it loses all that is lost');
  t.match(table, /points lost per file at the shipped threshold/);
});

t.test('points lost per file: worst first, and they add up to 100 − the corpus score', async (t) => {
  const standard = NAB_PROFILES['standard']!;
  const flat = (): Float64Array => new Float64Array(200);
  const caught = flat();
  caught[100] = 1;
  const missed = flat();
  missed[50] = 1; // a false positive before any window, nothing in the window
  const quiet = flat();
  const corpus = [
    { name: 'c/caught.csv', scores: caught, windows: [[100, 109]] as Array<[number, number]> },
    { name: 'c/missed.csv', scores: missed, windows: [[100, 109]] as Array<[number, number]> },
    { name: 'q/quiet.csv', scores: quiet, windows: [] as Array<[number, number]> },
  ];
  const losses = lossBreakdown(corpus, standard, 0.5);
  t.same(
    losses.map((f) => [f.key, f.tp, f.fp, f.fn]),
    [
      ['c/missed.csv', 0, 1, 1],
      ['c/caught.csv', 1, 0, 0],
      ['q/quiet.csv', 0, 0, 0],
    ],
  );
  // Two windows: a point of raw score is 100 / (2 × 2) normalised points; the miss costs 1 + 1, the FP 0.11.
  t.ok(Math.abs(losses[0]!.lost - (2 + 0.11) * 25) < 1e-9, `missed: ${losses[0]!.lost}`);
  t.ok(Math.abs(losses[1]!.lost) < 1e-9, 'a catch at the first row of its window loses nothing');
  t.equal(losses[2]!.lost, 0);
  const total = losses.reduce((s, f) => s + f.lost, 0);
  t.ok(Math.abs(total - (100 - scoreAtThreshold(corpus, standard, 0.5).normalised)) < 1e-9, 'losses add up to 100 − the score');
});

t.test('a folder with no NAB files is a usage error', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nab-eval-empty-'));
  const windows = join(dir, 'w.json');
  writeFileSync(windows, '{}');
  await t.rejects(evalNab({ data: dir, out: join(dir, 'out'), windows }), { code: 'EDGETWIN_ERR_USAGE' });
});
