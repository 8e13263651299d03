/**
 * The runbook a drift alert names (issue 16): the file the `model_drift` signal and the drift API
 * point at exists and walks from the alert to retraining (both trainers with `--register`), a
 * comparison of figures and a staged rollout; every `npm run` command in it is a real script, and
 * every flag it passes to a trainer or to eval:rul is one that script accepts, so the runbook cannot
 * drift from the code.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { DRIFT_RUNBOOK } from '../../cloud/drift/drift-service.js';

const root = new URL('../..', import.meta.url).pathname;
const text = readFileSync(join(root, DRIFT_RUNBOOK), 'utf8');
const scripts = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;

/** The option names of the parseArgs call in a script's source. */
function optionsOf(source: string): Set<string> {
  const body = readFileSync(join(root, source), 'utf8');
  return new Set([...body.matchAll(/^\s+'?([a-z][a-z-]*)'?: \{ type: '(?:string|boolean)'/gm)].map((m) => m[1]!));
}

const SOURCES: Record<string, string> = {
  'train:rul': 'models/rul/build.ts',
  'train:model': 'models/train/build.ts',
  'eval:rul': 'models/eval/eval-rul.ts',
};

t.test('the drift alert names a runbook that exists and walks alert → retraining → comparison → staged rollout', async (t) => {
  t.ok(existsSync(join(root, DRIFT_RUNBOOK)), `${DRIFT_RUNBOOK} exists`);
  const at = (s: string | RegExp): number => (typeof s === 'string' ? text.indexOf(s) : text.search(s));
  t.ok(at('model-drift') >= 0 && at('model_drift') >= 0, 'starts from the alert (rule model-drift, signal model_drift)');
  t.ok(at('/drift?cohort=') >= 0, 'reads the drift API for the cohort');
  const retrainRul = at(/npm run train:rul -- [^\n]*--register/);
  const retrainAnomaly = at(/npm run train:model -- [^\n]*--register/);
  t.ok(retrainRul > 0 && retrainAnomaly > 0, 'retraining of both kinds registers a candidate');
  const compare = at('crossValidation');
  const promoteDevice = at(/-d '\{"device":/);
  t.ok(compare > retrainRul, 'then compares the figures');
  t.ok(promoteDevice > compare, 'then promotes to one device first');
  t.ok(at(/one device[^\n]*then a tag[^\n]*then the site/) > 0, 'and widens in stages');
  t.ok(existsSync(join(root, 'docs/runbooks/roll-back-a-model.md')), 'the rollback runbook it links exists');
});

t.test('every npm command in the runbook is a script, every flag one it accepts', async (t) => {
  const commands = [...text.matchAll(/npm run ([a-z:]+)(?: -- ([^\n#]*))?/g)];
  t.ok(commands.length >= 3);
  for (const [, script, args] of commands) {
    t.ok(scripts[script!], `npm run ${script} is a script`);
    const source = SOURCES[script!];
    if (!source || !args) continue;
    const accepted = optionsOf(source);
    t.ok(accepted.size > 3, `${source}: options found`);
    for (const [, flag] of args.matchAll(/--([a-z][a-z-]*)/g)) t.ok(accepted.has(flag!), `${script} accepts --${flag}`);
  }
});
