/**
 * Why a reading alerted: exact Shapley values of the alerting head's surprise over the reading's
 * feature groups (common/models/features.ts featureGroups) plus the reading's own `value`.
 *
 * The quantity explained is the surprise the detector saw, f = |y − μ(x)| / b(x) ÷ the seasonal
 * divisor, for the head that drove the score (the more surprised head when the range rule fired).
 * A coalition S keeps the alert's own values for the groups in S and puts the stream's baseline —
 * its running mean feature row and mean target, i.e. a typical moment of this stream — in the
 * others. All 2^k coalitions (k ≤ 8; 6 for ctx-v1) go through the model in one batched inference
 * call, so the values are exact: they sum to f(alert) − f(baseline), a group the head never reads
 * gets exactly 0, and ranking them says what made this reading surprising compared with usual.
 */
import { featureGroups } from '../../common/models/features.js';
import { FORECAST_COLUMNS, type OnnxModel } from '../../common/models/onnx-model.js';
import { MAX_PLAYERS, shapleyValues } from './shapley.js';
import type { Driver } from './stream-detector.js';

/** The reading's own value, as a player beside the feature groups. */
export const VALUE_GROUP = 'value';
/** Groups carried on the wire per alert, by |contribution|. */
export const TOP_GROUPS = 3;

export interface ExplainRequest {
  /** The alert's feature row and the stream's baseline row (copies: the buffers move on). */
  row: Float32Array;
  base: Float32Array;
  /** Index of the head explained (HEADS order). */
  head: number;
  /** The head's target for the alert and for the baseline. */
  y: number;
  yBase: number;
  /** The seasonal divisor the surprise was divided by. */
  divisor: number;
  driver: Driver;
}

export interface GroupContribution {
  group: string;
  contribution: number;
}

/** What an alert carries on the wire (Reading.explain). */
export interface Explanation {
  detector: Driver;
  /** f at the alert and at the baseline: all contributions sum to surprise − baseline. */
  surprise: number;
  baseline: number;
  groups: GroupContribution[];
}

/** An explanation with every group's value, before the top ones are picked (tests, benchmarks). */
export interface FullExplanation extends Explanation {
  all: GroupContribution[];
}

export class Explainer {
  /** Player names: `value` first, then the feature groups. */
  readonly players: string[];
  private readonly columns: number[][];
  private readonly width: number;
  private buffer = new Float32Array(0);

  constructor(private readonly model: OnnxModel) {
    const groups = featureGroups(model.entry.featureRecipe);
    this.players = [VALUE_GROUP, ...groups.map((g) => g.name)];
    this.columns = [[], ...groups.map((g) => g.columns)];
    this.width = model.featureCount;
    if (this.players.length > MAX_PLAYERS) throw new RangeError(`at most ${MAX_PLAYERS} explanation groups, got ${this.players.length}`);
  }

  /** Coalitions per explanation: 2^players. */
  get coalitions(): number {
    return 1 << this.players.length;
  }

  /** Explains every request with one inference call for all their coalitions. */
  async explain(requests: readonly ExplainRequest[]): Promise<FullExplanation[]> {
    if (requests.length === 0) return [];
    const n = this.coalitions;
    const w = this.width;
    const rows = requests.length * n;
    if (this.buffer.length < rows * w) this.buffer = new Float32Array(rows * w);
    const buf = this.buffer;
    requests.forEach((r, q) => {
      for (let S = 0; S < n; S++) {
        const at = (q * n + S) * w;
        buf.set(r.base, at);
        for (let g = 1; g < this.players.length; g++) {
          if ((S & (1 << g)) === 0) continue;
          for (const c of this.columns[g]!) buf[at + c] = r.row[c]!;
        }
      }
    });
    const out = await this.model.forecast(buf, rows);
    return requests.map((r, q) => {
      const v = new Float64Array(n);
      for (let S = 0; S < n; S++) {
        const o = (q * n + S) * FORECAST_COLUMNS + 2 * r.head;
        const y = S & 1 ? r.y : r.yBase;
        v[S] = (Math.abs(y - out[o]!) * Math.exp(-out[o + 1]!)) / r.divisor;
      }
      const phi = shapleyValues(v, this.players.length);
      const all = this.players.map((group, i) => ({ group, contribution: phi[i]! }));
      const groups = [...all].sort((a, b) => Math.abs(b.contribution) - Math.abs(a.contribution)).slice(0, TOP_GROUPS);
      return { detector: r.driver, surprise: v[n - 1]!, baseline: v[0]!, groups, all };
    });
  }
}
