/**
 * The collector's part of model rollout: a cache that follows the cloud's promotions for this
 * site, and the MQTT handler that serves it to devices (the broker routes `$edgetwin/models/…`
 * publishes here).
 */
import { join } from 'node:path';
import type { Logger } from '../../common/log.js';
import type { Registry } from '../../common/metrics.js';
import type { CloudClient } from '../cloud/cloud-client.js';
import { CloudModelsClient } from './cloud-models-client.js';
import type { CollectorModelsConfig } from './config.js';
import { ModelCache } from './model-cache.js';
import { MqttModelHandler } from './mqtt-models.js';

export interface CollectorModelsDeps {
  siteId: string;
  stateDir: string;
  /** The client of the cloud (`models.cloudUrl`/`cloudToken` when set, else the collector's one endpoint); none: no rollouts. */
  cloud: CloudClient | undefined;
  log: Logger;
  registry: Registry;
}

export class CollectorModels {
  readonly cache: ModelCache;
  readonly handler: MqttModelHandler;

  constructor(cfg: CollectorModelsConfig, deps: CollectorModelsDeps) {
    const log = deps.log.child({ part: 'models' });
    const cloud = deps.cloud ? new CloudModelsClient(deps.cloud, { timeoutMs: cfg.timeoutMs }) : undefined;
    this.cache = new ModelCache(cfg.dir ?? join(deps.stateDir, 'models'), cloud, {
      siteId: deps.siteId,
      pollMs: cfg.pollMs,
      maxBytes: cfg.maxBytes,
      backoff: cfg.backoff,
      deviceFetches: cfg.deviceFetches,
      notFoundTtlMs: cfg.notFoundTtlMs,
      log,
      registry: deps.registry,
    });
    this.handler = new MqttModelHandler(this.cache, { chunkBytes: cfg.chunkBytes, log, registry: deps.registry });
  }

  start(): void {
    this.cache.start();
  }

  stop(): Promise<void> {
    return this.cache.stop();
  }

  health(): { poll: 'ok' | 'failing' | 'off' } {
    return { poll: this.cache.poll };
  }
}
