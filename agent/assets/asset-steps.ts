/**
 * Turns a device's readings into completed steps per asset, for a failure model with a given list
 * of features: which metric feeds which (asset, feature), what one step is (agent/assets/config.ts),
 * and when a step is complete. Steps complete from the readings' own times, never from a timer, so
 * a replay at any speed and a live device give the same steps.
 *
 * A reading older than the asset's open step is late and left out (counted); a step in which some
 * feature never had any value yet is incomplete and skipped (counted); afterwards a feature missing
 * from a step keeps its last value.
 */
import type { AssetsConfig, StepConfig } from './config.js';

export type SkipReason = 'late' | 'incomplete' | 'over_limit';

export class AssetState {
  /** Last known value of each feature (forward-filled). */
  readonly values: Float64Array;
  private readonly sums: Float64Array;
  private readonly counts: Float64Array;
  private readonly known: Uint8Array;
  private knownCount = 0;
  private have = 0;
  /** Open step: its timestamp (by timestamp) or bucket (by interval); undefined when none is open. */
  private open: number | undefined;
  private closed = -Infinity;

  /** Bucket length of a step by interval (the schema requires `ms` there). */
  private readonly ms: number;

  constructor(
    readonly id: string,
    private readonly width: number,
    private readonly step: StepConfig,
  ) {
    this.ms = step.ms ?? 1;
    this.values = new Float64Array(width);
    this.sums = new Float64Array(width);
    this.counts = new Float64Array(width);
    this.known = new Uint8Array(width);
  }

  /** Adds one value; calls `done(ts)` for each step it completes (values then hold the step), `skip` for what it leaves out. */
  add(f: number, ts: number, v: number, done: (s: AssetState, ts: number) => void, skip: (r: SkipReason) => void): void {
    const key = this.step.by === 'interval' ? Math.floor(ts / this.ms) : ts;
    if (key <= this.closed || (this.open !== undefined && key < this.open)) return skip('late');
    if (this.open !== undefined && key > this.open) this.complete(done, skip);
    this.open = key;
    if (this.counts[f] === 0) this.have++;
    this.sums[f]! += v;
    this.counts[f]!++;
    // By timestamp a step is complete as soon as every feature has its value; by interval only a later bucket completes it.
    if (this.step.by === 'timestamp' && this.have === this.width) this.complete(done, skip);
  }

  private complete(done: (s: AssetState, ts: number) => void, skip: (r: SkipReason) => void): void {
    const key = this.open!;
    for (let f = 0; f < this.width; f++) {
      if (this.counts[f]! > 0) {
        this.values[f] = this.sums[f]! / this.counts[f]!;
        if (this.known[f] === 0) {
          this.known[f] = 1;
          this.knownCount++;
        }
      }
    }
    this.sums.fill(0);
    this.counts.fill(0);
    this.have = 0;
    this.open = undefined;
    this.closed = key;
    if (this.knownCount < this.width) return skip('incomplete');
    done(this, this.step.by === 'interval' ? (key + 1) * this.ms : key);
  }
}

interface Route {
  asset: string;
  f: number;
}

/** Metric names resolved once (a negative answer too), at most this many remembered. */
const ROUTE_CACHE_MAX = 100_000;

export class AssetSteps {
  private readonly states = new Map<string, AssetState>();
  private readonly routes = new Map<string, Route | null>();
  private readonly steps = new Map<string, StepConfig>();
  private readonly discover: RegExp | undefined;
  private readonly featureIndex: Map<string, number>;

  constructor(
    private readonly cfg: AssetsConfig,
    readonly features: readonly string[],
  ) {
    this.featureIndex = new Map(features.map((f, i) => [f, i]));
    this.discover = cfg.discover ? new RegExp(cfg.discover.pattern) : undefined;
    for (const a of cfg.list) {
      this.steps.set(a.id, a.step ?? { by: 'timestamp' });
      features.forEach((feature, f) => this.routes.set(a.metrics?.[feature] ?? `${a.id}.${feature}`, { asset: a.id, f }));
    }
  }

  get size(): number {
    return this.states.size;
  }

  private route(metric: string): Route | null {
    let r = this.routes.get(metric);
    if (r !== undefined) return r;
    r = null;
    const m = this.discover?.exec(metric);
    const f = m?.[2] === undefined ? undefined : this.featureIndex.get(m[2]);
    if (m?.[1] && f !== undefined) r = { asset: m[1], f };
    if (this.routes.size < ROUTE_CACHE_MAX) this.routes.set(metric, r);
    return r;
  }

  /** Feeds one reading; completed steps go to `done` in order. */
  add(metric: string, ts: number, value: number, done: (s: AssetState, ts: number) => void, skip: (r: SkipReason) => void): void {
    const r = this.route(metric);
    if (!r) return;
    let s = this.states.get(r.asset);
    if (!s) {
      if (this.states.size >= this.cfg.maxAssets) return skip('over_limit');
      s = new AssetState(r.asset, this.features.length, this.steps.get(r.asset) ?? this.cfg.discover?.step ?? { by: 'timestamp' });
      this.states.set(r.asset, s);
    }
    s.add(r.f, ts, value, done, skip);
  }
}
