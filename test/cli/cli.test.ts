import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/stack.js';

t.test('--help lists the commands; each command has its own help', async (t) => {
  const main = runCli(['--help']);
  t.equal(main.status, 0);
  for (const c of ['agent', 'collector', 'cloud', 'demo']) t.match(main.stdout, new RegExp(`\\n  ${c} `));
  for (const c of ['agent', 'collector', 'cloud', 'demo']) {
    const r = runCli([c, '--help']);
    t.equal(r.status, 0, `${c} --help exits 0`);
    t.match(r.stdout, new RegExp(`Usage: edgetwin ${c}`));
  }
});

t.test('unknown commands and options are usage errors (exit 2)', async (t) => {
  const r = runCli(['frobnicate']);
  t.equal(r.status, 2);
  t.match(r.stderr, /unknown command "frobnicate".*EDGETWIN_ERR_USAGE/);
  const o = runCli(['agent', '--bogus']);
  t.equal(o.status, 2);
  t.match(o.stderr, /bogus/);
});

t.test('a bad config fails fast and names the key', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const f = join(dir, 'agent.yaml');
  writeFileSync(f, `deviceId: ok-1\nstateDir: ${dir}\nuplink:\n  inflightMax: -3\n`);
  const r = runCli(['agent', '--config', f]);
  t.equal(r.status, 1);
  t.match(r.stderr, /agent config: key "uplink\.inflightMax".*EDGETWIN_ERR_CONFIG/);
});
