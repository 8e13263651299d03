/** Anomaly likelihood: per-stream calibration of raw scores. Expectations from the formulas. */
import t from 'tap';
import { AnomalyLikelihood, DEFAULT_LIKELIHOOD, LEARNING_SCORE, logScore } from '../../agent/scoring/likelihood.js';

const cfg = { ...DEFAULT_LIKELIHOOD, learningReadings: 20, estimationReadings: 30, historyReadings: 200, reestimateEveryReadings: 10 };
/** score = log(tail + 1e-10) / log(1e-10), as in Numenta's NAB detector. */
const expectedLog = (tail: number): number => Math.log(tail + 1e-10) / Math.log(1e-10);

t.test('log score maps tails to [0, 1]', async (t) => {
  t.ok(Math.abs(logScore(0.5) - expectedLog(0.5)) < 1e-12);
  t.ok(Math.abs(logScore(1e-5) - 0.5) < 1e-4, 'a 1e-5 tail is 0.5');
  t.equal(logScore(1), 0);
  t.ok(logScore(0) === 1 || Math.abs(logScore(0) - 1) < 1e-12, 'a zero tail is 1');
  t.ok(Math.abs(LEARNING_SCORE - expectedLog(0.5)) < 1e-12);
});

t.test('nothing is scored before the stream has learned', async (t) => {
  const l = new AnomalyLikelihood(cfg);
  for (let i = 0; i < cfg.learningReadings + cfg.estimationReadings; i++) {
    t.equal(l.update(i % 2 ? 1 : 0), LEARNING_SCORE);
    t.equal(l.calibrated(), false);
  }
  l.update(0);
  t.equal(l.calibrated(), true);
});

t.test('ordinary raw scores stay low, a sustained rise goes red once', async (t) => {
  const l = new AnomalyLikelihood(cfg);
  // Alternating 0.1 / 0.2: the 10-reading average is 0.15 every time, variance 0 → floored.
  let last = 0;
  for (let i = 0; i < 150; i++) last = l.update(i % 2 ? 0.2 : 0.1);
  // At the mean the tail is 0.5: the score is the learning score's value.
  t.ok(Math.abs(last - expectedLog(0.5)) < 1e-6, `ordinary: ${last}`);
  // Raw scores jump to 1: the average climbs by 0.085 per reading against a floored std of
  // sqrt(0.0003) = 0.0173; the first reading whose average is ~4.3 std out is red (tail < 1e-5).
  const scores: number[] = [];
  for (let i = 0; i < 10; i++) scores.push(l.update(1));
  const firstRed = scores.findIndex((s) => s >= 0.5);
  t.ok(firstRed >= 0 && firstRed <= 2, `red within a few readings: ${scores.map((s) => s.toFixed(2))}`);
  // Later reds within the cooldown are damped to the yellow level (tail 1e-3).
  for (const s of scores.slice(firstRed + 1)) t.ok(Math.abs(s - expectedLog(1e-3)) < 1e-9);
});

t.test('a cooldown of 1 damps only back-to-back reds, as Numenta does', async (t) => {
  const l = new AnomalyLikelihood({ ...cfg, redCooldownReadings: 1 });
  for (let i = 0; i < 150; i++) l.update(0.1);
  const s = [l.update(1), l.update(1), l.update(1)];
  t.ok(s[0]! >= 0.5);
  t.ok(Math.abs(s[1]! - expectedLog(1e-3)) < 1e-9);
  t.ok(Math.abs(s[2]! - expectedLog(1e-3)) < 1e-9, 'still red, still consecutive');
});

t.test('the distribution follows the stream: a stream that is always noisy is not an alarm', async (t) => {
  const l = new AnomalyLikelihood(cfg);
  let max = 0;
  // Raw scores uniformly spread over [0, 1] by a fixed pattern: noisy, but always the same way.
  for (let i = 0; i < 600; i++) {
    const s = l.update(((i * 37) % 100) / 100);
    if (i > 100) max = Math.max(max, s);
  }
  t.ok(max < 0.5, `highest score ${max}`);
});
