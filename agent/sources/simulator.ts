/**
 * Simulated sensors for demos, load tests and anomaly-model evaluation. Each metric follows a
 * device profile: a base level with a daily cycle, slow drift (sensor ageing) and correlated
 * noise. Faults (spike, step, stuck, drift, dropout) can be scheduled or drawn at random; each one
 * is written as a ground-truth label window to `labelsFile` (JSON lines) when it starts, so that a
 * detector's alerts can be scored against it. Seeded per device: two devices differ, a rerun of
 * one device with the same start time repeats itself.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Type, { type Static } from 'typebox';
import { configDefaults, Section } from '../../common/config.js';
import { METRIC_PATTERN } from '../../common/wire/record.js';
import { mulberry32 } from '../../common/random.js';
import type { Source, SourceContext, SourceReading } from '../types.js';

export type ProfileName = 'temperature' | 'vibration_rms' | 'pressure' | 'motor_current' | 'humidity';
export const FAULT_KINDS = ['spike', 'step', 'stuck', 'drift', 'dropout'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface MetricProfile {
  metric: string;
  unit: string;
  base: number;
  /** Amplitude of the daily cycle (peak at 15:00 UTC; negative for anti-phase, e.g. humidity). */
  dailyAmplitude: number;
  /** Standard deviation of the noise. */
  noise: number;
  /** AR(1) coefficient in [0, 1): 0 is white noise, near 1 a slow wander. */
  noiseCorrelation: number;
  /** Slow drift, in the metric's unit per day. */
  driftPerDay: number;
  min: number | null;
  max: number | null;
  decimals: number;
}

export const SIMULATOR_PROFILES: Record<ProfileName, MetricProfile> = {
  temperature: {
    metric: 'temperature',
    unit: 'degC',
    base: 21,
    dailyAmplitude: 3,
    noise: 0.2,
    noiseCorrelation: 0.7,
    driftPerDay: 0.01,
    min: -40,
    max: 125,
    decimals: 3,
  },
  vibration_rms: {
    metric: 'vibration_rms',
    unit: 'mm/s',
    base: 2.5,
    dailyAmplitude: 0.3,
    noise: 0.1,
    noiseCorrelation: 0.3,
    driftPerDay: 0.005,
    min: 0,
    max: null,
    decimals: 3,
  },
  pressure: {
    metric: 'pressure',
    unit: 'kPa',
    base: 101.3,
    dailyAmplitude: 0.5,
    noise: 0.05,
    noiseCorrelation: 0.9,
    driftPerDay: 0,
    min: 0,
    max: null,
    decimals: 3,
  },
  motor_current: {
    metric: 'motor_current',
    unit: 'A',
    base: 12,
    dailyAmplitude: 2,
    noise: 0.3,
    noiseCorrelation: 0.5,
    driftPerDay: 0.02,
    min: 0,
    max: null,
    decimals: 3,
  },
  humidity: {
    metric: 'humidity',
    unit: '%',
    base: 45,
    dailyAmplitude: -8,
    noise: 0.5,
    noiseCorrelation: 0.9,
    driftPerDay: 0,
    min: 0,
    max: 100,
    decimals: 2,
  },
};

const PROFILE_NAMES = ['temperature', 'vibration_rms', 'pressure', 'motor_current', 'humidity'] as const satisfies readonly ProfileName[];
const nullableNumber = Type.Unsafe<number | null>({ type: ['number', 'null'] });

/** A profile by name, with any field overridden; or a metric given in full (`metric`, `unit`, `base` at least). */
const simulatedMetricSchema = Section(
  {
    profile: Type.Optional(Type.Enum(PROFILE_NAMES)),
    metric: Type.Optional(Type.String({ pattern: METRIC_PATTERN })),
    unit: Type.Optional(Type.String({ maxLength: 32 })),
    base: Type.Optional(Type.Number()),
    dailyAmplitude: Type.Optional(Type.Number()),
    noise: Type.Optional(Type.Number({ minimum: 0 })),
    noiseCorrelation: Type.Optional(Type.Number({ minimum: 0, exclusiveMaximum: 1 })),
    driftPerDay: Type.Optional(Type.Number()),
    min: Type.Optional(nullableNumber),
    max: Type.Optional(nullableNumber),
    decimals: Type.Optional(Type.Integer({ minimum: 0, maximum: 12 })),
  },
  { anyOf: [{ required: ['profile'] }, { required: ['metric', 'unit', 'base'] }] },
);
export type SimulatedMetric = Static<typeof simulatedMetricSchema>;

const faultSpecSchema = Section({
  metric: Type.String(),
  kind: Type.Enum(FAULT_KINDS),
  /** Start, in ms after the source's first sample. */
  afterMs: Type.Integer({ minimum: 0 }),
  /** Length; defaults to one interval for a spike and 60 s otherwise. */
  durationMs: Type.Optional(Type.Integer({ minimum: 1 })),
  /** Offset in the metric's unit (spike, step; drift reaches it at the end). Default: 10 × noise, at least 5 % of base. */
  magnitude: Type.Optional(Type.Number()),
});
export type FaultSpec = Static<typeof faultSpecSchema>;

export const simulatorConfigSchema = Section({
  enabled: Type.Boolean({ default: true }),
  intervalMs: Type.Integer({ minimum: 1, default: 1000 }),
  /** Readings per metric per tick (burst), for load tests. */
  readingsPerTick: Type.Integer({ minimum: 1, maximum: 100000, default: 1 }),
  seed: Type.Optional(Type.Integer()),
  metrics: Type.Array(simulatedMetricSchema, {
    minItems: 1,
    default: [{ profile: 'temperature' }, { profile: 'vibration_rms' }, { profile: 'pressure' }],
  }),
  faults: Type.Array(faultSpecSchema, { default: [] }),
  /** Random faults: expected count per metric per hour (0: none), with these kinds and mean duration. */
  randomFaults: Section({
    ratePerHour: Type.Number({ minimum: 0, default: 0 }),
    kinds: Type.Array(Type.Enum(FAULT_KINDS), { minItems: 1, default: [...FAULT_KINDS] }),
    meanDurationMs: Type.Integer({ minimum: 1, default: 60_000 }),
  }),
  /** Ground-truth labels, JSON lines; defaults to <stateDir>/simulator-labels.jsonl. */
  labelsFile: Type.Optional(Type.String({ minLength: 1 })),
});
export type SimulatorConfig = Static<typeof simulatorConfigSchema>;
export const simulatorDefaults: SimulatorConfig = configDefaults(simulatorConfigSchema);

/** One ground-truth label: the fault window [start, end) on one metric of one device. */
export interface FaultLabel {
  device: string;
  metric: string;
  kind: FaultKind;
  start: number;
  end: number;
  magnitude: number;
}

/** Seeded noise: the same device id (or seed) gives the same readings. */
export const seededRandom = mulberry32;

export function hashSeed(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return h >>> 0;
}

const DAY_MS = 86_400_000;
const PEAK_MS = 15 * 3_600_000;

export function resolveMetric(m: SimulatedMetric): MetricProfile {
  const base = m.profile ? SIMULATOR_PROFILES[m.profile] : undefined;
  const defaults: MetricProfile = base ?? {
    metric: '',
    unit: '',
    base: 0,
    dailyAmplitude: 0,
    noise: 0,
    noiseCorrelation: 0,
    driftPerDay: 0,
    min: null,
    max: null,
    decimals: 3,
  };
  const out = { ...defaults };
  for (const [k, v] of Object.entries(m)) if (k !== 'profile' && v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

interface ActiveFault extends FaultLabel {
  held?: number;
}

interface MetricState {
  p: MetricProfile;
  ar: number;
  last: number;
  fault: ActiveFault | undefined;
}

export class SimulatorSource implements Source {
  readonly name = 'simulator';
  private timer: NodeJS.Timeout | undefined;
  private readonly random: () => number;
  private readonly metrics: MetricState[];
  private t0: number | undefined;
  private scheduled: FaultSpec[];
  /** Every label written, in start order (also in labelsFile). */
  readonly labels: FaultLabel[] = [];
  private ctx: SourceContext | undefined;
  private intervalMs: number;

  constructor(
    private readonly cfg: SimulatorConfig,
    private readonly deviceId: string,
  ) {
    this.intervalMs = cfg.intervalMs;
    this.random = seededRandom(cfg.seed ?? hashSeed(deviceId));
    this.metrics = cfg.metrics.map((m) => {
      const p = resolveMetric(m);
      return { p, ar: 0, last: p.base, fault: undefined };
    });
    this.scheduled = [...(cfg.faults ?? [])].sort((a, b) => a.afterMs - b.afterMs);
  }

  private gaussian(): number {
    const u = 1 - this.random();
    const v = this.random();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** Starts a fault now (tests, operators); it is labelled like a scheduled one. */
  inject(spec: Omit<FaultSpec, 'afterMs'>, now = Date.now()): FaultLabel {
    const m = this.metrics.find((s) => s.p.metric === spec.metric);
    if (!m) throw new Error(`simulator: no metric "${spec.metric}"`);
    return this.begin(m, spec, now);
  }

  private begin(m: MetricState, spec: Omit<FaultSpec, 'afterMs'>, now: number): FaultLabel {
    const duration = spec.durationMs ?? (spec.kind === 'spike' ? this.intervalMs : 60_000);
    const magnitude = spec.magnitude ?? Math.max(10 * m.p.noise, 0.05 * Math.abs(m.p.base), 1e-3);
    const label: FaultLabel = { device: this.deviceId, metric: m.p.metric, kind: spec.kind, start: now, end: now + duration, magnitude };
    m.fault = { ...label, held: m.last };
    this.labels.push(label);
    if (this.cfg.labelsFile) {
      try {
        mkdirSync(dirname(this.cfg.labelsFile), { recursive: true });
        appendFileSync(this.cfg.labelsFile, `${JSON.stringify(label)}\n`);
      } catch (err) {
        this.ctx?.log.warn({ err, file: this.cfg.labelsFile }, 'simulator: cannot write fault label');
      }
    }
    return label;
  }

  private startFaults(now: number): void {
    const t0 = (this.t0 ??= now);
    while (this.scheduled.length > 0 && t0 + this.scheduled[0]!.afterMs <= now) {
      const spec = this.scheduled.shift()!;
      const m = this.metrics.find((s) => s.p.metric === spec.metric);
      if (m) this.begin(m, spec, t0 + spec.afterMs);
    }
    const rf = this.cfg.randomFaults;
    if (rf && rf.ratePerHour > 0) {
      const p = (rf.ratePerHour * this.intervalMs) / 3_600_000;
      for (const m of this.metrics) {
        if (m.fault || this.random() >= p) continue;
        const kind = rf.kinds[Math.floor(this.random() * rf.kinds.length)]!;
        const durationMs =
          kind === 'spike' ? this.intervalMs : Math.max(this.intervalMs, Math.round(-Math.log(1 - this.random()) * rf.meanDurationMs));
        const sign = this.random() < 0.5 ? -1 : 1;
        this.begin(m, { metric: m.p.metric, kind, durationMs, magnitude: sign * Math.max(10 * m.p.noise, 0.05 * Math.abs(m.p.base)) }, now);
      }
    }
  }

  private value(m: MetricState, now: number): number | undefined {
    const p = m.p;
    const phase = Math.sin((2 * Math.PI * (now - PEAK_MS + DAY_MS / 4)) / DAY_MS);
    const phi = p.noiseCorrelation;
    m.ar = phi * m.ar + Math.sqrt(1 - phi * phi) * p.noise * this.gaussian();
    let v = p.base + p.dailyAmplitude * phase + (p.driftPerDay * (now - (this.t0 ?? now))) / DAY_MS + m.ar;
    const f = m.fault;
    if (f && now >= f.end) m.fault = undefined;
    else if (f) {
      if (f.kind === 'dropout') return undefined;
      if (f.kind === 'stuck') return f.held;
      if (f.kind === 'spike' || f.kind === 'step') v += f.magnitude;
      if (f.kind === 'drift') v += (f.magnitude * (now - f.start)) / (f.end - f.start);
    }
    if (p.min !== null && v < p.min) v = p.min;
    if (p.max !== null && v > p.max) v = p.max;
    const k = 10 ** p.decimals;
    return Math.round(v * k) / k;
  }

  /** One tick's readings at time `now`; exposed for tests and benchmarks. */
  sample(now: number): SourceReading[] {
    this.startFaults(now);
    const out: SourceReading[] = [];
    for (let k = 0; k < this.cfg.readingsPerTick; k++) {
      for (const m of this.metrics) {
        const value = this.value(m, now);
        if (value === undefined) continue;
        m.last = value;
        out.push({ ts: now, metric: m.p.metric, value, unit: m.p.unit });
      }
    }
    return out;
  }

  start(ctx: SourceContext): void {
    this.ctx = ctx;
    this.tick();
    this.timer = setInterval(this.tick, this.intervalMs);
  }

  private readonly tick = (): void => this.ctx?.emit(this.sample(Date.now()));

  /** Applies a new sampling interval live (desired `samplingIntervalMs`); undefined restores the configured one. */
  setIntervalMs(ms: number | undefined): number {
    this.intervalMs = ms ?? this.cfg.intervalMs;
    if (this.timer) {
      clearInterval(this.timer);
      this.timer = setInterval(this.tick, this.intervalMs);
    }
    return this.intervalMs;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
