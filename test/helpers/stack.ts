/** Starts real daemons in-process on loopback with ephemeral ports, for integration tests. */
import { Agent } from '../../agent/agent.js';
import { loadAgentConfig } from '../../agent/config.js';
import type { Source, SourceContext } from '../../agent/types.js';
import { Cloud } from '../../cloud/cloud.js';
import { loadCloudConfig } from '../../cloud/config.js';
import { Collector } from '../../collector/collector.js';
import { loadCollectorConfig } from '../../collector/config.js';
import { createLogger } from '../../common/log.js';

export const silent = (): ReturnType<typeof createLogger> => createLogger('test', { level: 'silent' });

export { tempDir, waitFor } from './util.js';

export async function startCloud(stateDir: string, overrides: object = {}): Promise<Cloud> {
  const cloud = new Cloud(loadCloudConfig(undefined, { stateDir, http: { port: 0 }, ...overrides }, {}), { log: silent() });
  await cloud.start();
  return cloud;
}

export async function startCollector(stateDir: string, cloudUrl: string, port = 0, overrides: object = {}): Promise<Collector> {
  const cfg = loadCollectorConfig(
    undefined,
    { stateDir, mqtt: { port }, sinks: { http: { url: cloudUrl } }, admin: { enabled: false }, runner: { flushIntervalMs: 10, backoff: { initialMs: 50, maxMs: 500 } }, ...overrides },
    {},
  );
  const c = new Collector(cfg, { log: silent() });
  await c.start();
  return c;
}

/** Emits exactly `total` readings, `perTick` at a time, with values derived from the index. */
export class CountingSource implements Source {
  readonly name = 'counting';
  emitted = 0;
  private timer: NodeJS.Timeout | undefined;
  constructor(private readonly total: number, private readonly perTick: number, private readonly intervalMs = 5) {}
  start(ctx: SourceContext): void {
    this.timer = setInterval(() => {
      const n = Math.min(this.perTick, this.total - this.emitted);
      if (n <= 0) return this.stop();
      const out = [];
      for (let i = 0; i < n; i++) {
        const k = this.emitted + i;
        out.push({ ts: 1_700_000_000_000 + k, metric: `m${k % 3}`, value: k * 0.5, unit: 'u' });
      }
      this.emitted += n;
      ctx.emit(out);
    }, this.intervalMs);
  }
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
  get done(): boolean {
    return this.emitted >= this.total;
  }
}

export async function startAgent(stateDir: string, deviceId: string, mqttPort: number, sources: Source[], overrides: object = {}): Promise<Agent> {
  const cfg = loadAgentConfig(
    undefined,
    { deviceId, stateDir, uplink: { url: `mqtt://127.0.0.1:${mqttPort}`, backoff: { initialMs: 50, maxMs: 300 } }, outbox: { flushIntervalMs: 10 }, ...overrides },
    {},
  );
  const a = new Agent(cfg, { log: silent(), sources });
  await a.start();
  return a;
}
