/**
 * deploy/systemd/install.sh staged into a temporary root (DESTDIR): the files and modes it
 * installs, the user, ownership and systemctl steps it would run (printed, never done), the units
 * it installs, and that a second run keeps the operator's config. The real install needs root and
 * systemd; this is everything of it that can be checked without them.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { tempDir } from '../helpers/util.js';

const repo = new URL('../..', import.meta.url).pathname;
const script = join(repo, 'deploy/systemd/install.sh');

/** A release as `npm run build && npm prune --omit=dev` leaves it, minus the weight. */
function fakeRelease(dir: string, marker: string): string {
  const rel = join(dir, 'release');
  mkdirSync(join(rel, 'dist/cli'), { recursive: true });
  mkdirSync(join(rel, 'node_modules/some-dep'), { recursive: true });
  mkdirSync(join(rel, 'models'), { recursive: true });
  writeFileSync(join(rel, 'dist/cli/edgetwin.js'), `// ${marker}\n`);
  writeFileSync(join(rel, 'node_modules/some-dep/index.js'), '');
  writeFileSync(join(rel, 'package.json'), '{"name":"edgetwin"}\n');
  writeFileSync(join(rel, 'models/m.onnx'), 'model');
  return rel;
}

function stage(args: string[], destdir: string | undefined): { status: number | null; out: string; err: string } {
  const env = { ...process.env };
  if (destdir === undefined) delete env['DESTDIR'];
  else env['DESTDIR'] = destdir;
  const r = spawnSync('bash', [script, ...args], { encoding: 'utf8', env, timeout: 60_000 });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

const mode = (p: string): number => statSync(p).mode & 0o777;
const userExists = (): boolean => spawnSync('id', ['-u', 'edgetwin']).status === 0;

for (const role of ['agent', 'collector'] as const) {
  t.test(`install.sh ${role} into a staged root`, async (t) => {
    const { dir, cleanup } = tempDir();
    t.teardown(cleanup);
    const rel = fakeRelease(dir, 'first');
    const root = join(dir, 'root');
    const hadUser = userExists();
    const host = ['/etc/edgetwin', '/opt/edgetwin', `/etc/systemd/system/edgetwin-${role}.service`];
    const hostBefore = host.map((p) => existsSync(p));
    const r = stage([role, rel], root);
    t.equal(r.status, 0, r.err);

    const unit = `edgetwin-${role}.service`;
    const expected: [string, number][] = [
      ['opt/edgetwin', 0o755],
      ['etc/edgetwin', 0o750],
      ['var/lib/edgetwin', 0o750],
      [`etc/edgetwin/${role}.yaml`, 0o640],
      [`etc/edgetwin/${role}.env`, 0o600],
      [`etc/systemd/system/${unit}`, 0o644],
    ];
    for (const [p, m] of expected) t.equal(mode(join(root, p)), m, `/${p} mode ${m.toString(8)}`);
    t.same(
      readdirSync(join(root, 'opt/edgetwin')).sort(),
      ['dist', 'models', 'node_modules', 'package.json'],
      'the release is copied to /opt/edgetwin',
    );
    t.equal(readFileSync(join(root, 'opt/edgetwin/dist/cli/edgetwin.js'), 'utf8'), '// first\n');
    t.equal(
      readFileSync(join(root, `etc/systemd/system/${unit}`), 'utf8'),
      readFileSync(join(repo, 'deploy/systemd', unit), 'utf8'),
      'the unit installed is the one in the repository',
    );
    t.equal(
      readFileSync(join(root, `etc/edgetwin/${role}.yaml`), 'utf8'),
      `# See docs/configuration.md\nstateDir: /var/lib/edgetwin/${role}\n`,
    );
    t.equal(readFileSync(join(root, `etc/edgetwin/${role}.env`), 'utf8'), '', 'an empty secrets file');

    // Every path the unit names is one the script installed.
    const unitText = readFileSync(join(root, `etc/systemd/system/${unit}`), 'utf8');
    const exec = /^ExecStart=(.*)$/m.exec(unitText)?.[1] ?? '';
    for (const p of exec.split(/\s+/).filter((w) => w.startsWith('/opt/') || w.startsWith('/etc/')))
      t.ok(existsSync(join(root, p)), `ExecStart's ${p} is installed`);
    const envFile = /^EnvironmentFile=-?(.*)$/m.exec(unitText)?.[1];
    t.ok(envFile && existsSync(join(root, envFile)), `EnvironmentFile ${envFile} is installed`);

    const plan = r.out
      .split('\n')
      .filter((l) => l.startsWith('would run: '))
      .map((l) => l.slice('would run: '.length));
    const want = [
      ...(hadUser ? [] : ['useradd --system --home-dir /var/lib/edgetwin --shell /usr/sbin/nologin edgetwin']),
      'chown root:root /opt/edgetwin',
      'chown root:edgetwin /etc/edgetwin',
      'chown edgetwin:edgetwin /var/lib/edgetwin',
      `chown root:edgetwin /etc/edgetwin/${role}.yaml`,
      `chown root:root /etc/edgetwin/${role}.env`,
      `chown root:root /etc/systemd/system/${unit}`,
      'systemctl daemon-reload',
      `systemctl enable --now ${unit}`,
    ];
    t.same(plan, want, 'the user, ownership and systemctl steps are printed, in order');
    t.equal(userExists(), hadUser, 'staging created no user');
    t.same(
      host.map((p) => existsSync(p)),
      hostBefore,
      'nothing written to the real /etc or /opt',
    );

    // An upgrade: the release is replaced, the operator's config and secrets are kept.
    writeFileSync(join(root, `etc/edgetwin/${role}.yaml`), 'stateDir: /var/lib/edgetwin/mine\n');
    writeFileSync(join(root, `etc/edgetwin/${role}.env`), 'EDGETWIN_SECRET=x\n');
    writeFileSync(join(rel, 'dist/cli/edgetwin.js'), '// second\n');
    const again = stage([role, rel], root);
    t.equal(again.status, 0, again.err);
    t.equal(readFileSync(join(root, 'opt/edgetwin/dist/cli/edgetwin.js'), 'utf8'), '// second\n', 'the new release is installed');
    t.equal(readFileSync(join(root, `etc/edgetwin/${role}.yaml`), 'utf8'), 'stateDir: /var/lib/edgetwin/mine\n', 'the config is kept');
    t.equal(readFileSync(join(root, `etc/edgetwin/${role}.env`), 'utf8'), 'EDGETWIN_SECRET=x\n', 'the secrets are kept');
    t.notOk(again.out.includes(`/etc/edgetwin/${role}.yaml`), 'and their ownership left alone');
  });
}

t.test('install.sh refuses bad input before touching anything', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const rel = fakeRelease(dir, 'x');
  const root = join(dir, 'root');
  const role = stage(['cloud', rel], root);
  t.equal(role.status, 2);
  t.match(role.err, /role must be agent or collector/);
  const unbuilt = stage(['agent', join(dir, 'nowhere')], root);
  t.equal(unbuilt.status, 1);
  t.match(unbuilt.err, /build it first/);
  const relative = stage(['agent', rel], 'relative/root');
  t.equal(relative.status, 2);
  t.match(relative.err, /DESTDIR must be an absolute path/);
  t.notOk(existsSync(root), 'no staged root was created');
});
