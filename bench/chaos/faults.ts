/**
 * Plays a fault schedule against a ChaosCluster: each fault starts at its time and is undone after
 * its duration (a killed daemon is started again on the same state, a link healed). Faults that
 * overlap on one link stack (the link is in the worst mode any of them asks for); a kill of a
 * daemon that is already down is skipped and logged as such. Every action goes to the log.
 */
import type { ChaosCluster, ManagedDaemon } from './cluster.js';
import type { Fault, FaultKind } from './schedule.js';
import type { FaultyTcpProxy } from './tcp-proxy.js';

/** Stacks the faults that hold one link. */
class LinkState {
  partition = 0;
  blackhole = 0;
  delays: number[] = [];

  constructor(private readonly proxy: FaultyTcpProxy) {}

  apply(): void {
    const p = this.proxy;
    const wasHoled = p.mode === 'blackhole';
    const mode = this.partition > 0 ? 'partition' : this.blackhole > 0 ? 'blackhole' : 'pass';
    if (mode === 'pass' && wasHoled) p.heal();
    else p.mode = mode;
    if (mode === 'partition') p.cutAll();
    p.delayMs = this.delays.length ? Math.max(...this.delays) : 0;
  }
}

export class FaultInjector {
  readonly injected: Record<string, number> = {};
  readonly skipped: Record<string, number> = {};
  private readonly links = new Map<FaultyTcpProxy, LinkState>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly pending = new Set<Promise<void>>();
  /** Faults started and not yet undone. */
  active = 0;
  /** Restarts that failed (each retried up to five times). */
  startFailures = 0;

  constructor(
    private readonly cluster: ChaosCluster,
    private readonly log: (line: string) => void,
  ) {}

  private link(p: FaultyTcpProxy): LinkState {
    let s = this.links.get(p);
    if (!s) this.links.set(p, (s = new LinkState(p)));
    return s;
  }

  /** Schedules every fault relative to now; resolves once all have been undone. */
  async play(faults: readonly Fault[]): Promise<void> {
    const t0 = Date.now();
    const all = faults.map(
      (f) =>
        new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            this.timers.delete(timer);
            const run = this.run(f, t0).catch((err: unknown) => this.log(`fault ${f.kind} failed: ${String(err)}`));
            this.pending.add(run);
            void run.finally(() => {
              this.pending.delete(run);
              resolve();
            });
          }, f.atMs);
          this.timers.add(timer);
        }),
    );
    await Promise.all(all);
  }

  private count(kind: FaultKind, applied: boolean): void {
    const m = applied ? this.injected : this.skipped;
    m[kind] = (m[kind] ?? 0) + 1;
  }

  private async hold(ms: number): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
  }

  private async killAndRestart(f: Fault, d: ManagedDaemon, t0: number): Promise<void> {
    if (!d.up) {
      this.count(f.kind, false);
      this.log(`t+${secs(t0)}s ${f.kind} ${d.name}: skipped, already down`);
      return;
    }
    const pid = d.pid;
    await d.kill9();
    this.count(f.kind, true);
    this.log(`t+${secs(t0)}s ${f.kind} ${d.name} (pid ${pid}) kill -9; restart in ${f.durationMs} ms`);
    await this.hold(f.durationMs);
    for (let attempt = 1; ; attempt++) {
      try {
        await d.start();
        break;
      } catch (err) {
        // A daemon that cannot start again on its own state is a finding, not a reason to stop the run.
        this.log(`t+${secs(t0)}s ${d.name} failed to start (attempt ${attempt}): ${String(err).split('\n')[0]}`);
        this.startFailures++;
        if (attempt >= 5) throw err;
        await this.hold(1000);
      }
    }
    this.log(`t+${secs(t0)}s ${d.name} restarted on the same state (pid ${d.pid})`);
  }

  private async run(f: Fault, t0: number): Promise<void> {
    const c = this.cluster;
    this.active++;
    try {
      switch (f.kind) {
        case 'kill_agent':
          return await this.killAndRestart(f, c.agents[f.target ?? 0]!, t0);
        case 'kill_collector':
          return await this.killAndRestart(f, c.collectors[f.collector ?? 0]!, t0);
        case 'cloud_outage':
          // The cloud's address refuses connections while it is away. (Behind a proxy that accepts and
          // then closes, a collector started during the outage can stall its desired feed: see
          // docs/reliability.md, "Findings".)
          await c.sinkLink.down();
          try {
            return await this.killAndRestart(f, c.cloud, t0);
          } finally {
            await c.sinkLink.up();
          }
        case 'slow_sink': {
          const s = this.link(c.sinkLink);
          s.delays.push(f.delayMs ?? 500);
          s.apply();
          this.count(f.kind, true);
          this.log(`t+${secs(t0)}s slow_sink collectors→cloud +${f.delayMs} ms per chunk for ${f.durationMs} ms`);
          await this.hold(f.durationMs);
          s.delays.splice(s.delays.indexOf(f.delayMs ?? 500), 1);
          s.apply();
          return;
        }
        case 'cut_connections': {
          let cut = 0;
          for (const i of f.targets ?? []) cut += c.agentLinks[i]!.cutAll();
          this.count(f.kind, true);
          this.log(`t+${secs(t0)}s cut_connections agents ${fmt(f.targets)}: ${cut} connections reset`);
          await this.hold(f.durationMs);
          for (const i of f.targets ?? []) c.agentLinks[i]!.cutAll();
          return;
        }
        case 'partition':
        case 'blackhole':
        case 'delay': {
          const states = (f.targets ?? []).map((i) => this.link(c.agentLinks[i]!));
          for (const s of states) {
            if (f.kind === 'partition') s.partition++;
            else if (f.kind === 'blackhole') s.blackhole++;
            else s.delays.push(f.delayMs ?? 200);
            s.apply();
          }
          this.count(f.kind, true);
          this.log(
            `t+${secs(t0)}s ${f.kind} agents ${fmt(f.targets)}${f.kind === 'delay' ? ` +${f.delayMs} ms per chunk` : ''} for ${f.durationMs} ms`,
          );
          await this.hold(f.durationMs);
          for (const s of states) {
            if (f.kind === 'partition') s.partition--;
            else if (f.kind === 'blackhole') s.blackhole--;
            else s.delays.splice(s.delays.indexOf(f.delayMs ?? 200), 1);
            s.apply();
          }
          return;
        }
      }
    } finally {
      this.active--;
    }
  }

  /** Cancels faults not yet started and waits for running ones to be undone. */
  async cancel(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await Promise.all([...this.pending]);
  }

  get total(): number {
    return Object.values(this.injected).reduce((a, b) => a + b, 0);
  }
}

function secs(t0: number): string {
  return ((Date.now() - t0) / 1000).toFixed(1);
}

function fmt(targets: number[] | undefined): string {
  return (targets ?? []).map((t) => `#${t}`).join(',');
}
