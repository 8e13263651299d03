/**
 * Every `edgetwin` command and subcommand documents its options: each option line of its --help
 * shows a default (or "required"), numbers show their unit, and every listed option is really
 * accepted. Unknown options fail with exit code 2 and a message naming the option and the help.
 * Long work prints progress: plain lines on a pipe (compaction here, through the real CLI).
 */
import { execFile } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { call, envelope, readings, startTestCloud, telemetry } from '../helpers/cloud.js';
import { CLI, runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/util.js';

const COMMANDS: string[][] = [
  [],
  ['agent'],
  ['collector'],
  ['collector', 'devices'],
  ['collector', 'devices', 'add'],
  ['collector', 'devices', 'list'],
  ['collector', 'devices', 'revoke'],
  ['collector', 'devices', 'token'],
  ['cloud'],
  ['cloud', 'tokens'],
  ['cloud', 'tokens', 'create'],
  ['cloud', 'tokens', 'list'],
  ['cloud', 'tokens', 'revoke'],
  ['cloud', 'compact'],
  ['cloud', 'retention'],
  ['cloud', 'backfill'],
  ['cloud', 'setup-db'],
  ['demo'],
  ['status'],
  ['invoke'],
  ['backup'],
  ['restore'],
];

type Run = { status: number | null; stdout: string; stderr: string };

/** The CLI without blocking: the runs below go two at a time (one per core), not one after another. */
function runCliAsync(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ status: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr });
    });
  });
}

async function twoAtATime<T>(jobs: (() => Promise<T>)[]): Promise<T[]> {
  const out = new Array<T>(jobs.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const i = next++;
      out[i] = await jobs[i]!();
    }
  };
  await Promise.all([worker(), worker()]);
  return out;
}

interface OptionLine {
  line: string;
  name: string;
  placeholder: string | undefined;
}

/** The lines of the help's "Options:" block that start with an option. */
function optionLines(help: string): OptionLine[] {
  const block = help.split(/^Options:\n/m)[1];
  if (!block) return [];
  return block
    .split('\n\n')[0]!
    .split('\n')
    .map((line) => ({ line, m: /^\s+(?:-\w, )?--([\w-]+)(?: ([A-Z][^\s]*))?\s/.exec(line) }))
    .filter((x) => x.m)
    .map(({ line, m }) => ({ line, name: m![1]!, placeholder: m![2] }));
}

// Every command's --help, then (from each help's option list) the run with every listed option given
// at once followed by an unknown one: each start of the CLI costs a few hundred ms of CPU, so one run
// shows both that the listed options are accepted and how an unknown option is refused. The parser
// (strict parseArgs) refuses the first option it does not know, in order: when the error names
// --no-such-option, every listed option before it was accepted.
const helps = await twoAtATime(COMMANDS.map((cmd) => () => runCliAsync([...cmd, '--help'])));
const given = helps.map((h) => optionLines(h.stdout).filter((o) => o.name !== 'help'));
const unknowns = await twoAtATime(
  COMMANDS.map(
    (cmd, i) => () =>
      runCliAsync([...cmd, ...given[i]!.flatMap((o) => [`--${o.name}`, ...(o.placeholder ? ['1'] : [])]), '--no-such-option']),
  ),
);

COMMANDS.forEach((cmd, i) => {
  const label = ['edgetwin', ...cmd].join(' ');
  t.test(`${label} --help lists its options with defaults and units`, async (t) => {
    const r = helps[i]!;
    t.equal(r.status, 0, r.stderr);
    const opts = optionLines(r.stdout);
    t.ok(opts.length > 0, 'has an Options: block');
    t.ok(
      opts.some((o) => o.name === 'help'),
      'lists --help',
    );
    for (const o of opts) {
      t.match(o.line, /\((default: [^)]+|required)\)/, `--${o.name} shows a default or "required"`);
      if (o.placeholder === 'N') t.match(o.line, /\[[^\]]+\] \(/, `--${o.name} shows its unit`);
    }
  });

  t.test(`${label} accepts every listed option and refuses an unknown one with exit code 2`, async (t) => {
    const r = unknowns[i]!;
    t.equal(r.status, 2, 'usage error');
    // Accepted for real: the parser names the first option it refuses, and the unknown one comes last.
    t.notMatch(r.stderr, /unknown option --(?!no-such-option\b)/, `${given[i]!.map((o) => `--${o.name}`).join(' ')} are accepted`);
    t.notMatch(r.stderr, /argument is ambiguous|missing|must be/, 'each listed option takes the value it was given');
    t.match(r.stderr, /unknown option --no-such-option/, 'names the option');
    t.match(r.stderr, /--help/, 'points at the help');
    t.match(r.stderr, /EDGETWIN_ERR_USAGE/, 'with the stable code');
  });
});

t.test('an unknown command or subcommand is a usage error naming it', async (t) => {
  for (const args of [['frob'], ['cloud', 'tokens', 'frob'], ['collector', 'devices', 'frob']]) {
    const r = runCli(args);
    t.equal(r.status, 2, args.join(' '));
    t.match(r.stderr, /"frob"/);
  }
  const missing = runCli(['collector', 'devices', 'revoke']);
  t.equal(missing.status, 2);
  t.match(missing.stderr, /needs ID/, 'a missing argument is named');
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const typo = join(dir, 'no', 'such', 'devices.db');
  const list = runCli(['collector', 'devices', 'list', '--registry', typo]);
  t.equal(list.status, 1, 'listing a registry that does not exist fails');
  t.match(list.stderr, /no device registry at .*devices\.db.*--registry/, 'naming the path and what to check');
  t.notOk(existsSync(typo), 'and does not create one');
  const bad = runCli(['demo', '--agents', 'many']);
  t.equal(bad.status, 2);
  t.match(bad.stderr, /--agents must be a whole number .* got "many"/, 'a bad number names the option and the value');
});

t.test('cloud compact prints plain progress lines when stderr is not a terminal', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cfgFile = join(dir, 'cloud.json');
  const cfg = { stateDir: join(dir, 'state'), lakehouse: { compaction: { minFiles: 2 } } };
  writeFileSync(cfgFile, JSON.stringify(cfg));
  const cloud = await startTestCloud(join(dir, 'state'), { lakehouse: cfg.lakehouse });
  const at = Date.now() - 3_600_000;
  for (let i = 0; i < 3; i++) {
    await call('POST', `${cloud.url}/v1/ingest`, {
      body: envelope(`p-${i}`, 'site-p', [telemetry('p-1', 1, readings(10, i * 10 + 1, at))]),
    });
    await cloud.flush();
  }
  await cloud.stop();

  const r = runCli(['cloud', 'compact', '--config', cfgFile, '--json']);
  t.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout) as { merged: number };
  t.ok(report.merged > 0, 'something was merged');
  const lines = r.stderr.trim().split('\n');
  t.notMatch(r.stderr, /\r/, 'no carriage returns on a pipe');
  t.match(lines[0], /^compact: 0% \(0\/\d+ runs merged\)$/, 'a first line at 0 %');
  t.equal(lines.at(-1), `compact: 100% (${report.merged}/${report.merged} runs merged)`, 'a last line at 100 %');
  const pcts = lines.map((l) => Number(/^compact: (\d+)%/.exec(l)?.[1]));
  t.same(
    [...pcts].sort((a, b) => a - b),
    pcts,
    'percentages only go up',
  );
  t.ok(
    pcts.every((p) => p >= 0 && p <= 100),
    'every line is a progress line',
  );

  const off = runCli(['cloud', 'compact', '--config', cfgFile, '--json'], { EDGETWIN_PROGRESS: 'off' });
  t.equal(off.status, 0, off.stderr);
  t.equal(off.stderr, '', 'EDGETWIN_PROGRESS=off silences it');
});
