/** Runs one suite of the compiled fuzz runner (`dist/bench/fuzz/run.js`, what `npm run fuzz` runs) and returns its figures. */
import { spawnSync } from 'node:child_process';
// Children start without tap's process tracker when coverage is off (child-env.ts says why).
import './child-env.js';
import { fileURLToPath } from 'node:url';

const RUNNER = fileURLToPath(new URL('../../dist/bench/fuzz/run.js', import.meta.url));

/** `EDGETWIN_FUZZ_FACTOR` scales the counts (1 in npm test; `npm run fuzz` uses 10). */
export const fuzzFactor = Number(process.env['EDGETWIN_FUZZ_FACTOR'] ?? 1);

export type Figures = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export function runFuzzSuite(suite: string, seed: number): Figures {
  const args = [RUNNER, '--suite', suite, '--seed', String(seed), '--factor', String(fuzzFactor), '--loris-wait-s', '0', '--json'];
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 160_000 * fuzzFactor });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return (JSON.parse(last) as Record<string, Figures>)[suite]!;
  } catch {
    throw new Error(`fuzz runner gave no figures (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
  }
}
