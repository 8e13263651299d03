/**
 * NAB scoring on hand-made cases. Expected values are worked out here from NAB's formulas
 * (../shared/nab/README.md), never by calling the code under test.
 */
import t from 'tap';
import {
  MAX_TP,
  normalise,
  optimiseThreshold,
  probationLength,
  scaledSigmoid,
  scoreAtThreshold,
  windowsToRows,
  type CostProfile,
  type ScoredSeries,
} from '../../models/eval/nab-score.js';

const standard: CostProfile = { tpWeight: 1, fnWeight: 1, fpWeight: 0.11 };
const lowFn: CostProfile = { tpWeight: 1, fnWeight: 2, fpWeight: 0.11 };
/** NAB's sigmoid, written out again for the expectations. */
const sig = (x: number): number => (x > 3 ? -1 : 2 / (1 + Math.exp(5 * x)) - 1);
const maxTp = 2 / (1 + Math.exp(-5)) - 1;

/** 20 rows (probation: floor(0.15 * 20) = 3 rows), one window on rows 10..14 (width 5). */
function series(hits: Record<number, number>, windows: Array<[number, number]> = [[10, 14]], rows = 20): ScoredSeries {
  const scores = new Array<number>(rows).fill(0);
  for (const [i, s] of Object.entries(hits)) scores[Number(i)] = s;
  return { name: 'hand', scores, windows };
}

t.test('scaled sigmoid and probation follow NAB', async (t) => {
  t.equal(scaledSigmoid(0), 0);
  t.ok(Math.abs(scaledSigmoid(-1) - 0.98661) < 1e-5, 'sigmoid(-1) is 0.98661');
  t.equal(MAX_TP, maxTp);
  t.equal(scaledSigmoid(3.01), -1, 'beyond 3 it is exactly -1');
  t.ok(scaledSigmoid(3) > -1 && scaledSigmoid(3) < -0.9999, 'at 3 it is still the sigmoid');
  t.equal(probationLength(20), 3);
  t.equal(probationLength(4032), 604);
  t.equal(probationLength(22695), 750, 'capped at 750 rows');
});

t.test('one early detection in a window scores by its position', async (t) => {
  const r = optimiseThreshold([series({ 12: 1 })], standard);
  // Row 12 of window 10..14: position -(14 - 12 + 1) / 5 = -0.6.
  const tp = sig(-0.6) / maxTp;
  t.equal(r.threshold, 1);
  t.equal(r.tp, 1);
  t.equal(r.fp, 0);
  t.ok(Math.abs(r.raw - tp) < 1e-12, `raw ${r.raw} vs ${tp}`);
  t.ok(Math.abs(r.normalised - (100 * (tp + 1)) / 2) < 1e-9, 'normalised against null -1 and perfect +1');
});

t.test('only the earliest detection of a window counts', async (t) => {
  const r = scoreAtThreshold([series({ 11: 1, 13: 1, 14: 1 })], standard, 1);
  t.ok(Math.abs(r.raw - sig(-(14 - 11 + 1) / 5) / maxTp) < 1e-12);
  t.equal(r.tp, 1, 'a window is one true positive');
  t.equal(r.fp, 0);
});

t.test('a detection at the first row of a window is worth exactly tpWeight', async (t) => {
  const r = scoreAtThreshold([series({ 10: 1 })], standard, 1);
  t.ok(Math.abs(r.raw - 1) < 1e-12);
});

t.test('false positives: full cost before any window, discounted right after one', async (t) => {
  // Row 5 (before every window): -fpWeight. Row 16: |16 - 14| / (5 - 1) = 0.5 after the window.
  const before = scoreAtThreshold([series({ 5: 1, 12: 1 })], standard, 1);
  t.ok(Math.abs(before.raw - (sig(-0.6) / maxTp - 0.11)) < 1e-12);
  const after = scoreAtThreshold([series({ 16: 1, 12: 1 })], standard, 1);
  t.ok(Math.abs(after.raw - (sig(-0.6) / maxTp + 0.11 * sig(0.5))) < 1e-12);
  t.ok(after.raw > before.raw, 'an FP just after a window costs less');
  // Far after the window (row 19: 5 / 4 = 1.25) it costs more than at row 16.
  const far = scoreAtThreshold([series({ 19: 1, 12: 1 })], standard, 1);
  t.ok(Math.abs(far.raw - (sig(-0.6) / maxTp + 0.11 * sig(1.25))) < 1e-12);
  t.ok(far.raw < after.raw);
  t.equal(far.fp, 1);
});

t.test('probation rows are never scored', async (t) => {
  // A window from row 2 to 6 straddles the 3-row probation: row 2 is ignored, row 4 counts.
  const r = scoreAtThreshold([series({ 1: 1, 2: 1, 4: 0.5 }, [[2, 6]])], standard, 0.5);
  t.ok(Math.abs(r.raw - sig(-(6 - 4 + 1) / 5) / maxTp) < 1e-12);
  t.equal(r.fp, 0, 'row 1 is in probation, not a false positive');
  const only = scoreAtThreshold([series({ 2: 1 }, [[2, 6]])], standard, 1);
  t.equal(only.raw, -1, 'a window whose only detection is in probation is missed');
});

t.test('the threshold sweep tries every distinct score and keeps the best total', async (t) => {
  // Row 5: FP (0.9), row 12: TP (0.8), row 16: FP just after the window (0.5), rest 0.
  const s = series({ 5: 0.9, 12: 0.8, 16: 0.5 });
  const tp = sig(-0.6) / maxTp;
  const fpAfter = (i: number): number => 0.11 * sig(Math.abs(i - 14) / 4);
  // Zero-score rows after probation: 3, 4, 6..9 before the window (-0.11 each), 10, 11, 13, 14
  // inside (no better than row 10's weight 1), 15, 17, 18, 19 after it.
  const zerosBefore = 6 * -0.11;
  const zerosAfter = fpAfter(15) + fpAfter(17) + fpAfter(18) + fpAfter(19);
  const expected: Record<string, number> = {
    none: -1,
    '0.9': -1 - 0.11,
    '0.8': tp - 0.11,
    '0.5': tp - 0.11 + fpAfter(16),
    '0': 1 - 0.11 + fpAfter(16) + zerosBefore + zerosAfter,
  };
  const best = Object.entries(expected).reduce((a, b) => (b[1] > a[1] ? b : a));
  const r = optimiseThreshold([s], standard);
  t.equal(best[0], '0.8', 'the hand-computed best is the TP-only threshold');
  t.equal(r.threshold, 0.8);
  t.ok(Math.abs(r.raw - best[1]) < 1e-12);
  for (const [thr, raw] of Object.entries(expected)) {
    if (thr === 'none') continue;
    t.ok(Math.abs(scoreAtThreshold([s], standard, Number(thr)).raw - raw) < 1e-12, `score at ${thr}`);
  }
});

t.test('never detecting is a candidate: a detector that only hurts scores 0, not less', async (t) => {
  // 60 rows (probation 9): at threshold 1 rows 10..12 are FPs before the window (now on 20..24);
  // at 0 every row is a detection and ~40 FPs outweigh the window. Not detecting (-1) is best.
  const r = optimiseThreshold([series({ 10: 1, 11: 1, 12: 1 }, [[20, 24]], 60)], standard);
  t.equal(r.threshold, Infinity);
  t.equal(r.normalised, 0);
  t.equal(r.fn, 1);
});

t.test('rows with equal scores become detections together', async (t) => {
  // Both rows score 0.7: at threshold 0.7 the FP at row 5 comes with the TP at row 12.
  const r = optimiseThreshold([series({ 5: 0.7, 12: 0.7 })], standard);
  t.equal(r.threshold, 0.7);
  t.equal(r.fp, 1);
  t.ok(Math.abs(r.raw - (sig(-0.6) / maxTp - 0.11)) < 1e-12);
});

t.test('one global threshold over the corpus, windows normalised over all files', async (t) => {
  // File A wants 0.9 (its TP), file B has an FP at 0.95 and its TP at 0.6.
  const a = series({ 12: 0.9 });
  const b = series({ 5: 0.95, 11: 0.6 });
  const tpA = sig(-0.6) / maxTp;
  const tpB = sig(-0.8) / maxTp;
  const at09 = tpA - 0.11 - 1; // B's FP comes with A's TP, B's window is missed
  const at06 = tpA - 0.11 + tpB;
  const r = optimiseThreshold([a, b], standard);
  t.ok(at06 > at09);
  t.equal(r.threshold, 0.6);
  t.ok(Math.abs(r.raw - at06) < 1e-12);
  t.ok(Math.abs(r.normalised - (100 * (at06 + 2)) / 4) < 1e-9, 'two windows: null -2, perfect +2');
  t.equal(r.tp, 2);
});

t.test('profiles change weights and normalisation', async (t) => {
  const missed = optimiseThreshold([series({}, [[20, 24]], 60)], lowFn);
  t.equal(missed.raw, -2, 'a missed window costs fnWeight 2');
  t.equal(missed.normalised, 0);
  t.equal(normalise(1, 1, lowFn), 100, 'perfect is tpWeight per window');
  t.ok(Math.abs(normalise(0, 1, lowFn) - (100 * 2) / 3) < 1e-9, 'null is -fnWeight per window');
  const lowFp: CostProfile = { tpWeight: 1, fnWeight: 1, fpWeight: 0.22 };
  const r = scoreAtThreshold([series({ 5: 1, 12: 1 })], lowFp, 1);
  t.ok(Math.abs(r.raw - (sig(-0.6) / maxTp - 0.22)) < 1e-12);
});

t.test('windows map to the first row at/after their start and the last at/before their end', async (t) => {
  const times = [0, 10, 20, 30, 40, 50];
  t.same(windowsToRows(times, [[15, 40]]), [[2, 4]]);
  t.same(
    windowsToRows(times, [
      [30, 30],
      [0, 5],
    ]),
    [
      [0, 0],
      [3, 3],
    ],
    'sorted by start',
  );
  t.same(windowsToRows(times, [[51, 60]]), [[-1, -1]], 'a window with no row is kept as missed');
  const r = optimiseThreshold([{ name: 'x', scores: [0, 0, 0, 0, 0, 0], windows: [[-1, -1]] }], standard);
  t.equal(r.raw, -1, 'and costs a false negative');
});
