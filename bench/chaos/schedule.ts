/**
 * A seeded fault schedule: which fault, when, for how long. Generated up front and printed, so a
 * failing run can be replayed exactly with the same seed.
 */
import { between, pick, rng, type Rng } from './rng.js';

export type FaultKind =
  'kill_agent' | 'kill_collector' | 'cloud_outage' | 'partition' | 'blackhole' | 'delay' | 'cut_connections' | 'slow_sink';

export interface Fault {
  atMs: number;
  kind: FaultKind;
  /** For kill_agent: which agent. */
  target?: number;
  /** For partition, blackhole, delay and cut_connections: the agents whose link to their collector it hits. */
  targets?: number[];
  /** For kill_collector: which collector. */
  collector?: number;
  /** For delay and slow_sink: added to every chunk, each way. */
  delayMs?: number;
  durationMs: number;
}

const LINK_FAULTS: readonly FaultKind[] = ['partition', 'blackhole', 'delay', 'cut_connections'];

export interface ScheduleOptions {
  seed: number;
  runMs: number;
  agents: number;
  /** Faults per minute of run time. */
  perMinute: number;
  kinds: readonly FaultKind[];
  /** Fixed length of a cloud outage (the issue asks for 60 s in the full run). */
  cloudOutageMs: number;
  /** Collectors to pick from for kill_collector (default 1). */
  collectors?: number;
  /** Kinds that happen exactly once (the long cloud outage) instead of at random. */
  once?: readonly FaultKind[];
}

/** Draws what a fault of this kind hits, from the same generator, so the seed fixes it too. */
function aim(r: Rng, f: Fault, o: ScheduleOptions): Fault {
  if (f.kind === 'kill_agent') f.target = between(r, 0, o.agents - 1);
  if (f.kind === 'kill_collector') f.collector = between(r, 0, (o.collectors ?? 1) - 1);
  if (LINK_FAULTS.includes(f.kind)) {
    const n = between(r, 1, Math.max(1, Math.ceil(o.agents / 2)));
    const all = Array.from({ length: o.agents }, (_, i) => i);
    for (let i = all.length - 1; i > 0; i--) {
      const j = between(r, 0, i);
      [all[i], all[j]] = [all[j]!, all[i]!];
    }
    f.targets = all.slice(0, n).sort((a, b) => a - b);
  }
  if (f.kind === 'delay') f.delayMs = between(r, 50, 1000);
  if (f.kind === 'slow_sink') f.delayMs = between(r, 200, 2000);
  return f;
}

export function makeSchedule(o: ScheduleOptions): Fault[] {
  const r = rng(o.seed);
  const count = Math.max(1, Math.round((o.runMs / 60_000) * o.perMinute));
  const faults: Fault[] = [];
  // Leave the last fifth of the run quiet so the system can converge before the checks.
  const window = Math.floor(o.runMs * 0.8);
  const drawn = o.kinds.filter((k) => !o.once?.includes(k));
  for (let i = 0; i < count && drawn.length > 0; i++) {
    const kind = pick(r, drawn);
    const atMs = between(r, Math.floor(window * 0.05), window);
    faults.push(aim(r, { atMs, kind, durationMs: kind === 'cloud_outage' ? o.cloudOutageMs : between(r, 500, 4000) }, o));
  }
  // Every kind the run asks for happens at least once.
  for (const kind of o.kinds) {
    if (!faults.some((f) => f.kind === kind)) {
      faults.push(
        aim(
          r,
          { atMs: between(r, Math.floor(window * 0.05), window), kind, durationMs: kind === 'cloud_outage' ? o.cloudOutageMs : 2000 },
          o,
        ),
      );
    }
  }
  return faults.sort((a, b) => a.atMs - b.atMs);
}

export function describeSchedule(faults: readonly Fault[]): string {
  return faults
    .map((f) => `  t+${(f.atMs / 1000).toFixed(1).padStart(6)}s  ${f.kind.padEnd(16)} ${faultTarget(f)}${f.durationMs} ms`)
    .join('\n');
}

function faultTarget(f: Fault): string {
  const parts: string[] = [];
  if (f.target !== undefined) parts.push(`agent #${f.target}`);
  if (f.collector !== undefined) parts.push(`collector #${f.collector}`);
  if (f.targets) parts.push(`agents ${f.targets.map((t) => `#${t}`).join(',')}`);
  if (f.delayMs !== undefined) parts.push(`+${f.delayMs} ms/chunk`);
  return parts.length ? `${parts.join(' ')} for ` : '';
}
