/**
 * Alert explanations: exact Shapley values over feature groups (agent/scoring/shapley.ts, explain.ts),
 * checked against their definition on the committed model, and end to end through the scorer on
 * simulated faults whose cause is known.
 */
import t from 'tap';
import { Explainer, VALUE_GROUP, type ExplainRequest } from '../../agent/scoring/explain.js';
import { OnnxScorer } from '../../agent/scoring/onnx-scorer.js';
import { shapleyValues } from '../../agent/scoring/shapley.js';
import type { SourceReading } from '../../agent/types.js';
import { featureGroups, StreamFeatures } from '../../common/models/features.js';
import { modelPath, pickModel, readManifest } from '../../common/models/manifest.js';
import { FORECAST_COLUMNS, OnnxModel } from '../../common/models/onnx-model.js';
import { readingProblem } from '../../common/wire/record.js';
import { fromRoot } from '../../models/eval/repo.js';
import { rng } from '../../models/train/synth.js';

const manifestFile = fromRoot('models/manifest.json');
const entry = pickModel(readManifest(manifestFile), '');

/** Shapley values by their definition: the mean marginal contribution over all k! orderings. */
function bruteForce(v: (S: number) => number, k: number): number[] {
  const phi = new Array<number>(k).fill(0);
  let orders = 0;
  const permute = (prefix: number[], rest: number[]): void => {
    if (rest.length === 0) {
      orders++;
      let S = 0;
      for (const i of prefix) {
        phi[i]! += v(S | (1 << i)) - v(S);
        S |= 1 << i;
      }
      return;
    }
    rest.forEach((x, j) => permute([...prefix, x], [...rest.slice(0, j), ...rest.slice(j + 1)]));
  };
  permute(
    [],
    Array.from({ length: k }, (_, i) => i),
  );
  return phi.map((p) => p / orders);
}

t.test('shapleyValues agrees with the permutation definition, is efficient and gives a null player 0', async (t) => {
  const r = rng(3);
  for (const k of [1, 2, 3, 5, 7]) {
    const v = Float64Array.from({ length: 1 << k }, () => r() * 10 - 5);
    // Player 0 never changes the value: v(S ∪ {0}) = v(S).
    for (let S = 0; S < 1 << k; S++) if (S & 1) v[S] = v[S & ~1]!;
    const phi = shapleyValues(v, k);
    const ref = bruteForce((S) => v[S]!, k);
    for (let i = 0; i < k; i++) t.ok(Math.abs(phi[i]! - ref[i]!) < 1e-9, `k=${k} player ${i}: ${phi[i]} vs ${ref[i]}`);
    t.ok(Math.abs(phi.reduce((a, b) => a + b, 0) - (v[(1 << k) - 1]! - v[0]!)) < 1e-9, `k=${k}: sum = v(all) - v(none)`);
    t.equal(phi[0], 0, `k=${k}: the null player gets exactly 0`);
  }
  t.throws(() => shapleyValues(new Float64Array(512), 9), RangeError, 'more than 8 players is refused');
  t.throws(() => shapleyValues(new Float64Array(7), 3), RangeError, 'a wrong number of coalition values is refused');
});

/** Feature rows of a real stream (a daily wave) at an ordinary moment and at a spike. */
function realRequest(head: number): ExplainRequest {
  const r = rng(11);
  const f = new StreamFeatures(entry.featureRecipe);
  const width = entry.inputs[0]!.shape[1] as number;
  const row = new Float32Array(width);
  const base = new Float32Array(width);
  const T0 = Date.UTC(2024, 0, 1);
  let n = 0;
  for (let i = 0; i < 2500; i++) {
    const ts = T0 + i * 300_000;
    const v = 50 + 20 * Math.sin((2 * Math.PI * i) / 288) + (r() - 0.5) * 2;
    if (i > 1500) {
      f.write(ts, row, 0);
      n++;
      for (let c = 0; c < width; c++) base[c]! += (row[c]! - base[c]!) / n;
    }
    f.push(ts, v);
  }
  const ts = T0 + 2500 * 300_000;
  f.write(ts, row, 0);
  const spike = f.last() + 15 * f.scale();
  const y = f.target(spike, head === 0 ? f.last() : f.centre(), f.scale());
  return { row, base, head, y, yBase: 0.01, divisor: 1.3, driver: head === 0 ? 'step' : 'level' };
}

t.test('on the committed model: contributions add up, ignored groups get 0, a brute-force reference agrees', async (t) => {
  const model = await OnnxModel.load(entry, modelPath(manifestFile, entry));
  t.teardown(() => model.close());
  const explainer = new Explainer(model);
  t.same(explainer.players, [VALUE_GROUP, ...featureGroups(entry.featureRecipe).map((g) => g.name)]);
  t.ok(explainer.players.length <= 8 && explainer.coalitions === 1 << explainer.players.length);
  const requests = [realRequest(0), realRequest(1)];
  const [step, level] = await explainer.explain(requests);
  for (const [name, e] of [
    ['step', step!],
    ['level', level!],
  ] as const) {
    const sum = e.all.reduce((s, g) => s + g.contribution, 0);
    t.ok(
      Math.abs(sum - (e.surprise - e.baseline)) < 1e-4,
      `${name}: Σ contributions ${sum} = f(x) − f(baseline) ${e.surprise - e.baseline}`,
    );
    t.ok(e.groups.length === 3, 'the top 3 go on the wire');
    const sorted = [...e.all].sort((a, b) => Math.abs(b.contribution) - Math.abs(a.contribution)).slice(0, 3);
    t.same(e.groups, sorted, `${name}: top 3 by |contribution|`);
  }
  // The level head reads only the seasonal profiles, flags and hints: the lags cannot matter to it.
  for (const g of ['recent', 'history']) t.equal(level!.all.find((x) => x.group === g)!.contribution, 0, `level head: ${g} gets exactly 0`);

  // Reference: every coalition's row through the model on its own (one row per call), then Shapley by definition.
  const groups = featureGroups(entry.featureRecipe);
  for (const [req, got] of [
    [requests[0]!, step!],
    [requests[1]!, level!],
  ] as const) {
    const k = groups.length + 1;
    const values = new Float64Array(1 << k);
    for (let S = 0; S < 1 << k; S++) {
      const row = Float32Array.from(req.base);
      groups.forEach((g, j) => {
        if (S & (1 << (j + 1))) for (const c of g.columns) row[c] = req.row[c]!;
      });
      const out = await model.forecast(row, 1);
      const y = S & 1 ? req.y : req.yBase;
      values[S] = (Math.abs(y - out[2 * req.head]!) * Math.exp(-out[2 * req.head + 1]!)) / req.divisor;
    }
    t.equal(FORECAST_COLUMNS, 4);
    const ref = bruteForce((S) => values[S]!, k);
    got.all.forEach((g, i) => t.ok(Math.abs(g.contribution - ref[i]!) < 1e-6, `${req.driver} ${g.group}: ${g.contribution} vs ${ref[i]}`));
  }
});

/**
 * Streams with a known fault: a spike or a dip (the reading itself is wrong: `value`), a sensor
 * stuck at the stream's mean while a daily wave is due (`daily`), and one stuck at its mean on a
 * weekday of a weekday/weekend stream (`weekly`). Every alert inside a fault is explained; the
 * fault's cause must rank first in at least 90 % of them.
 */
function faulty(kind: 'spike' | 'dip' | 'daily' | 'weekly', seed: number): { readings: SourceReading[]; from: number; to: number } {
  const r = rng(seed);
  const T0 = Date.UTC(2024, 0, 1);
  const from = kind === 'weekly' ? 4032 + 576 + Math.floor(r() * 200) : 4032 + Math.floor(r() * 400);
  const to = kind === 'spike' || kind === 'dip' ? from + 1 : from + 200;
  const readings: SourceReading[] = [];
  for (let i = 0; i < to + 100; i++) {
    const weekend = Math.floor(i / 288) % 7 >= 5;
    const noise = (r() - 0.5) * 2;
    let v = kind === 'weekly' ? (weekend ? 30 : 70) + noise : 50 + 20 * Math.sin((2 * Math.PI * i) / 288) + noise;
    if (i >= from && i < to) {
      if (kind === 'spike') v += 30 + r() * 20;
      if (kind === 'dip') v -= 30 + r() * 20;
      if (kind === 'daily') v = 50;
      if (kind === 'weekly') v = 58.6; // about the stream's mean
    }
    readings.push({ ts: T0 + i * 300_000, metric: `${kind}-${seed}`, value: v, unit: '' });
  }
  return { readings, from, to };
}

t.test('on simulated faults with known causes the cause ranks first in >= 90 % of alerts', async (t) => {
  const scorer = await OnnxScorer.fromConfig({ manifestFile });
  t.teardown(() => scorer.close());
  const cause = { spike: VALUE_GROUP, dip: VALUE_GROUP, daily: 'daily', weekly: 'weekly' } as const;
  let alerts = 0;
  let right = 0;
  const seen: Record<string, number> = {};
  for (const kind of ['spike', 'dip', 'daily', 'weekly'] as const) {
    for (let seed = 1; seed <= 8; seed++) {
      const { readings, from, to } = faulty(kind, seed);
      for (let at = 0; at < readings.length; at += 1000) await scorer.score(readings.slice(at, at + 1000));
      // A fault's alerts: from its first reading to a few hours after it ends (the detector needs a moment).
      readings.forEach((x, i) => {
        if (!x.alert) return;
        if (x.explain === undefined) t.fail(`alert without explanation: ${JSON.stringify(x)}`);
        if (readingProblem({ ...x, seq: 1 })) t.fail(`explanation breaks the wire schema: ${readingProblem({ ...x, seq: 1 })}`);
        if (i < from || i >= to + 36) return;
        alerts++;
        const top = x.explain!.groups[0]!.group;
        seen[`${kind}:${top}`] = (seen[`${kind}:${top}`] ?? 0) + 1;
        if (top === cause[kind]) right++;
      });
    }
  }
  t.ok(alerts >= 24, `the faults alert (${alerts} alerts)`);
  t.ok(right / alerts >= 0.9, `cause ranked first in ${right} of ${alerts} alerts: ${JSON.stringify(seen)}`);
});
