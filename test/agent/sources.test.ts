/**
 * Simulator profiles and injected faults with their ground-truth labels; source supervision (a
 * failing source is restarted with backoff and never stops the others); the memory bound while
 * the outbox refuses writes.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import {
  SIMULATOR_PROFILES,
  SimulatorSource,
  simulatorDefaults,
  type FaultLabel,
  type SimulatorConfig,
} from '../../agent/sources/simulator.js';
import type { Source, SourceContext, SourceReading } from '../../agent/types.js';
import { CountingSource, TestBroker, startAgent, tempDir, waitFor } from '../helpers/stack.js';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 1);

function sim(over: Partial<SimulatorConfig>): SimulatorSource {
  return new SimulatorSource({ ...simulatorDefaults, seed: 7, ...over }, 'sim-test');
}

function run(s: SimulatorSource, from: number, stepMs: number, n: number): SourceReading[] {
  const out: SourceReading[] = [];
  for (let i = 0; i < n; i++) out.push(...s.sample(from + i * stepMs));
  return out;
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

t.test('five device profiles: units, bounds, daily cycle, slow drift', async (t) => {
  const s = sim({
    metrics: (Object.keys(SIMULATOR_PROFILES) as (keyof typeof SIMULATOR_PROFILES)[]).map((profile) => ({ profile })),
    intervalMs: 600_000,
  });
  const day = run(s, T0, 600_000, 144 * 3);
  const of = (m: string): SourceReading[] => day.filter((r) => r.metric === m);
  t.same(
    [...new Set(day.map((r) => `${r.metric}:${r.unit}`))],
    ['temperature:degC', 'vibration_rms:mm/s', 'pressure:kPa', 'motor_current:A', 'humidity:%'],
  );
  for (const [name, p] of Object.entries(SIMULATOR_PROFILES)) {
    const v = of(name).map((r) => r.value);
    t.ok(
      Math.abs(mean(v) - p.base) < Math.abs(p.dailyAmplitude) * 0.3 + p.noise * 2,
      `${name}: mean ${mean(v).toFixed(2)} near base ${p.base}`,
    );
    if (p.min !== null)
      t.ok(
        v.every((x) => x >= p.min!),
        `${name}: never below ${p.min}`,
      );
    if (p.max !== null)
      t.ok(
        v.every((x) => x <= p.max!),
        `${name}: never above ${p.max}`,
      );
  }
  const at = (m: string, hour: number): number =>
    mean(
      of(m)
        .filter((r) => new Date(r.ts).getUTCHours() === hour)
        .map((r) => r.value),
    );
  t.ok(at('temperature', 15) > at('temperature', 3) + 4, 'temperature peaks in the afternoon');
  t.ok(at('humidity', 15) < at('humidity', 3) - 10, 'humidity runs against it');

  const drifting = sim({ metrics: [{ metric: 'gauge', unit: 'bar', base: 10, noise: 0.01, driftPerDay: 1 }] });
  const d = run(drifting, T0, DAY / 4, 41).map((r) => r.value);
  t.ok(Math.abs(d[40]! - d[0]! - 10) < 0.1, `drifts 1 bar a day: ${(d[40]! - d[0]!).toFixed(3)} after 10 days`);
});

t.test('injected faults change the signal as named and are labelled', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const labelsFile = join(dir, 'labels.jsonl');
  const flat = { unit: 'u', base: 100, noise: 0 };
  const s = sim({
    intervalMs: 1000,
    labelsFile,
    metrics: ['a', 'b', 'c', 'd', 'e'].map((metric) => ({ metric, ...flat })),
    faults: [
      { metric: 'a', kind: 'spike', afterMs: 10_000, magnitude: 50 },
      { metric: 'b', kind: 'step', afterMs: 10_000, durationMs: 5000, magnitude: -20 },
      { metric: 'c', kind: 'stuck', afterMs: 10_000, durationMs: 5000 },
      { metric: 'd', kind: 'drift', afterMs: 10_000, durationMs: 10_000, magnitude: 10 },
      { metric: 'e', kind: 'dropout', afterMs: 10_000, durationMs: 5000 },
    ],
  });
  // The daily cycle of a custom metric defaults to 0, so without faults every value is exactly 100.
  const readings = run(s, T0, 1000, 30);
  const series = (m: string): Map<number, number> =>
    new Map(readings.filter((r) => r.metric === m).map((r) => [(r.ts - T0) / 1000, r.value]));
  const a = series('a');
  t.equal(a.get(10), 150, 'spike: one sample up by its magnitude');
  t.equal(a.get(9), 100);
  t.equal(a.get(11), 100);
  const b = series('b');
  t.same(
    [9, 10, 14, 15].map((k) => b.get(k)),
    [100, 80, 80, 100],
    'step: level shift for its window',
  );
  const c = series('c');
  t.same(
    [10, 12, 14].map((k) => c.get(k)),
    [100, 100, 100],
    'stuck: holds the last value',
  );
  const d = series('d');
  t.same(
    [10, 15, 19, 20].map((k) => d.get(k)),
    [100, 105, 109, 100],
    'drift: a ramp to its magnitude',
  );
  const e = series('e');
  t.same(
    [9, 10, 14, 15].map((k) => e.has(k)),
    [true, false, false, true],
    'dropout: no readings in its window',
  );
  const labels = readFileSync(labelsFile, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as FaultLabel);
  t.same(
    labels.map((l) => [l.metric, l.kind, l.start - T0, l.end - T0]),
    [
      ['a', 'spike', 10_000, 11_000],
      ['b', 'step', 10_000, 15_000],
      ['c', 'stuck', 10_000, 15_000],
      ['d', 'drift', 10_000, 20_000],
      ['e', 'dropout', 10_000, 15_000],
    ],
    'one label per fault, with its window',
  );
  t.ok(labels.every((l) => l.device === 'sim-test'));
});

t.test('random faults are reproducible from the seed', async (t) => {
  const make = (): SimulatorSource =>
    sim({
      intervalMs: 60_000,
      randomFaults: { ratePerHour: 2, kinds: ['spike', 'step', 'stuck', 'drift', 'dropout'], meanDurationMs: 600_000 },
    });
  const a = make();
  const b = make();
  run(a, T0, 60_000, 600);
  run(b, T0, 60_000, 600);
  t.ok(a.labels.length > 10, `${a.labels.length} faults in 10 hours`);
  t.same(a.labels, b.labels, 'the same seed gives the same faults');
  t.same(new Set(a.labels.map((l) => l.kind)).size, 5, 'of every kind');
});

/** Fails its first `failures` starts, then emits a reading every 10 ms. */
class FlakySource implements Source {
  readonly name = 'flaky';
  starts = 0;
  private timer: NodeJS.Timeout | undefined;
  constructor(private readonly failures: number) {}
  start(ctx: SourceContext): void {
    this.starts++;
    if (this.starts <= this.failures) throw new Error(`cannot open device (attempt ${this.starts})`);
    this.timer = setInterval(() => ctx.emit([{ ts: Date.now(), metric: 'flaky', value: this.starts, unit: '1' }]), 10);
  }
  stop(): void {
    clearInterval(this.timer);
  }
}

t.test('a failing source is restarted with backoff; the others never notice', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const broker = new TestBroker();
  await broker.start();
  const flaky = new FlakySource(3);
  const steady = new CountingSource(2000, 20, 5);
  const agent = await startAgent(`${dir}/agent`, 'iso-1', broker.port, [flaky, steady], {
    twin: { enabled: false },
    sources: { backoff: { initialMs: 100, maxMs: 400 } },
  });
  t.teardown(async () => {
    await agent.stop(200);
    await broker.stop();
  });
  t.equal(agent.health().ok, false, 'unhealthy while the flaky source waits for its retry');
  t.match(agent.health().sourceErrors, { flaky: 'cannot open device (attempt 1)' });
  await waitFor(
    () => steady.done && broker.readings('iso-1').filter((r) => r.metric !== 'flaky').length === 2000,
    20_000,
    'the steady source delivered everything',
  );
  await waitFor(() => broker.readings('iso-1').some((r) => r.metric === 'flaky'), 10_000, 'the flaky source came up');
  t.equal(flaky.starts, 4, 'three failed starts, then one that worked');
  t.match(agent.health(), { ok: true, sources: { flaky: { state: 'running', failures: 3 }, counting: { state: 'running', failures: 0 } } });
  t.match(await agent.registry.metrics(), /edgetwin_agent_source_errors_total\{source="flaky"[^}]*\} 3/);
});

t.test('with the outbox refusing writes, memory stays bounded and the drops are counted', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const source = new CountingSource(40_000, 2000, 2);
  const agent = await startAgent(`${dir}/agent`, 'mem-1', 1, [source], {
    twin: { enabled: false },
    outbox: { maxBytes: 262144, whenFull: 'block', memoryMaxReadings: 5000, flushMaxReadings: 1000 },
  });
  t.teardown(() => agent.stop(100));
  let maxPending = 0;
  const poll = setInterval(
    () =>
      void agent.registry
        .metrics()
        .then((m) => (maxPending = Math.max(maxPending, Number(/edgetwin_agent_pending_readings\{[^}]*\} (\d+)/.exec(m)?.[1] ?? 0)))),
    5,
  );
  await waitFor(() => source.done, 30_000, 'the source to finish');
  await agent.flush();
  clearInterval(poll);
  const m = await agent.registry.metrics();
  const stored = agent.outbox.depth().rows;
  const dropped = Number(/edgetwin_agent_dropped_total\{reason="memory"[^}]*\} (\d+)/.exec(m)?.[1] ?? 0);
  const pending = Number(/edgetwin_agent_pending_readings\{[^}]*\} (\d+)/.exec(m)?.[1] ?? 0);
  t.ok(pending <= 5000 && maxPending <= 5000, `never more than memoryMaxReadings in memory (max seen ${maxPending})`);
  t.ok(dropped > 0, `${dropped} readings dropped at the memory bound, and counted`);
  t.equal(stored + pending + dropped, 40_000, 'every reading is stored, waiting, or counted as dropped');
});
