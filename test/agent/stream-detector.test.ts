/**
 * The streaming detector around the model (agent/scoring/stream-detector.ts) with hand-made
 * forecasts: the count gate, episodes and the seasonal surprise profile, each against the same
 * detector with that part off.
 */
import t from 'tap';
import { EPISODE_START, StreamDetector, type DetectorSettings } from '../../agent/scoring/stream-detector.js';
import { SeasonalSurprise } from '../../agent/scoring/seasonal-surprise.js';
import { DEFAULT_LIKELIHOOD } from '../../agent/scoring/likelihood.js';
import { DEFAULT_RECIPE, featureCount } from '../../common/models/features.js';
import { rng } from '../../models/train/synth.js';

const T0 = Date.UTC(2024, 0, 1);
const STEP = 300_000;
const WIDTH = featureCount(DEFAULT_RECIPE);
const ROW = new Float32Array(WIDTH);

const settings = (over: Partial<DetectorSettings> = {}): DetectorSettings => ({
  surpriseCap: 6,
  seasonal: null,
  episodeReadings: 0,
  episodeMargin: 0,
  countGate: 0,
  rangeTolerancePercent: 0,
  likelihood: { ...DEFAULT_LIKELIHOOD, learningReadings: 50, estimationReadings: 50, historyReadings: 1000 },
  ...over,
});

/**
 * Feeds values through a detector whose model always forecasts "same as the last value, same as
 * the mean" with spread b = e: the surprise is the size of a step or of a deviation, in spreads / e.
 */
function run(d: StreamDetector, values: number[], from = 0): number[] {
  const out = Float32Array.from([0, 1, 0, 1]);
  return values.map((v, k) => {
    const ts = T0 + (from + k) * STEP;
    const f = d.features;
    const centres = { last: f.ready() ? f.last() : v, mean: f.centre(), spread: f.scale() };
    const score = f.ready() ? d.finish(ts, v, out, 0, centres) : 0;
    d.learnBaseline(ROW, 0);
    f.push(ts, v);
    return score;
  });
}

/** A count-like stream: mostly 0, a 1 now and then, one burst to 40 early on (its range). */
function counts(n: number, seed = 5): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, (_, i) => (i === 20 ? 40 : r() < 0.01 ? 1 : 0));
}

t.test('count-like streams: a burst below countGate of the running range cannot alert, a large one can', async (t) => {
  const base = counts(1500);
  const burst = (v: number): number[] => [...base, ...new Array<number>(8).fill(v), 0, 0, 0];
  const peak = (xs: number[]): number => Math.max(...xs.slice(base.length));
  const small = burst(3); // |3 − mean| < 0.1 × 40
  const off = peak(run(new StreamDetector(DEFAULT_RECIPE, WIDTH, settings()), small));
  t.ok(off >= 0.5, `without the gate the small burst is an alert-level score (${off})`);
  const gated = peak(run(new StreamDetector(DEFAULT_RECIPE, WIDTH, settings({ countGate: 0.1 })), small));
  t.ok(gated < EPISODE_START, `with it the small burst stays below the episode level (${gated})`);
  const big = peak(run(new StreamDetector(DEFAULT_RECIPE, WIDTH, settings({ countGate: 0.1 })), burst(30)));
  t.ok(big >= 0.5, `a burst of 30 (75 % of the range) still alerts (${big})`);
  // The same small burst on a stream that once had a fractional value: not count-like, not gated.
  const fractional = [...base.slice(0, 100), 0.5, ...base.slice(101), ...small.slice(base.length)];
  const notCount = peak(run(new StreamDetector(DEFAULT_RECIPE, WIDTH, settings({ countGate: 0.1 })), fractional));
  t.ok(notCount >= 0.5, `a stream that once had 0.5 is not count-like (${notCount})`);
});

t.test('episodes: one alert per anomaly, then only a new high; a later anomaly alerts again', async (t) => {
  const r = rng(2);
  const calm = (n: number): number[] => Array.from({ length: n }, () => 10 + r() * 0.2);
  const burst = [13, 7, 13];
  // A cluster of three bursts 40 readings apart (one incident), then a lone burst long after it.
  const values = [...calm(600), ...burst, ...calm(40), ...burst, ...calm(40), ...burst, ...calm(500), ...burst, ...calm(20)];
  const cluster: [number, number] = [600, 690];
  const lone: [number, number] = [1189, 1200];
  const plain = run(new StreamDetector(DEFAULT_RECIPE, WIDTH, settings()), values);
  const episodic = run(new StreamDetector(DEFAULT_RECIPE, WIDTH, settings({ episodeReadings: 200 })), values);
  const alerts = (xs: number[], [from, to]: [number, number]): number => xs.slice(from, to).filter((s) => s >= 0.5).length;
  t.ok(alerts(plain, cluster) >= 2, `without episodes the cluster alerts ${alerts(plain, cluster)} times`);
  t.equal(alerts(episodic, cluster), 1, 'with episodes: once');
  t.ok(alerts(plain, lone) >= 1, 'the lone burst alerts without episodes');
  t.equal(alerts(episodic, lone), alerts(plain, lone), 'and, after the episode has ended, with them');
  // Inside an episode a reading that does not beat the episode's best is held at the episode level.
  const first = episodic.findIndex((s, i) => i >= 600 && s >= 0.5);
  for (let i = first + 1; i < first + 200; i++) {
    const best = Math.max(...episodic.slice(first, i));
    if (!(episodic[i]! <= EPISODE_START || episodic[i]! > best)) t.fail(`reading ${i}: ${episodic[i]} inside the episode`);
  }
});

t.test('episode margin: an incident whose evidence creeps up alerts once, not at every slightly higher high', async (t) => {
  const r = rng(2);
  const calm = (n: number): number[] => Array.from({ length: n }, () => 10 + r() * 0.2);
  // Bursts every 18 readings, each a little larger than the last: one incident, growing slowly.
  let values = calm(600);
  for (let s = 0.3; s < 0.82; s += 0.05) values = [...values, 10 + s, 10 - s, 10 + s, ...calm(15)];
  values = [...values, ...calm(100)];
  const scores = (margin: number): number[] =>
    run(new StreamDetector(DEFAULT_RECIPE, WIDTH, settings({ episodeReadings: 200, episodeMargin: margin })), values);
  const alertsAt = (xs: number[]): number[] => xs.flatMap((s, i) => (s >= 0.5 ? [i] : []));
  const creeping = alertsAt(scores(0));
  const margined = scores(0.1);
  t.ok(creeping.length >= 2, `without a margin every slightly higher high alerts (${creeping.length} alerts)`);
  t.same(alertsAt(margined), creeping.slice(0, 1), 'with a margin of 0.1: the first alert only');
  // Inside the episode, a reading keeps a score above the episode level only by beating the best by the margin.
  let best = margined[creeping[0]!]!;
  for (let i = creeping[0]! + 1; i < creeping[0]! + 200; i++) {
    if (margined[i]! <= EPISODE_START) continue;
    if (!(margined[i]! > best + 0.1)) t.fail(`reading ${i}: ${margined[i]} kept its score, best ${best}`);
    best = margined[i]!;
  }
});

t.test('seasonal surprise: what recurs at the same time every day is discounted, the unusual is not', async (t) => {
  const s = new SeasonalSurprise({ bucketMinutes: 15, blend: 0.5, weight: 1 });
  const DAY = 86_400_000;
  const at = (day: number, minute: number): number => T0 + day * DAY + minute * 60_000;
  t.equal(s.divisor(at(0, 540)), 1, 'no history: no discount');
  for (let day = 0; day < 3; day++) {
    for (let m = 0; m < 1440; m += 5) s.add(at(day, m), m === 540 ? 0.8 : 0.05); // a surprise at 09:00 every day
  }
  t.ok(Math.abs(s.divisor(at(3, 540)) - 1.8) < 0.05, `09:00: divided by ${s.divisor(at(3, 540))}`);
  t.ok(Math.abs(s.divisor(at(3, 720)) - 1.05) < 0.01, `12:00: ${s.divisor(at(3, 720))}`);
  // Today's own minutes never discount themselves: a surprise at 15:00 today is news at 15:05.
  s.add(at(3, 900), 1);
  s.add(at(3, 915), 0.05);
  t.ok(s.divisor(at(3, 905)) < 1.1, `15:05 after today's 15:00 surprise: ${s.divisor(at(3, 905))}`);
});
