/**
 * DriftRecorder: every running model's inputs, errors and outputs, counted in fixed-bin
 * histograms per (model version, stream, quantity) and sent once per interval as `drift`
 * readings (common/wire/record.ts). They ride the outbox like any reading — durable, with an
 * identity, deduplicated by the cloud — so the cloud's merged counts are exact.
 *
 * Models report through `observe` (the anomaly scorer as its `observer`, the failure predictor
 * directly); bins come from the model (`define`, from its manifest entry) or the anomaly defaults.
 * Intervals end by the injected clock and are emitted at the next flush after their end (the
 * agent's runner calls `collect` through the scorer chain), so no timer runs here. Counts of an
 * interval still open when the agent stops are not sent: they were never acknowledged to anyone.
 */
import type { Logger } from '../../common/log.js';
import { counter, gauge, type Registry } from '../../common/metrics.js';
import { Histogram } from '../../common/drift/histogram.js';
import { ANOMALY_DRIFT_BINS, type DriftSpecs } from '../../common/drift/specs.js';
import type { DriftQuantity } from '../../common/models/manifest.js';
import { METRIC_PATTERN } from '../../common/wire/record.js';
import type { SourceReading } from '../types.js';
import type { DriftConfig } from './config.js';

/** What a model calls for each value it sees (ScorerOptions.observer of the anomaly scorer has this shape). */
export interface DriftObserver {
  observe(model: string, stream: string, quantity: DriftQuantity, x: number): void;
}

type Cells = Partial<Record<DriftQuantity, Histogram>>;

const metricRe = new RegExp(METRIC_PATTERN);

export class DriftRecorder implements DriftObserver {
  private readonly specs = new Map<string, DriftSpecs>();
  /** model version → stream → histograms. */
  private readonly open = new Map<string, Map<string, Cells>>();
  private count = 0;
  private from: number;
  private warned = false;
  private last: { model: string; stream: string; cells: Cells } | undefined;
  private readonly m;

  constructor(
    private readonly cfg: DriftConfig,
    private readonly opts: { now?: () => number; log?: Logger; registry?: Registry } = {},
  ) {
    this.from = this.bucket(this.now());
    const r = opts.registry;
    this.m = r
      ? {
          sent: counter(
            r,
            'edgetwin_drift_histograms_total',
            'Drift histograms sent (one per model version, stream and quantity per interval)',
          ),
          refused: counter(r, 'edgetwin_drift_values_uncounted_total', 'Values not counted in drift histograms, by reason', ['reason']),
          open: gauge(r, 'edgetwin_drift_histograms_open', 'Drift histograms of the current interval'),
        }
      : undefined;
  }

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  private bucket(t: number): number {
    return Math.floor(t / this.cfg.intervalMs) * this.cfg.intervalMs;
  }

  /** The bins of one model version (from its manifest entry); versions never defined use the anomaly defaults. */
  define(model: string, specs: DriftSpecs): void {
    this.specs.set(model, specs);
  }

  observe(model: string, stream: string, quantity: DriftQuantity, x: number): void {
    if (!this.cfg.enabled || !Number.isFinite(x)) return;
    let cells: Cells | undefined;
    const last = this.last;
    if (last && last.model === model && last.stream === stream) cells = last.cells;
    else {
      let byStream = this.open.get(model);
      if (!byStream) this.open.set(model, (byStream = new Map()));
      cells = byStream.get(stream);
      if (!cells) {
        if (!metricRe.test(stream)) return this.m?.refused.inc({ reason: 'bad_stream' });
        byStream.set(stream, (cells = {}));
      }
      this.last = { model, stream, cells };
    }
    let h = cells[quantity];
    if (!h) {
      if (this.count >= this.cfg.maxHistograms) return this.full(model, stream);
      h = cells[quantity] = new Histogram((this.specs.get(model) ?? ANOMALY_DRIFT_BINS)[quantity]);
      this.count++;
      this.m?.open.set(this.count);
    }
    h.add(x);
  }

  private full(model: string, stream: string): void {
    this.m?.refused.inc({ reason: 'max_histograms' });
    if (!this.warned)
      this.opts.log?.warn({ maxHistograms: this.cfg.maxHistograms, model, stream }, 'drift: histogram limit reached this interval');
    this.warned = true;
  }

  /**
   * The histograms of the interval that has ended, as readings (ts = its end), and a fresh
   * interval; nothing while the interval is still open.
   */
  collect(now = this.now()): SourceReading[] {
    const end = this.from + this.cfg.intervalMs;
    if (now < end) return [];
    const out: SourceReading[] = [];
    for (const [model, byStream] of this.open) {
      for (const [stream, cells] of byStream) {
        for (const quantity of ['input', 'error', 'output'] as const) {
          const h = cells[quantity];
          if (!h || h.total === 0) continue;
          out.push({
            ts: end,
            metric: stream,
            value: h.total,
            unit: '1',
            model,
            kind: 'drift',
            drift: { stream, quantity, from: this.from, ...h.pack() },
          });
        }
      }
    }
    this.open.clear();
    this.last = undefined;
    this.count = 0;
    this.warned = false;
    this.from = this.bucket(now);
    this.m?.sent.inc(out.length);
    this.m?.open.set(0);
    return out;
  }
}
