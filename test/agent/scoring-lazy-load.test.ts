/**
 * onnxruntime is loaded only by an agent that needs it: its library is ≈ 6 MB of RSS before a
 * session and ≈ 35-40 MB with one, which a scoring-off agent, and one whose model the small-graph
 * engine runs (the committed forecaster), must not pay. Checked in a fresh process on the compiled
 * agent (`npm run build`), by whether libonnxruntime is mapped after createAgent.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { fromRoot } from '../../models/eval/repo.js';
import { tempDir } from '../helpers/util.js';

const CREATE_AGENT = fileURLToPath(new URL('../../dist/agent/create-agent.js', import.meta.url));
const CONFIG = fileURLToPath(new URL('../../dist/agent/config.js', import.meta.url));

/**
 * Builds (without starting) an agent with this `scoring.enabled` and engine (the failure model, a
 * 1-D CNN only onnxruntime runs, is off); says whether onnxruntime got mapped.
 */
function ortMappedAfterCreate(t: Test, enabled: boolean, engine = 'auto'): boolean {
  const { dir: stateDir, cleanup } = tempDir();
  t.teardown(cleanup);
  const script = `
    const { readFileSync } = await import('node:fs');
    const { createAgent } = await import(${JSON.stringify(CREATE_AGENT)});
    const { loadAgentConfig } = await import(${JSON.stringify(CONFIG)});
    const cfg = loadAgentConfig(undefined, { deviceId: 'lazy-1', stateDir: ${JSON.stringify(stateDir)}, admin: { enabled: false }, twin: { enabled: false },
      scoring: { enabled: ${enabled}, engine: '${engine}', manifestFile: ${JSON.stringify(fromRoot('models/manifest.json'))} },
      failure: { enabled: false } }, {});
    const agent = await createAgent(cfg, { sources: [] });
    process.stdout.write(readFileSync('/proc/self/maps', 'utf8').includes('libonnxruntime') ? 'mapped' : 'not mapped');
    await agent.stop();
  `;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    env: { ...process.env, EDGETWIN_LOG_LEVEL: 'silent' },
  });
  t.equal(child.status, 0, `child exited cleanly: ${child.stderr}`);
  return child.stdout.trim() === 'mapped';
}

t.test(
  'onnxruntime is loaded only when the model needs it',
  { skip: process.platform !== 'linux' && 'reads /proc/self/maps' },
  async (t) => {
    t.equal(ortMappedAfterCreate(t, false), false, 'scoring.enabled false: libonnxruntime not mapped');
    t.equal(ortMappedAfterCreate(t, true), false, 'scoring on, engine auto: the small graph runs the forecaster, no onnxruntime');
    t.equal(ortMappedAfterCreate(t, true, 'onnxruntime'), true, 'scoring on, engine onnxruntime: mapped (the check can see it)');
  },
);
