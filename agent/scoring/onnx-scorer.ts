/**
 * The agent's Scorer: per-stream feature windows → one batched onnxruntime call per chunk →
 * per-stream streaming detector (stream-detector.ts) → `score`, `model`, `alert` and, on alerts,
 * `explain` (explain.ts: exact Shapley values, one more batched call) on each reading, in place.
 *
 * Batches are scored one after the other (each call waits for the previous one), so the
 * per-stream state always sees readings in order; a model swap is queued the same way, between
 * two batches, so no reading is scored half by one model and half by another, and none is dropped.
 */
import { SerialQueue } from '../../common/serial-queue.js';
import type { Logger } from '../../common/log.js';
import type { SourceReading, Scorer } from '../types.js';
import { isEdgetwinError } from '../../common/errors.js';
import { counter, gauge, type Registry } from '../../common/metrics.js';
import { DEFAULT_SCORING, type ScoringConfig } from './config.js';
import { HEADS } from '../../common/models/features.js';
import { LEARNING_SCORE } from './likelihood.js';
import { modelPath, pickModel, readManifest, type DriftQuantity, type ModelEntry } from '../../common/models/manifest.js';
import { OnnxModel, FORECAST_COLUMNS, type SessionTuning } from '../../common/models/onnx-model.js';
import { StreamDetector, type DetectorSettings } from './stream-detector.js';
import { Explainer, type ExplainRequest } from './explain.js';

/** Sees every scored reading's model input, error and output (drift monitoring, agent/drift/). */
export interface ScoreObserver {
  observe(model: string, stream: string, quantity: DriftQuantity, x: number): void;
}

export interface ScorerOptions {
  log?: Logger;
  registry?: Registry;
  /** onnxruntime session options over edgetwin's defaults, for this model and every prepared one. */
  session?: SessionTuning;
  /** Called per scored reading with the step head's normalised target (input), its surprise (error) and the score (output). */
  observer?: ScoreObserver;
}

/** A row sent to the model, and what turns its answer back into the stream's units. */
interface Pending {
  reading: SourceReading;
  stream: StreamDetector;
  last: number;
  mean: number;
  spread: number;
}

type Metrics = {
  readings: ReturnType<typeof counter>;
  alerts: ReturnType<typeof counter>;
  explanations: ReturnType<typeof counter>;
  streams: ReturnType<typeof gauge>;
};

function withDefaults(cfg: Partial<ScoringConfig>): ScoringConfig {
  return { ...DEFAULT_SCORING, ...cfg, likelihood: { ...DEFAULT_SCORING.likelihood, ...cfg.likelihood } };
}

/** The detector settings of a model: its own calibration (manifest) and the agent's options. */
export function detectorSettings(entry: ModelEntry, cfg: ScoringConfig): DetectorSettings {
  const c = entry.calibration;
  return {
    surpriseCap: c.surpriseCap,
    seasonal: c.seasonalSurprise ?? null,
    episodeReadings: c.episodeReadings ?? 0,
    episodeMargin: c.episodeMargin ?? 0,
    countGate: c.countGate ?? 0,
    rangeTolerancePercent: cfg.rangeTolerancePercent,
    likelihood: cfg.likelihood,
  };
}

export class OnnxScorer implements Scorer {
  private model: OnnxModel;
  private settings: DetectorSettings;
  private explainer: Explainer;
  private readonly cfg: ScoringConfig;
  private readonly streams = new Map<string, StreamDetector>();
  private readonly log: Logger | undefined;
  private readonly metrics: Metrics | undefined;
  private readonly session: SessionTuning;
  private readonly observer: ScoreObserver | undefined;
  private readonly queue = new SerialQueue();
  /** Feature rows of one inference call: at most maxBatchRows × the model's width. */
  private buffer = new Float32Array(0);
  private readonly pending: Pending[] = [];
  private warnedFull = false;

  private constructor(model: OnnxModel, cfg: ScoringConfig, opts: ScorerOptions) {
    this.model = model;
    this.cfg = cfg;
    this.settings = detectorSettings(model.entry, cfg);
    this.explainer = new Explainer(model);
    this.log = opts.log?.child({ component: 'scoring' });
    this.session = opts.session ?? {};
    this.observer = opts.observer;
    this.logEngine(model);
    if (opts.registry) {
      this.metrics = {
        readings: counter(opts.registry, 'edgetwin_scoring_readings_total', 'Readings seen by the scorer, by result', ['result']),
        alerts: counter(opts.registry, 'edgetwin_scoring_alerts_total', 'Readings whose score crossed the alert threshold'),
        explanations: counter(
          opts.registry,
          'edgetwin_scoring_explanations_total',
          'Alerts explained, skipped (over explainMaxPerBatch) or failed',
          ['result'],
        ),
        streams: gauge(opts.registry, 'edgetwin_scoring_streams', 'Streams with scoring state'),
      };
    }
  }

  /** Loads a verified model from its manifest entry and file. */
  static async load(entry: ModelEntry, path: string, config: Partial<ScoringConfig> = {}, opts: ScorerOptions = {}): Promise<OnnxScorer> {
    const cfg = withDefaults(config);
    return new OnnxScorer(await OnnxModel.load(entry, path, { threads: cfg.threads, tuning: opts.session, engine: cfg.engine }), cfg, opts);
  }

  /** Loads the model `config.modelName` (default: the first) of `config.manifestFile`. */
  static async fromConfig(config: Partial<ScoringConfig> = {}, opts: ScorerOptions = {}): Promise<OnnxScorer> {
    const cfg = withDefaults(config);
    const entry = pickModel(readManifest(cfg.manifestFile), cfg.modelName);
    return OnnxScorer.load(entry, modelPath(cfg.manifestFile, entry), cfg, opts);
  }

  /** What runs the active model: 'small-graph' or 'onnxruntime'. */
  get engine(): string {
    return this.model.engine;
  }

  get modelVersion(): string {
    return this.model.version;
  }

  get alertThreshold(): number {
    return this.cfg.alertThreshold ?? this.model.entry.thresholds.alert;
  }

  /** Changes the alert threshold live (desired `thresholds`); null: each model's shipped one. Applies from the next batch. */
  setAlertThreshold(threshold: number | null): void {
    this.cfg.alertThreshold = threshold;
  }

  /** Loads a model beside the active one (sha256, shapes, smoke run); nothing changes until swap(). */
  prepare(entry: ModelEntry, path: string): Promise<OnnxModel> {
    return OnnxModel.load(entry, path, { threads: this.cfg.threads, tuning: this.session, engine: this.cfg.engine });
  }

  /**
   * Makes `next` the active model between two batches and resolves with the previous one, still
   * open so that a rollback is one more swap; the caller closes it when done. Calibration restarts
   * per stream (raw scores of two models are not comparable); feature windows are kept when the
   * recipe is the same.
   */
  swap(next: OnnxModel): Promise<OnnxModel> {
    return this.queue.run(() => {
      const prev = this.model;
      const sameRecipe = JSON.stringify(prev.entry.featureRecipe) === JSON.stringify(next.entry.featureRecipe);
      this.model = next;
      this.settings = detectorSettings(next.entry, this.cfg);
      this.explainer = new Explainer(next);
      for (const [metric, s] of this.streams) {
        if (sameRecipe) s.recalibrate(this.settings);
        else this.streams.set(metric, this.newStream());
      }
      this.log?.info({ from: prev.version, to: next.version, engine: next.engine }, 'scoring model swapped');
      this.logEngine(next);
      return prev;
    });
  }

  /** onnxruntime where the small graph was wanted costs ≈ 35-40 MB of RSS: say so, once per model. */
  private logEngine(model: OnnxModel): void {
    if (model.fallbackReason) this.log?.warn({ model: model.version, reason: model.fallbackReason }, 'scoring model runs on onnxruntime');
    else this.log?.debug({ model: model.version, engine: model.engine }, 'scoring engine');
  }

  score(readings: SourceReading[]): Promise<void> {
    return this.queue.run(() => this.scoreBatch(readings));
  }

  async close(): Promise<void> {
    await this.queue.run(() => this.model.close());
  }

  private newStream(): StreamDetector {
    return new StreamDetector(this.model.entry.featureRecipe, this.model.featureCount, this.settings);
  }

  private streamFor(metric: string): StreamDetector | undefined {
    let s = this.streams.get(metric);
    if (s) return s;
    if (this.streams.size >= this.cfg.maxStreams) {
      if (!this.warnedFull)
        this.log?.warn({ maxStreams: this.cfg.maxStreams, metric }, 'scoring: stream limit reached, new metrics stay unscored');
      this.warnedFull = true;
      return undefined;
    }
    s = this.newStream();
    this.streams.set(metric, s);
    this.metrics?.streams.set(this.streams.size);
    return s;
  }

  /**
   * Features and inference go chunk by chunk (maxBatchRows readings each), so that the feature
   * buffer and onnxruntime's activations are sized by one call, not by the largest batch the agent
   * ever flushed (its arena keeps what it grew to). The result is the same as all features first:
   * a chunk's finish() touches only detector state, which features never read.
   */
  private async scoreBatch(readings: SourceReading[]): Promise<void> {
    const model = this.model;
    const width = model.featureCount;
    const maxRows = this.cfg.maxBatchRows;
    const pending = this.pending;
    const rowsNeeded = Math.min(readings.length, maxRows) * width;
    if (this.buffer.length < rowsNeeded) this.buffer = new Float32Array(rowsNeeded);
    const explain: Array<{ reading: SourceReading; request: ExplainRequest }> = [];
    let unscored = 0;
    let failed = false;
    let i = 0;
    try {
      while (i < readings.length) {
        pending.length = 0;
        for (; i < readings.length && pending.length < maxRows; i++) {
          const r = readings[i]!;
          const stream =
            Number.isFinite(r?.value) && Number.isFinite(r?.ts) && typeof r.metric === 'string' ? this.streamFor(r.metric) : undefined;
          if (!stream) {
            unscored++;
            continue;
          }
          const f = stream.features;
          if (f.ready()) {
            f.write(r.ts, this.buffer, pending.length * width);
            pending.push({ reading: r, stream, last: f.last(), mean: f.centre(), spread: f.scale() });
          } else {
            // A stream's first reading has no past to forecast from.
            this.annotate(r, LEARNING_SCORE, model.version);
          }
          f.push(r.ts, r.value);
        }
        // After a failed call the rest of the batch still moves the feature windows on, unscored.
        if (failed) {
          unscored += pending.length;
          continue;
        }
        if (pending.length === 0) continue;
        try {
          const out = await model.forecast(this.buffer, pending.length);
          for (let j = 0; j < pending.length; j++) this.finish(pending[j]!, out, j, width, model, explain);
        } catch (err) {
          // Readings stay unscored rather than failing the agent's pipeline.
          failed = true;
          unscored += pending.filter((p) => p.reading.score === undefined).length;
          this.log?.error({ err, code: isEdgetwinError(err) ? err.code : undefined, model: model.version }, 'scoring: inference failed');
        }
      }
      await this.explainAlerts(explain);
    } finally {
      // Drops the references to this batch's readings until the next one.
      pending.length = 0;
    }
    this.metrics?.readings.inc({ result: 'unscored' }, unscored);
    this.metrics?.readings.inc({ result: 'scored' }, readings.length - unscored);
  }

  /** Scores row j of a chunk; an alert's explanation request is queued with copies of its rows. */
  private finish(p: Pending, out: Float32Array, j: number, width: number, model: OnnxModel, explain: ExplainQueue): void {
    const { reading, stream } = p;
    const score = stream.finish(reading.ts, reading.value, out, j * FORECAST_COLUMNS, p);
    this.annotate(reading, score, model.version);
    const rowAt = j * width;
    if (reading.alert) {
      if (explain.length < this.cfg.explainMaxPerBatch) {
        const d = stream.driver;
        // The range rule is explained through the head that found the reading more surprising.
        const head =
          d === 'range' ? (stream.surprise[1]! / stream.divisor[1]! > stream.surprise[0]! / stream.divisor[0]! ? 1 : 0) : HEADS.indexOf(d);
        explain.push({
          reading,
          request: {
            row: this.buffer.slice(rowAt, rowAt + width),
            base: stream.baseline.slice(),
            head,
            y: stream.targets[head]!,
            yBase: stream.baselineTargets[head]!,
            divisor: stream.divisor[head]!,
            driver: d,
          },
        });
      } else {
        this.metrics?.explanations.inc({ result: 'skipped' });
      }
    }
    stream.learnBaseline(this.buffer, rowAt);
    if (this.observer) {
      const m = reading.metric;
      this.observer.observe(model.version, m, 'input', stream.targets[0]!);
      this.observer.observe(model.version, m, 'error', stream.surprise[0]!);
      this.observer.observe(model.version, m, 'output', score);
    }
  }

  /** One inference call per group of alerts that fits maxBatchRows rows (2^groups rows each). */
  private async explainAlerts(queue: ExplainQueue): Promise<void> {
    const per = Math.max(1, Math.floor(this.cfg.maxBatchRows / this.explainer.coalitions));
    for (let at = 0; at < queue.length; at += per) {
      const part = queue.slice(at, at + per);
      try {
        const done = await this.explainer.explain(part.map((q) => q.request));
        done.forEach(
          ({ detector, surprise, baseline, groups }, k) => (part[k]!.reading.explain = { detector, surprise, baseline, groups }),
        );
        this.metrics?.explanations.inc({ result: 'explained' }, part.length);
      } catch (err) {
        // The alerts go out without an explanation rather than not at all.
        this.metrics?.explanations.inc({ result: 'failed' }, part.length);
        this.log?.warn({ err, model: this.model.version }, 'scoring: explaining alerts failed');
      }
    }
  }

  private annotate(r: SourceReading, score: number, version: string): void {
    r.score = score;
    r.model = version;
    if (score >= this.alertThreshold) {
      r.alert = true;
      this.metrics?.alerts.inc();
    }
  }
}

type ExplainQueue = Array<{ reading: SourceReading; request: ExplainRequest }>;
