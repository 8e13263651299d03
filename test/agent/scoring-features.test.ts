/** Online feature windows (recipe ctx-v1): what the model sees must not depend on units or rate. */
import t from 'tap';
import { DEFAULT_RECIPE, HEADS, StreamFeatures, featureCount, levelInputs } from '../../common/models/features.js';

const F = featureCount(DEFAULT_RECIPE);
const MIN = 60_000;
const T0 = Date.UTC(2024, 0, 1); // a Monday, 00:00 UTC
const L = DEFAULT_RECIPE.lags;
/** Column positions after the lags, as documented in features.ts. */
const col = {
  dayStep: L - 1,
  dayOffset: L,
  weekStep: L + 1,
  weekOffset: L + 2,
  hasDay: L + 3,
  hasWeek: L + 4,
  dayLevel: L + 8,
  weekLevel: L + 9,
};

/** A daily square wave: 80 from 08:00 to 18:00 UTC, 20 otherwise, plus a small deterministic wobble. */
const square = (ts: number): number => {
  const h = ((ts - T0) / 3_600_000) % 24;
  return (h >= 8 && h < 18 ? 80 : 20) + Math.sin(ts / 7e5);
};

function rowsFor(values: (ts: number) => number, steps: number, stepMin: number, map = (v: number) => v): Float32Array[] {
  const st = new StreamFeatures();
  const rows: Float32Array[] = [];
  for (let i = 0; i < steps; i++) {
    const ts = T0 + i * stepMin * MIN;
    if (st.ready()) {
      const row = new Float32Array(F);
      st.write(ts, row, 0);
      rows.push(row);
    }
    st.push(ts, map(values(ts)));
  }
  return rows;
}

t.test('layout: one row of featureCount values; the level head sees flags, hints and levels only', async (t) => {
  t.equal(F, L - 1 + 11);
  t.same(HEADS, ['step', 'level']);
  const li = levelInputs(DEFAULT_RECIPE);
  t.equal(li.length, 7);
  t.ok(
    li.every((i) => i >= col.hasDay && i < F),
    'no lag and no offset from the last value',
  );
});

t.test('features do not change with the unit or offset of the stream', async (t) => {
  const a = rowsFor(square, 3000, 5);
  const b = rowsFor(square, 3000, 5, (v) => 1000 * v - 273.15);
  let worst = 0;
  a.forEach((row, i) => row.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - b[i]![j]!)))));
  t.ok(worst < 1e-3, `largest difference ${worst}`);
});

t.test('the daily context appears after one day, the weekly after one week', async (t) => {
  const perDay = 288;
  const rows = rowsFor(square, 8 * perDay + 10, 5);
  t.equal(rows[100]![col.hasDay], 0, 'no daily profile in the first hours');
  t.equal(rows[perDay + 20]![col.hasDay], 1, 'a daily profile on day two');
  t.equal(rows[6 * perDay]![col.hasWeek], 0);
  t.equal(rows[7 * perDay + 20]![col.hasWeek], 1, 'a weekly profile in week two');
});

t.test('the daily profile foresees the morning rise and holds yesterday, not today', async (t) => {
  const perDay = 288;
  const rows = rowsFor(square, 3 * perDay, 5);
  // Row i describes reading i + 1 (the first reading has no row). 08:00 on day 3 is reading 2 * 288 + 96.
  const rise = rows[2 * perDay + 96 - 1]!;
  const calm = rows[2 * perDay + 60 - 1]!;
  t.ok(rise[col.dayStep]! > 0.5, `expected step up at 08:00: ${rise[col.dayStep]}`);
  t.ok(Math.abs(calm[col.dayStep]!) < 0.1, 'no expected step at 05:00');
  t.ok(rise[col.dayLevel]! > calm[col.dayLevel]!, 'the expected level is higher from 08:00');

  // A day whose afternoon is flat at 20: the level of 15:00 still says "80" (yesterday's).
  const st = new StreamFeatures();
  const flat = (ts: number): number => (ts >= T0 + 2 * 86_400_000 ? 20 : square(ts));
  let rowAt15: Float32Array | undefined;
  for (let i = 0; i < 3 * perDay; i++) {
    const ts = T0 + i * 5 * MIN;
    if (i === 2 * perDay + 180) {
      rowAt15 = new Float32Array(F);
      st.write(ts, rowAt15, 0);
    }
    st.push(ts, flat(ts));
  }
  t.ok(rowAt15![col.dayOffset]! < -0.5, 'the last value (20) is well below the daily profile (80)');
});

t.test('a 1-minute and a 1-hour stream get comparable daily profiles', async (t) => {
  const fast = rowsFor(square, 3 * 1440, 1);
  const slow = rowsFor(square, 3 * 24, 60);
  // Both at day 3, 12:00: the expected level (relative to the running mean) is the same sign and size.
  const f = fast[2 * 1440 + 720 - 1]![col.dayLevel]!;
  const s = slow[2 * 24 + 12 - 1]![col.dayLevel]!;
  t.ok(f > 0 && s > 0 && Math.abs(f - s) < 0.25, `fast ${f} slow ${s}`);
});

t.test('a flat stream gives finite, zero features', async (t) => {
  const rows = rowsFor(() => 45, 500, 5);
  for (const row of rows) t.ok(row.every(Number.isFinite));
  t.equal(rows[400]![0], 0);
});
