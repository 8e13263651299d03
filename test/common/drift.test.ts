/**
 * Drift statistics on simulated data (issue 16): with 10,000 readings per side, a 0.15 σ mean
 * shift alerts in at least 95 % of windows and identical distributions in at most 1 % of 1000
 * trials; a cohort merged from many streams gives exactly the D of the pooled raw data; PSI and
 * Jensen–Shannon behave; histograms of different bins never merge. Speed (10,000 streams) is a
 * benchmark figure: `npm run bench:drift`.
 */
import t from 'tap';
import { compareHistograms, DRIFT_MAX_P, DRIFT_MIN_KS, jsDivergence, ksPValue, kolmogorovQ } from '../../common/drift/compare.js';
import { Histogram, checkPacked, type HistogramSpec } from '../../common/drift/histogram.js';
import { ErrorCodes } from '../../common/errors.js';
import { mulberry32 } from '../../common/random.js';

const SPEC: HistogramSpec = { lo: -4, hi: 4, bins: 64 };
const N = 10_000;
const TRIALS = 1000;

/** Standard normal draws (Box–Muller) from a seeded generator. */
function normals(seed: number): () => number {
  const u = mulberry32(seed);
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const s = spare;
      spare = undefined;
      return s;
    }
    const r = Math.sqrt(-2 * Math.log(1 - u()));
    const a = 2 * Math.PI * u();
    spare = r * Math.sin(a);
    return r * Math.cos(a);
  };
}

function sample(g: () => number, n: number, shift = 0): Histogram {
  const h = new Histogram(SPEC);
  for (let i = 0; i < n; i++) h.add(g() + shift);
  return h;
}

t.test('Kolmogorov p-values agree with the tabulated critical values', async (t) => {
  t.ok(Math.abs(kolmogorovQ(1.358) - 0.05) < 1e-3, 'λ = 1.358 is the 5 % point');
  t.ok(Math.abs(kolmogorovQ(1.628) - 0.01) < 1e-3, 'λ = 1.628 is the 1 % point');
  t.equal(kolmogorovQ(0), 1);
  t.ok(ksPValue(0.05, N, N) < 1e-8, 'D = 0.05 with 10k per side is far beyond noise');
  t.ok(ksPValue(0.05, 100, 100) > 0.5, 'the same D with 100 per side is noise');
  t.equal(ksPValue(0.5, 0, N), 1, 'an empty side proves nothing');
});

t.test('a 0.15 sigma mean shift alerts in >= 95 % of windows (10k readings per side)', async (t) => {
  const g = normals(1601);
  let alerts = 0;
  for (let i = 0; i < TRIALS; i++) {
    const f = compareHistograms(sample(g, N, 0.15), sample(g, N));
    if (f.drift !== (f.ks > DRIFT_MIN_KS && f.p < DRIFT_MAX_P)) t.fail('drift is D > 0.05 with p < 0.01');
    if (f.drift) alerts++;
  }
  t.ok(alerts / TRIALS >= 0.95, `alerted in ${alerts} of ${TRIALS} windows`);
});

t.test('identical distributions alert in <= 1 % of 1000 trials', async (t) => {
  const g = normals(1602);
  let alerts = 0;
  let maxKs = 0;
  for (let i = 0; i < TRIALS; i++) {
    const f = compareHistograms(sample(g, N), sample(g, N));
    if (f.drift) alerts++;
    maxKs = Math.max(maxKs, f.ks);
  }
  t.ok(alerts / TRIALS <= 0.01, `alerted in ${alerts} of ${TRIALS} trials (largest D ${maxKs.toFixed(4)})`);
});

t.test("a merged cohort's D equals D over the pooled raw data", async (t) => {
  const g = normals(1603);
  const rand = mulberry32(9);
  const reference = sample(g, 50_000);
  const merged = new Histogram(SPEC);
  const pooled: number[] = [];
  // 40 devices of one cohort, each with its own small shift and size, sent packed as on the wire.
  for (let d = 0; d < 40; d++) {
    const shift = (rand() - 0.5) * 0.6;
    const values = Array.from({ length: 200 + Math.floor(rand() * 2000) }, () => g() * (0.8 + rand() * 0.4) + shift);
    pooled.push(...values);
    merged.merge(Histogram.of(SPEC, values).pack());
  }
  const direct = Histogram.of(SPEC, pooled);
  t.same(Array.from(merged.counts), Array.from(direct.counts), 'cells identical');
  const a = compareHistograms(merged, reference);
  const b = compareHistograms(direct, reference);
  t.equal(a.ks, b.ks, 'D identical');
  t.equal(a.p, b.p);
  t.equal(a.psi, b.psi);
  t.equal(a.js, b.js);
  t.equal(a.n, pooled.length);
});

t.test('PSI and Jensen–Shannon: zero for the same distribution, grow with the shift, bounded', async (t) => {
  const g = normals(1604);
  const ref = sample(g, 100_000);
  const same = compareHistograms(ref, ref);
  t.equal(same.ks, 0);
  t.equal(same.psi, 0);
  t.equal(same.js, 0);
  t.notOk(same.drift);
  const small = compareHistograms(sample(g, 100_000, 0.2), ref);
  const large = compareHistograms(sample(g, 100_000, 1), ref);
  t.ok(small.psi < large.psi && small.js < large.js && small.ks < large.ks, 'monotone in the shift');
  t.ok(large.drift);
  const far = Histogram.of(SPEC, [100, 100]);
  t.equal(jsDivergence(far.counts, 2, Histogram.of(SPEC, [-100]).counts, 1), 1, 'disjoint supports: JS = 1');
  t.ok(Number.isFinite(compareHistograms(far, ref).psi), 'empty cells on one side keep PSI finite');
});

t.test('cells: under/overflow, the last bin edge, values that are not numbers', async (t) => {
  const h = new Histogram({ lo: 0, hi: 1, bins: 10 });
  for (const x of [-1, 0, 0.05, 0.1, 0.999999999999, 1, 5, NaN, Infinity]) h.add(x);
  t.same(Array.from(h.counts), [1, 2, 1, 0, 0, 0, 0, 0, 0, 0, 1, 2], 'x < lo, [lo, hi) in 10 bins, x >= hi; NaN and Infinity not counted');
  const p = h.pack();
  t.equal(p.first, 0);
  t.same(Array.from(Histogram.unpack(p).counts), Array.from(h.counts), 'pack/unpack round trip');
  t.same(new Histogram({ lo: 0, hi: 1, bins: 10 }).pack(), { lo: 0, hi: 1, bins: 10, first: 0, counts: [] }, 'empty packs small');
});

t.test('histograms with different bins, or damaged ones, are refused with a code', async (t) => {
  const a = new Histogram({ lo: 0, hi: 1, bins: 10 });
  const b = new Histogram({ lo: 0, hi: 1, bins: 20 });
  t.throws(() => a.merge(b), { code: ErrorCodes.BAD_PAYLOAD });
  t.throws(() => compareHistograms(a, b), { code: ErrorCodes.BAD_PAYLOAD });
  t.throws(() => checkPacked({ lo: 0, hi: 1, bins: 10, first: 5, counts: [1, 1, 1, 1, 1, 1, 1, 1] }), /past the last cell/);
  t.throws(() => checkPacked({ lo: 0, hi: 1, bins: 10, first: 0, counts: [1.5] }), /non-negative integers/);
  t.throws(() => checkPacked({ lo: 1, hi: 1, bins: 10, first: 0, counts: [] }), /above lo/);
  t.throws(() => new Histogram({ lo: 0, hi: 1, bins: 100_000 }), /bins must be/);
});
