/**
 * Builds the failure model's runner and its rollout: the configured failure model of the manifest
 * (`failure.manifestFile`, `failure.modelName`), the predictor over the configured assets, and the
 * same ModelRollout as the anomaly model, following desired `failureModel` and `failureThresholds`.
 */
import { join } from 'node:path';
import type { Logger } from '../../common/log.js';
import type { Registry } from '../../common/metrics.js';
import type { FailureModel } from '../../common/models/failure-model.js';
import { modelPath, pickFailureModel, readManifest, type FailureModelEntry } from '../../common/models/manifest.js';
import type { AssetsConfig } from '../assets/config.js';
import type { DriftRecorder } from '../drift/drift-recorder.js';
import { failureKind } from '../rollout/kinds.js';
import { ModelRollout } from '../rollout/model-rollout.js';
import type { FailureConfig } from './config.js';
import { FailurePredictor } from './failure-predictor.js';

export type FailureRollout = ModelRollout<FailureModelEntry, FailureModel>;

export async function createFailureRollout(
  cfg: FailureConfig,
  assets: AssetsConfig,
  manifestFile: string,
  opts: { stateDir: string; log: Logger; registry: Registry; drift?: DriftRecorder | undefined },
): Promise<{ rollout: FailureRollout; predictor: FailurePredictor }> {
  const verifyKey = ModelRollout.checkConfig(cfg.rollout, failureKind.configKey);
  const entry = pickFailureModel(readManifest(manifestFile), cfg.modelName);
  const path = modelPath(manifestFile, entry);
  const predictor = await FailurePredictor.load(entry, path, cfg, assets, {
    log: opts.log,
    registry: opts.registry,
    ...(opts.drift ? { drift: opts.drift } : {}),
  });
  const rollout = new ModelRollout<FailureModelEntry, FailureModel>(predictor, failureKind, { entry, path }, cfg, verifyKey, {
    dir: cfg.rollout.dir ?? join(opts.stateDir, 'models'),
    log: opts.log,
    registry: opts.registry,
  });
  return { rollout, predictor };
}
