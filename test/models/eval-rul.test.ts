/**
 * `npm run eval:rul -- --train FILE --test FILE --rul FILE --json` (issue 16) on C-MAPSS-format files
 * of synthetic engines (CI has no ../shared): the compiled script prints `rmse`, `phm08_score` and
 * `engines` as JSON, the figures are those of the agent's own window code and model against the
 * true life capped at the model's rulCap, the PHM08 score is the challenge's asymmetric one,
 * `--train` checks the scaling, and bad arguments or files are refused. The trainer's validation is
 * engine-level: every engine held out in exactly one fold per seed, cut before failure like FD001's
 * official test set and scored through the same code.
 */
import '../helpers/child-env.js';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { readCmapss, readRulFile } from '../../common/models/cmapss.js';
import { FailureModel } from '../../common/models/failure-model.js';
import { evalRul, lastWindows, phm08 } from '../../models/eval/eval-rul.js';
import { CUT_MAX_RUL, CUT_MIN_RUL, folds, writeHeldOut } from '../../models/rul/cv.js';
import { failureModel, MANIFEST, writeCmapssFile } from '../helpers/rul.js';
import { tempDir } from '../helpers/util.js';

const SCRIPT = fileURLToPath(new URL('../../dist/models/eval/eval-rul.js', import.meta.url));

function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [SCRIPT, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

t.test('PHM08: exp(-d/13) - 1 early, exp(d/10) - 1 late', async (t) => {
  t.equal(phm08(0), 0);
  t.ok(Math.abs(phm08(-13) - (Math.E - 1)) < 1e-12);
  t.ok(Math.abs(phm08(10) - (Math.E - 1)) < 1e-12);
  t.ok(phm08(5) > phm08(-5), 'late costs more than early');
});

t.test('the script prints rmse, phm08_score and engines; the figures are the agent code path against the capped life', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const { entry, path } = failureModel();
  const train = join(dir, 'train.txt');
  const test = join(dir, 'test.txt');
  const rul = join(dir, 'rul.txt');
  writeCmapssFile(train, entry, [80, 90, 70]);
  writeCmapssFile(test, entry, [40, 25, 60, 35]);
  const truth = [12, 150, 40, 3]; // 150: above the cap, scored against min(150, rulCap)
  writeFileSync(rul, truth.join('\n') + '\n');

  const r = run(['--train', train, '--test', test, '--rul', rul, '--json']);
  t.equal(r.status, 0, r.stderr);
  const json = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
  t.match(json, { model: entry.version, engines: 4, rmse: Number, phm08_score: Number, rmse_uncapped: Number });
  t.notOk('predictions' in json, 'the JSON line holds the figures only');
  t.match(json['scalerCheck'], { matches: false }, '--train: synthetic engines are not the scaling the model was fitted on');

  // The same figures by hand: the agent's window code and the model, the true life capped at rulCap.
  const model = await FailureModel.load(entry, path);
  t.teardown(() => model.close());
  const w = lastWindows(entry, readCmapss(test));
  const out = await model.predict(w.windows, w.order.length);
  const d = truth.map((life, k) => out[k]! - Math.min(life, entry.rulCap));
  const rmse = Math.sqrt(d.reduce((s, x) => s + x * x, 0) / d.length);
  const score = d.reduce((s, x) => s + phm08(x), 0);
  t.ok(Math.abs((json['rmse'] as number) - rmse) < 1e-9, `rmse ${rmse.toFixed(3)}`);
  t.ok(Math.abs((json['phm08_score'] as number) - score) < 1e-9, `phm08_score ${score.toFixed(3)}`);
  const inProcess = await evalRul({ testFile: test, rulFile: rul, manifestFile: MANIFEST });
  t.equal(inProcess.rmse, json['rmse'], 'the script and the function agree');
  t.same(
    inProcess.predictions.map((p) => p.cycles),
    [40, 25, 60, 35],
  );
});

t.test('missing flags and a RUL file that does not fit the test set are refused', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const { entry } = failureModel();
  const test = join(dir, 'test.txt');
  const rul = join(dir, 'rul.txt');
  writeCmapssFile(test, entry, [40, 25]);
  writeFileSync(rul, '10\n');
  const usage = run(['--test', test, '--json']);
  t.equal(usage.status, 2);
  t.match(usage.stderr, /usage: npm run eval:rul/);
  const short = run(['--test', test, '--rul', rul, '--json']);
  t.equal(short.status, 1);
  t.match(short.stderr, /1 lines for 2 test engines/);
  await t.rejects(evalRul({ testFile: test, rulFile: rul, manifestFile: MANIFEST }), { code: 'EDGETWIN_ERR_BAD_REQUEST' });
});

t.test('engine-level folds: each engine held out exactly once per seed; held-out engines cut before failure', async (t) => {
  const units = Array.from({ length: 23 }, (_, i) => i + 1);
  for (const seed of [1, 2]) {
    const f = folds(units, 5, seed);
    t.equal(f.length, 5);
    t.same(
      f.flat().sort((a, b) => a - b),
      units,
      `seed ${seed}: the folds partition the engines`,
    );
    t.ok(
      f.every((x) => x.length >= 4 && x.length <= 5),
      'folds of even size',
    );
  }
  t.notSame(folds(units, 5, 1), folds(units, 5, 2), 'another seed, another split');

  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const { entry } = failureModel();
  const full = join(dir, 'train.txt');
  const lives = [200, 180, 160];
  writeCmapssFile(full, entry, lives);
  const rows = readCmapss(full);
  const held = writeHeldOut(join(dir, 'fold'), rows, [1, 3], 9, 31);
  t.same(readRulFile(held.rul), held.lives);
  const cut = readCmapss(held.test);
  t.same([...cut.keys()], [1, 3], 'only the held-out engines');
  held.lives.forEach((rul, k) => {
    const unit = [1, 3][k]!;
    t.ok(rul >= CUT_MIN_RUL && rul <= CUT_MAX_RUL, `engine ${unit}: true life ${rul} in [7, 145]`);
    t.equal(cut.get(unit)!.length, lives[unit - 1]! - rul, 'cut that many cycles before its failure');
  });
  const scored = await evalRul({ testFile: held.test, rulFile: held.rul, manifestFile: MANIFEST });
  t.equal(scored.engines, 2, 'the fold is scored by eval:rul');
});
