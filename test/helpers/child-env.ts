/**
 * Imported for its side effect by the helpers every process-spawning test loads (util, cli, fuzz).
 *
 * tap's process tracker (@tapjs/processinfo) adds `--import=…/@tapjs/processinfo/…` to NODE_OPTIONS
 * of every process a test starts, at spawn time (a process-on-spawn listener), so each CLI run,
 * daemon, fuzz or chaos runner, and every daemon those start, loads it first: about 0.3 s of CPU per
 * process (`edgetwin --help`: 0.15 s → 0.5 s), hundreds of processes over the suite. It serves
 * coverage, which `npm test` turns off (_TAPJS_PROCESSINFO_COVERAGE_=0) and which does not follow
 * the compiled CLI anyway. A listener of our own, run after tap's, takes it out again; with coverage
 * on (`npm run test:coverage`) nothing changes. Without tap's listener (a test run by plain node)
 * there is nothing to do.
 */
type SpawnOptions = { env: Record<string, string | undefined> };
type OnSpawnState = { listeners?: ((o: SpawnOptions) => void)[] };

const PROCESSINFO = /\s*"?--import=\S*@tapjs[/\\]processinfo\S*?"?(?=\s|$)/g;
const state = (globalThis as unknown as Record<symbol, OnSpawnState | undefined>)[Symbol.for('process-on-spawn@*:singletonId')];

if (process.env['_TAPJS_PROCESSINFO_COVERAGE_'] === '0' && state?.listeners) {
  state.listeners.push((o) => {
    const options = o.env['NODE_OPTIONS'];
    if (!options?.includes('@tapjs/processinfo')) return;
    const rest = options.replace(PROCESSINFO, '').trim();
    if (rest) o.env['NODE_OPTIONS'] = rest;
    else delete o.env['NODE_OPTIONS'];
  });
}

export {};
