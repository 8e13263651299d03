/**
 * Builds an Agent with scoring as its config says. Loading a model is asynchronous (onnxruntime
 * creates its session off the constructor), so the scorer is made first and handed to the Agent;
 * the rollout then registers its desired-property appliers on the agent's twin before it starts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EdgetwinError, ErrorCodes } from '../common/errors.js';
import { createLogger, type Logger } from '../common/log.js';
import { createRegistry, type Registry } from '../common/metrics.js';
import { StateLock } from '../common/state-lock.js';
import { Agent, type AgentDeps } from './agent.js';
import type { AgentConfig } from './config.js';
import type { ModelRollout } from './rollout/model-rollout.js';
import { DriftRecorder } from './drift/drift-recorder.js';
import { failureReady } from './failure/config.js';
import type { FailureRollout } from './failure/failure-rollout.js';
import type { FailurePredictor } from './failure/failure-predictor.js';
import { ScorerChain } from './scoring/chain.js';
import type { Scorer } from './types.js';

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
  return findManifest(cfg.scoring, 'scoring', log);
}

function findManifest(s: { enabled: boolean | 'auto'; manifestFile: string }, key: string, log?: Logger): string | undefined {
  if (s.enabled === false) return undefined;
  const root = packageRoot();
  const candidates = isAbsolute(s.manifestFile)
    ? [s.manifestFile]
    : [resolve(s.manifestFile), ...(root ? [resolve(root, s.manifestFile)] : [])];
  const found = candidates.find((f) => existsSync(f));
  if (found) return found;
  if (s.enabled === true) {
    throw new EdgetwinError(
      ErrorCodes.CONFIG,
      `agent config: key "${key}.manifestFile": ${s.manifestFile} not found (looked in ${candidates.join(', ')})`,
      { details: { key: `${key}.manifestFile` } },
    );
  }
  log?.info({ manifestFile: s.manifestFile }, `${key} off: no model manifest found (${key}.enabled is auto)`);
  return undefined;
}

/**
 * The failure model's rollout, or undefined when it is off: `auto` needs a failure model in the
 * manifest and assets to run it on.
 */
async function failureRollout(
  cfg: AgentConfig,
  opts: { log: Logger; registry: Registry; drift: DriftRecorder | undefined },
): Promise<{ rollout: FailureRollout; predictor: FailurePredictor } | undefined> {
  const manifest = findManifest(cfg.failure, 'failure', opts.log);
  if (!manifest) return undefined;
  const { readManifest } = await import('../common/models/manifest.js');
  // Checked before importing the rollout: that loads onnxruntime, ≈ 6 MB of RSS, for nothing when `auto` stays off.
  if (cfg.failure.enabled === 'auto' && !failureReady(readManifest(manifest), cfg.assets)) return undefined;
  const { createFailureRollout } = await import('./failure/failure-rollout.js');
  return createFailureRollout(cfg.failure, cfg.assets, manifest, { stateDir: cfg.stateDir, ...opts });
}

export async function createAgent(cfg: AgentConfig, deps: AgentDeps = {}): Promise<Agent> {
  const log = deps.log ?? createLogger(`agent:${cfg.deviceId}`, cfg.log);
  const registry = deps.registry ?? createRegistry('agent', true);
  // The state directory is locked before the rollout touches <stateDir>/models.
  const lock = deps.lock ?? StateLock.acquire(cfg.stateDir, `agent ${cfg.deviceId}`);
  let rollout: ModelRollout | undefined;
  let failure: { rollout: FailureRollout; predictor: FailurePredictor } | undefined;
  let manifest: string | undefined;
  let agent: Agent;
  // Every model's inputs, errors and outputs, sent once per interval (docs/drift.md).
  const drift = cfg.drift.enabled && !deps.scorer ? new DriftRecorder(cfg.drift, { log, registry }) : undefined;
  try {
    manifest = deps.scorer ? undefined : scoringManifest(cfg, log);
    // Imported only when scoring is on: loading onnxruntime alone costs an agent ≈ 6 MB of RSS.
    rollout = manifest
      ? await (
          await import('./rollout/model-rollout.js')
        ).ModelRollout.create(cfg.scoring, manifest, { stateDir: cfg.stateDir, log, registry, ...(drift ? { observer: drift } : {}) })
      : undefined;
    failure = deps.scorer ? undefined : await failureRollout(cfg, { log, registry, drift });
    const scorer: Scorer | undefined = failure
      ? new ScorerChain({ anomaly: rollout, failure: failure.rollout, drift }, log)
      : rollout && drift
        ? new ScorerChain({ anomaly: rollout, drift }, log)
        : rollout;
    agent = new Agent(cfg, { ...deps, log, registry, lock, ...(scorer ? { scorer } : {}) });
  } catch (err) {
    await rollout?.close();
    await failure?.rollout.close();
    lock.release();
    throw err;
  }
  rollout?.attach(agent);
  if (failure) {
    failure.rollout.attach(agent);
    // Reported `failure`: the model, its effective threshold and the assets tracked (the dashboard draws the threshold).
    const predictor = failure.predictor;
    agent.twin?.addReporter('failure', () => predictor.snapshot());
  }
  if (rollout) log.info({ model: rollout.modelVersion, manifest }, 'scoring on');
  if (failure)
    log.info(
      { model: failure.rollout.modelVersion, assets: cfg.assets.list.length, discover: cfg.assets.discover?.pattern },
      'failure model on',
    );
  return agent;
}
