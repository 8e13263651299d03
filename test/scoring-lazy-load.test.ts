/**
 * onnxruntime is loaded only by an agent that scores: its library alone is ≈ 6 MB of RSS, which a
 * scoring-off agent must not pay. Checked in a fresh process on the compiled agent (`npm run
 * build`), by whether libonnxruntime is mapped after createAgent.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { fromRoot } from '../models/eval/repo.js';
import { tempDir } from './helpers/util.js';

const CREATE_AGENT = fileURLToPath(new URL('../dist/agent/models/create-agent.js', import.meta.url));
const CONFIG = fileURLToPath(new URL('../dist/agent/config.js', import.meta.url));

/** Builds (without starting) an agent with this `scoring.enabled`; says whether onnxruntime got mapped. */
function ortMappedAfterCreate(t: Test, enabled: boolean): boolean {
  const { dir: stateDir, cleanup } = tempDir();
  t.teardown(cleanup);
  const script = `
    const { readFileSync } = await import('node:fs');
    const { createAgent } = await import(${JSON.stringify(CREATE_AGENT)});
    const { loadAgentConfig } = await import(${JSON.stringify(CONFIG)});
    const cfg = loadAgentConfig(undefined, { deviceId: 'lazy-1', stateDir: ${JSON.stringify(stateDir)}, admin: { enabled: false }, twin: { enabled: false },
      scoring: { enabled: ${enabled}, manifestFile: ${JSON.stringify(fromRoot('models/manifest.json'))} } }, {});
    const agent = await createAgent(cfg, { sources: [] });
    process.stdout.write(readFileSync('/proc/self/maps', 'utf8').includes('libonnxruntime') ? 'mapped' : 'not mapped');
    await agent.stop();
  `;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, EDGETWIN_LOG_LEVEL: 'silent' } });
  t.equal(child.status, 0, `child exited cleanly: ${child.stderr}`);
  return child.stdout.trim() === 'mapped';
}

t.test('a scoring-off agent never loads onnxruntime; a scoring one does', { skip: process.platform !== 'linux' && 'reads /proc/self/maps' }, async (t) => {
  t.equal(ortMappedAfterCreate(t, false), false, 'scoring.enabled false: libonnxruntime not mapped');
  t.equal(ortMappedAfterCreate(t, true), true, 'scoring.enabled true: libonnxruntime mapped (the check can see it)');
});
