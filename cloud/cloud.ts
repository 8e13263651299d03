import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { createLogger, type Logger } from '../common/log.js';
import { createRegistry, type Registry } from '../common/metrics.js';
import type { CloudConfig } from './config.js';
import { buildServer } from './server.js';
import { TwinStore } from './twin-store.js';

export interface CloudDeps {
  log?: Logger;
  registry?: Registry;
}

export class Cloud {
  readonly log: Logger;
  readonly registry: Registry;
  readonly store: TwinStore;
  readonly app: FastifyInstance;
  port = 0;

  constructor(readonly cfg: CloudConfig, deps: CloudDeps = {}) {
    this.log = deps.log ?? createLogger('cloud', cfg.log);
    this.registry = deps.registry ?? createRegistry('cloud', true);
    this.store = new TwinStore(cfg.stateDir, this.log);
    this.app = buildServer(cfg, { store: this.store, log: this.log, registry: this.registry });
  }

  get url(): string {
    return `http://${this.cfg.http.host}:${this.port}`;
  }

  async start(): Promise<void> {
    await this.app.listen({ host: this.cfg.http.host, port: this.cfg.http.port });
    this.port = (this.app.server.address() as AddressInfo).port;
    this.log.info({ url: this.url }, 'cloud twin API listening');
  }

  async stop(): Promise<void> {
    await this.app.close();
    this.store.close();
    this.log.info('cloud stopped');
  }
}
