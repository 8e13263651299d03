/**
 * Simulated sensors: a few metrics per device with a daily cycle and Gaussian noise. Seeded per
 * device so that two devices differ but a rerun of one device is repeatable.
 */
import type { Source, SourceContext, SourceReading } from '../types.js';

export interface SimulatedMetric {
  metric: string;
  unit: string;
  base: number;
  /** Amplitude of the daily cycle. */
  dailyAmplitude: number;
  /** Standard deviation of the noise. */
  noise: number;
}

export interface SimulatorConfig {
  enabled: boolean;
  intervalMs: number;
  /** Readings per metric per tick (burst), for load tests. */
  readingsPerTick: number;
  seed?: number;
  metrics: SimulatedMetric[];
}

export const simulatorDefaults: SimulatorConfig = {
  enabled: true,
  intervalMs: 1000,
  readingsPerTick: 1,
  metrics: [
    { metric: 'temperature', unit: 'degC', base: 21, dailyAmplitude: 3, noise: 0.2 },
    { metric: 'vibration_rms', unit: 'mm/s', base: 2.5, dailyAmplitude: 0.3, noise: 0.1 },
    { metric: 'pressure', unit: 'kPa', base: 101.3, dailyAmplitude: 0.5, noise: 0.05 },
  ],
};

export const simulatorConfigSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    enabled: { type: 'boolean' },
    intervalMs: { type: 'integer', minimum: 1 },
    readingsPerTick: { type: 'integer', minimum: 1, maximum: 100000 },
    seed: { type: 'integer' },
    metrics: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['metric', 'unit', 'base', 'dailyAmplitude', 'noise'],
        properties: {
          metric: { type: 'string', minLength: 1 },
          unit: { type: 'string' },
          base: { type: 'number' },
          dailyAmplitude: { type: 'number' },
          noise: { type: 'number', minimum: 0 },
        },
      },
    },
  },
} as const;

/** mulberry32: tiny, fast, good enough for sensor noise. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function hashSeed(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return h >>> 0;
}

const DAY_MS = 86_400_000;

export class SimulatorSource implements Source {
  readonly name = 'simulator';
  private timer: NodeJS.Timeout | undefined;
  private readonly random: () => number;

  constructor(private readonly cfg: SimulatorConfig, deviceId: string) {
    this.random = seededRandom(cfg.seed ?? hashSeed(deviceId));
  }

  private gaussian(): number {
    const u = 1 - this.random();
    const v = this.random();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** One tick's readings at time `now`; exposed for tests and benchmarks. */
  sample(now: number): SourceReading[] {
    const out: SourceReading[] = [];
    const phase = Math.sin((2 * Math.PI * (now % DAY_MS)) / DAY_MS);
    for (let k = 0; k < this.cfg.readingsPerTick; k++) {
      for (const m of this.cfg.metrics) {
        const value = m.base + m.dailyAmplitude * phase + m.noise * this.gaussian();
        out.push({ ts: now, metric: m.metric, value: Math.round(value * 1000) / 1000, unit: m.unit });
      }
    }
    return out;
  }

  start(ctx: SourceContext): void {
    const tick = (): void => ctx.emit(this.sample(Date.now()));
    tick();
    this.timer = setInterval(tick, this.cfg.intervalMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
