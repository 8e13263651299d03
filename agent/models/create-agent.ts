/**
 * Builds an Agent with scoring as its config says. Loading a model is asynchronous (onnxruntime
 * creates its session off the constructor), so the scorer is made first and handed to the Agent;
 * the rollout then registers its desired-property appliers on the agent's twin before it starts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import { createLogger, type Logger } from '../../common/log.js';
import { createRegistry } from '../../common/metrics.js';
import { Agent, type AgentDeps } from '../agent.js';
import type { AgentConfig } from '../config.js';
import type { ModelRollout } from './model-rollout.js';

/** The folder holding edgetwin's package.json (sources or dist/ alike). */
function packageRoot(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++, dir = dirname(dir)) {
    try {
      if ((JSON.parse(readFileSync(resolve(dir, 'package.json'), 'utf8')) as { name?: string }).name === 'edgetwin') return dir;
    } catch {
      // not here; one folder up
    }
  }
  return undefined;
}

/**
 * The manifest scoring should load, or undefined when scoring is off. A relative path is looked
 * up in the working directory, then beside the installed package (a service runs from `/`).
 */
export function scoringManifest(cfg: AgentConfig, log?: Logger): string | undefined {
  const s = cfg.scoring;
  if (s.enabled === false) return undefined;
  const root = packageRoot();
  const candidates = isAbsolute(s.manifestFile) ? [s.manifestFile] : [resolve(s.manifestFile), ...(root ? [resolve(root, s.manifestFile)] : [])];
  const found = candidates.find((f) => existsSync(f));
  if (found) return found;
  if (s.enabled === true) {
    throw new EdgetwinError(ErrorCodes.CONFIG, `agent config: key "scoring.manifestFile": ${s.manifestFile} not found (looked in ${candidates.join(', ')})`, { details: { key: 'scoring.manifestFile' } });
  }
  log?.info({ manifestFile: s.manifestFile }, 'scoring off: no model manifest found (scoring.enabled is auto)');
  return undefined;
}

export async function createAgent(cfg: AgentConfig, deps: AgentDeps = {}): Promise<Agent> {
  const log = deps.log ?? createLogger(`agent:${cfg.deviceId}`, cfg.log);
  const registry = deps.registry ?? createRegistry('agent', true);
  const manifest = deps.scorer ? undefined : scoringManifest(cfg, log);
  // Imported only when scoring is on: loading onnxruntime alone costs an agent ≈ 6 MB of RSS.
  const rollout: ModelRollout | undefined = manifest
    ? await (await import('./model-rollout.js')).ModelRollout.create(cfg.scoring, manifest, { stateDir: cfg.stateDir, log, registry })
    : undefined;
  let agent: Agent;
  try {
    agent = new Agent(cfg, { ...deps, log, registry, ...(rollout ? { scorer: rollout } : {}) });
  } catch (err) {
    await rollout?.close();
    throw err;
  }
  rollout?.attach(agent);
  if (rollout) log.info({ model: rollout.modelVersion, manifest }, 'scoring on');
  return agent;
}
