#!/usr/bin/env node
// The agent's own dependency set, found from what it loads rather than kept by hand:
//   node deploy/agent-deps.mjs APP_DIR [--prune]
// APP_DIR holds dist/ and node_modules/ (a staged package). From the agent's entry points (the CLI
// entry, the daemon runner, every module under dist/agent, and the `backup`/`restore`/`status`
// commands a device operator uses) it follows static and dynamic imports through dist/, collects
// the npm packages they name, and adds those packages' own dependencies (dependencies and
// optionalDependencies that are installed). It prints the set, one package per line, and with
// --prune deletes every other package from APP_DIR/node_modules and every dist/ file the agent
// does not load, and rewrites APP_DIR/package.json's dependencies to the agent's direct ones; it
// also drops what no running process reads: type declarations (@types/*, *.d.ts), source maps,
// and the build leftovers of native addons (C sources, object files, static libraries).
// The cloud's and the collector's packages (fastify, DuckDB, aedes, the Azure SDKs…) so stay out.
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';

const [appArg, ...flags] = process.argv.slice(2);
if (!appArg) {
  console.error('usage: node deploy/agent-deps.mjs APP_DIR [--prune]');
  process.exit(2);
}
const app = resolve(appArg);
const dist = join(app, 'dist');
const modules = join(app, 'node_modules');
const builtins = new Set(builtinModules);

const walk = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.js') ? [join(dir, e.name)] : [],
  );

const entries = [
  join(dist, 'cli/edgetwin.js'),
  join(dist, 'cli/daemon.js'),
  join(dist, 'cli/backup.js'),
  join(dist, 'cli/status.js'),
  ...walk(join(dist, 'agent')),
];
// The CLI entry loads every command lazily; only the agent's are followed from it.
const CLI_COMMANDS_NOT_FOLLOWED = /^\.\.\/(collector|cloud)\/|^\.\/(demo|collector-devices|cloud-admin|invoke)\.js$/;
const SPEC = /(?:\bimport\s*(?:[\w*{}\s,$]+\sfrom\s*)?|\bexport\s*[\w*{}\s,$]*\sfrom\s*|\bimport\s*\(\s*)['"]([^'"]+)['"]/g;

const files = new Set();
const packages = new Set();
const queue = [...entries];
while (queue.length > 0) {
  const file = queue.pop();
  if (files.has(file) || !existsSync(file)) continue;
  files.add(file);
  const text = readFileSync(file, 'utf8');
  const isCliEntry = file === join(dist, 'cli/edgetwin.js');
  for (const m of text.matchAll(SPEC)) {
    const spec = m[1];
    if (spec.startsWith('.')) {
      if (isCliEntry && CLI_COMMANDS_NOT_FOLLOWED.test(spec)) continue;
      queue.push(resolve(dirname(file), spec));
    } else if (!spec.startsWith('node:') && !builtins.has(spec)) {
      const parts = spec.split('/');
      packages.add(spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]);
    }
  }
}
const direct = [...packages].sort();

/** A package's directory as Node would find it from `from` (nested node_modules first). */
function locate(name, from) {
  for (let dir = from; ; dir = dirname(dir)) {
    const p = join(dir, 'node_modules', name);
    if (existsSync(join(p, 'package.json'))) return p;
    if (dir === app || dir === dirname(dir)) return undefined;
  }
}

const needed = new Set();
const missing = [];
const pending = direct.map((name) => [name, app]);
while (pending.length > 0) {
  const [name, from] = pending.pop();
  const dir = locate(name, from);
  if (!dir) {
    missing.push(name);
    continue;
  }
  if (needed.has(dir)) continue;
  needed.add(dir);
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  for (const dep of Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies })) pending.push([dep, dir]);
}
// A direct dependency that is not installed is an error; an optional one of a package is not.
const missingDirect = missing.filter((n) => direct.includes(n));
if (missingDirect.length > 0) {
  console.error(`agent-deps: not installed: ${missingDirect.join(', ')}`);
  process.exit(1);
}
const topLevel = [...needed].filter((d) => dirname(d) === modules || dirname(dirname(d)) === modules).map((d) => relative(modules, d));
console.log([...new Set(topLevel)].sort().join('\n'));

if (flags.includes('--prune')) {
  // node_modules: keep the needed packages (a scope directory stays when one of its packages does).
  for (const e of readdirSync(modules)) {
    if (e === '.bin' || e === '.package-lock.json') continue;
    const names = e.startsWith('@') ? readdirSync(join(modules, e)).map((n) => `${e}/${n}`) : [e];
    for (const n of names) if (!needed.has(join(modules, n))) rmSync(join(modules, n), { recursive: true, force: true });
    if (e.startsWith('@') && readdirSync(join(modules, e)).length === 0) rmSync(join(modules, e), { recursive: true });
  }
  rmSync(join(modules, '.bin'), { recursive: true, force: true });
  rmSync(join(modules, '.package-lock.json'), { force: true });
  slim(modules);
  // dist/: only the modules the agent loads (and their source maps).
  for (const f of walk(dist)) if (!files.has(f)) rmSync(f, { force: true });
  for (const f of readdirSync(dist, { recursive: true }).map((r) => join(dist, r))) {
    if (f.endsWith('.js.map') && !files.has(f.slice(0, -4))) rmSync(f, { force: true });
  }
  const prune = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) prune(join(dir, e.name));
    if (dir !== dist && readdirSync(dir).length === 0) rmSync(dir, { recursive: true });
  };
  prune(dist);
  const pkgFile = join(app, 'package.json');
  const pkg = JSON.parse(readFileSync(pkgFile, 'utf8'));
  const versions = { ...pkg.dependencies };
  pkg.dependencies = Object.fromEntries(direct.map((n) => [n, versions[n] ?? '*']));
  delete pkg.devDependencies;
  delete pkg.scripts;
  pkg.description = `${pkg.description ?? 'edgetwin'} (agent package: only what the agent loads)`;
  writeFileSync(pkgFile, `${JSON.stringify(pkg, null, 2)}\n`);
  rmSync(join(app, 'package-lock.json'), { force: true });
  process.stderr.write(`agent-deps: kept ${needed.size} packages, ${files.size} modules\n`);
}

/**
 * Files no running process reads: declarations, maps, packages' own tests and examples, prebuilt
 * binaries of other platforms, and a native addon's build leftovers.
 */
function slim(root) {
  const USELESS = /\.(d\.ts|d\.mts|d\.cts|map|tsbuildinfo)$/;
  const NOT_RUNTIME = new Set(['test', 'tests', '__tests__', 'example', 'examples', 'benchmark', 'benchmarks', '.github']);
  const allFiles = (dir) =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? allFiles(join(dir, e.name)) : [join(dir, e.name)]));
  const allDirs = (dir) =>
    readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .flatMap((e) => [join(dir, e.name), ...allDirs(join(dir, e.name))]);
  for (const d of allDirs(root)) if (NOT_RUNTIME.has(d.split('/').pop()) && existsSync(d)) rmSync(d, { recursive: true, force: true });
  for (const f of allFiles(root)) if (USELESS.test(f)) rmSync(f, { force: true });
  for (const scope of readdirSync(root).filter((e) => e === '@types')) rmSync(join(root, scope), { recursive: true, force: true });
  // prebuildify's prebuilds/<platform>-<arch>: only this machine's (the package is built per target).
  for (const d of allDirs(root).filter((d) => d.endsWith('/prebuilds') && existsSync(d)))
    for (const e of readdirSync(d))
      if (!e.startsWith(`${process.platform}-`) || !e.includes(process.arch)) rmSync(join(d, e), { recursive: true });
  // Compiled addons: the .node file is what loads; sources, objects and static libraries were for
  // building it (`deps`, `src`: unless the package's entry lives there).
  for (const f of allFiles(root).filter((f) => f.endsWith('binding.gyp'))) {
    const pkg = dirname(f);
    const main = String(JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')).main ?? 'index.js').replace(/^\.\//, '');
    for (const d of ['deps', 'src']) if (!main.startsWith(`${d}/`)) rmSync(join(pkg, d), { recursive: true, force: true });
    const release = join(pkg, 'build', 'Release');
    if (existsSync(release)) {
      for (const e of readdirSync(join(pkg, 'build'))) if (e !== 'Release') rmSync(join(pkg, 'build', e), { recursive: true, force: true });
      for (const e of readdirSync(release))
        if (!e.endsWith('.node') || e.startsWith('test_')) rmSync(join(release, e), { recursive: true, force: true });
    }
  }
}
