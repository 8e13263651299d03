/**
 * Cross-validated NAB scores on hand-made corpora; expectations worked out here from NAB's formulas
 * and the fold rules (each fold's threshold from the other folds only), never from the code under test.
 */
import t from 'tap';
import { categoryOf, chooseThreshold, crossValidate, fileOf } from '../../models/eval/cross-validation.js';
import type { CostProfile, ScoredSeries } from '../../models/eval/nab-score.js';

const standard: CostProfile = { tpWeight: 1, fnWeight: 1, fpWeight: 0.11 };
const nabRule = { smoothing: 0 };

/** 20 rows (probation 3), scores 0 but `hits`; a window on rows 10..14 unless `windows` says otherwise. */
function series(name: string, hits: Record<number, number>, windows: Array<[number, number]> = [[10, 14]]): ScoredSeries {
  const scores = new Array<number>(20).fill(0);
  for (const [i, s] of Object.entries(hits)) scores[Number(i)] = s;
  return { name, scores, windows };
}

// A: its window caught at its first row with 0.8; B: caught with 0.6; C (no window): a false positive at 0.7.
const corpus = [series('a/one.csv', { 10: 0.8 }), series('b/one.csv', { 10: 0.6 }), series('c/one.csv', { 5: 0.7 }, [])];

t.test("leave one category out with NAB's own threshold choice", async (t) => {
  // Fold a: trained on b, c → 0.6 catches b (+1) at the price of c's false positive (−0.11): 0.89 beats
  // −1 (never) and −1.11 (0.7); a at 0.6: caught, +1.
  // Fold b: trained on a, c → 0.8 (+1) beats 0.7 (+0.89); b at 0.8: missed, −1.
  // Fold c: trained on a, b → 0.6 (+2); c at 0.6: a false positive before any window, −0.11.
  const cv = crossValidate(corpus, standard, categoryOf, nabRule);
  t.same(Object.fromEntries(Object.entries(cv.folds).map(([f, r]) => [f, [r.threshold, r.tp, r.fp]])), {
    a: [0.6, 1, 0],
    b: [0.8, 0, 0],
    c: [0.6, 0, 1],
  });
  // Raw −0.11 over 2 windows: 100 × (−0.11 + 2) / (2 + 2).
  t.ok(Math.abs(cv.score - 47.25) < 1e-9, `normalised ${cv.score}`);
  t.same([cv.tp, cv.fp, cv.fn], [1, 1, 1]);
});

t.test('a fold of one file per file: leave one file out uses the file as the fold', async (t) => {
  const two = [series('a/x.csv', { 10: 0.8 }), series('a/y.csv', { 10: 0.8 })];
  const byCategory = crossValidate(two, standard, categoryOf, nabRule);
  // One category: its only fold trains on nothing, so it never detects: both windows missed.
  t.same([byCategory.tp, byCategory.score], [0, 0]);
  const byFile = crossValidate(two, standard, fileOf, nabRule);
  // Each file's fold trains on the other, which wants 0.8: both caught at their first row.
  t.same([byFile.tp, byFile.fp], [2, 0]);
  t.ok(Math.abs(byFile.score - 100) < 1e-9);
});

t.test('the smoothed rule prefers a threshold whose neighbours are good too', async (t) => {
  // One window caught at 0.55 with four false positives just below it (0.53-0.545), a second one
  // caught only from 0.30 on: every threshold in (0, 0.30] scores the same (1 + 1 − 4 × 0.11).
  // NAB's rule takes 0.30, the plateau's edge (0.31 loses a window); the smoothed rule its middle.
  const fps: Record<number, number> = { 4: 0.53, 5: 0.535, 6: 0.54, 7: 0.545 };
  const c = [series('p/peak.csv', { 10: 0.55, ...fps }), series('p/wide.csv', { 10: 0.3 }), series('p/quiet.csv', {}, [])];
  t.equal(chooseThreshold(c, standard, nabRule), 0.3, "NAB's rule: both windows (0.3) beat one window and no false positive");
  const smooth = chooseThreshold(c, standard, { smoothing: 0.03 });
  t.ok(smooth >= 0.1 && smooth <= 0.2, `smoothed: ${smooth}, the middle of the plateau`);
  // Nothing worth detecting: never detect.
  t.equal(chooseThreshold([series('q/fp.csv', { 5: 0.9 }, [])], standard, { smoothing: 0.03 }), Infinity);
  t.equal(chooseThreshold([series('q/fp.csv', { 5: 0.9 }, [])], standard, nabRule), Infinity);
});
