/**
 * bench:agent must run the agent the way the systemd unit does: its RSS figures (≤ 100 MB in every
 * phase, docs/benchmarks.md) hold only for the same node flags and the same glibc arena limit.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';

const root = new URL('../..', import.meta.url).pathname;
const unit = readFileSync(join(root, 'deploy/systemd/edgetwin-agent.service'), 'utf8');
const script = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts['bench:agent'];

/** The node flags before the script path, e.g. ['--optimize-for-size']. */
function nodeFlags(command: string): string[] {
  const words = command.trim().split(/\s+/);
  const node = words.findIndex((w) => w === 'node' || w.endsWith('/node'));
  const flags: string[] = [];
  for (const w of words.slice(node + 1)) {
    if (!w.startsWith('--')) break;
    flags.push(w);
  }
  return flags;
}

t.test('the unit and bench:agent run node with the same flags and MALLOC_ARENA_MAX', async (t) => {
  t.ok(script, 'package.json has a bench:agent script');
  const exec = /^ExecStart=(.*)$/m.exec(unit)?.[1] ?? '';
  const benchRun = script!.split('&&').pop()!;
  t.same(nodeFlags(benchRun), nodeFlags(exec), 'same node flags');
  t.ok(nodeFlags(exec).includes('--optimize-for-size'), 'the unit runs node with --optimize-for-size');
  const unitArenas = /^Environment=MALLOC_ARENA_MAX=(\d+)$/m.exec(unit)?.[1];
  const benchArenas = /(?:^|\s)MALLOC_ARENA_MAX=(\d+)\s/.exec(benchRun)?.[1];
  t.ok(unitArenas, 'the unit sets MALLOC_ARENA_MAX');
  t.equal(benchArenas, unitArenas, 'bench:agent sets the same MALLOC_ARENA_MAX');
});
