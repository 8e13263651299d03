/**
 * The agent's Scorer: per-stream feature windows → one batched onnxruntime call per batch →
 * per-stream anomaly likelihood → `score`, `model` and `alert` on each reading, in place.
 *
 * Batches are scored one after the other (each call waits for the previous one), so the
 * per-stream state always sees readings in order; a model swap is queued the same way, between
 * two batches, so no reading is scored half by one model and half by another, and none is dropped.
 */
import type { Logger } from '../../common/log.js';
import type { SourceReading, Scorer } from '../types.js';
import { errorMessage, isEdgetwinError } from '../../common/errors.js';
import { counter, gauge, type Registry } from '../../common/metrics.js';
import { DEFAULT_SCORING, type ScoringConfig } from './config.js';
import { HEADS, StreamFeatures } from '../../common/model-features.js';
import { AnomalyLikelihood, LEARNING_SCORE } from './likelihood.js';
import { modelPath, pickModel, readManifest, type ModelEntry } from '../../common/model-manifest.js';
import { OnnxModel, FORECAST_COLUMNS, type SessionTuning } from '../../common/onnx-model.js';

export interface ScorerOptions {
  log?: Logger;
  registry?: Registry;
  /** onnxruntime session options over edgetwin's defaults, for this model and every prepared one. */
  session?: SessionTuning;
}

/** What the scorer keeps per metric. */
class Stream {
  features: StreamFeatures;
  /** One calibration per model head. */
  likelihoods: AnomalyLikelihood[];
  min = Infinity;
  max = -Infinity;
  constructor(model: OnnxModel, cfg: ScoringConfig) {
    this.features = new StreamFeatures(model.entry.featureRecipe);
    this.likelihoods = Stream.calibration(cfg);
  }
  static calibration(cfg: ScoringConfig): AnomalyLikelihood[] {
    return HEADS.map(() => new AnomalyLikelihood(cfg.likelihood));
  }
}

/** A row sent to the model, and what turns its answer back into the stream's units. */
interface Pending {
  reading: SourceReading;
  stream: Stream;
  last: number;
  mean: number;
  spread: number;
}

type Metrics = {
  readings: ReturnType<typeof counter>;
  alerts: ReturnType<typeof counter>;
  streams: ReturnType<typeof gauge>;
};

function withDefaults(cfg: Partial<ScoringConfig>): ScoringConfig {
  return { ...DEFAULT_SCORING, ...cfg, likelihood: { ...DEFAULT_SCORING.likelihood, ...cfg.likelihood } };
}

export class OnnxScorer implements Scorer {
  private model: OnnxModel;
  private readonly cfg: ScoringConfig;
  private readonly streams = new Map<string, Stream>();
  private readonly log: Logger | undefined;
  private readonly metrics: Metrics | undefined;
  private readonly session: SessionTuning;
  private queue: Promise<unknown> = Promise.resolve();
  /** Feature rows of one inference call: at most maxBatchRows × the model's width. */
  private buffer = new Float32Array(0);
  private readonly pending: Pending[] = [];
  private warnedFull = false;

  private constructor(model: OnnxModel, cfg: ScoringConfig, opts: ScorerOptions) {
    this.model = model;
    this.cfg = cfg;
    this.log = opts.log?.child({ component: 'scoring' });
    this.session = opts.session ?? {};
    if (opts.registry) {
      this.metrics = {
        readings: counter(opts.registry, 'edgetwin_scoring_readings_total', 'Readings seen by the scorer, by result', ['result']),
        alerts: counter(opts.registry, 'edgetwin_scoring_alerts_total', 'Readings whose score crossed the alert threshold'),
        streams: gauge(opts.registry, 'edgetwin_scoring_streams', 'Streams with scoring state'),
      };
    }
  }

  /** Loads a verified model from its manifest entry and file. */
  static async load(entry: ModelEntry, path: string, config: Partial<ScoringConfig> = {}, opts: ScorerOptions = {}): Promise<OnnxScorer> {
    const cfg = withDefaults(config);
    return new OnnxScorer(await OnnxModel.load(entry, path, cfg.threads, opts.session), cfg, opts);
  }

  /** Loads the model `config.modelName` (default: the first) of `config.manifestFile`. */
  static async fromConfig(config: Partial<ScoringConfig> = {}, opts: ScorerOptions = {}): Promise<OnnxScorer> {
    const cfg = withDefaults(config);
    const entry = pickModel(readManifest(cfg.manifestFile), cfg.modelName);
    return OnnxScorer.load(entry, modelPath(cfg.manifestFile, entry), cfg, opts);
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
    return OnnxModel.load(entry, path, this.cfg.threads, this.session);
  }

  /**
   * Makes `next` the active model between two batches and resolves with the previous one, still
   * open so that a rollback is one more swap; the caller closes it when done. Calibration restarts
   * per stream (raw scores of two models are not comparable); feature windows are kept when the
   * recipe is the same.
   */
  swap(next: OnnxModel): Promise<OnnxModel> {
    return this.enqueue(() => {
      const prev = this.model;
      const sameRecipe = JSON.stringify(prev.entry.featureRecipe) === JSON.stringify(next.entry.featureRecipe);
      this.model = next;
      for (const s of this.streams.values()) {
        if (!sameRecipe) s.features = new StreamFeatures(next.entry.featureRecipe);
        s.likelihoods = Stream.calibration(this.cfg);
      }
      this.log?.info({ from: prev.version, to: next.version }, 'scoring model swapped');
      return prev;
    });
  }

  score(readings: SourceReading[]): Promise<void> {
    return this.enqueue(() => this.scoreBatch(readings));
  }

  async close(): Promise<void> {
    await this.enqueue(() => this.model.close());
  }

  private enqueue<T>(task: () => T | Promise<T>): Promise<T> {
    const run = this.queue.then(task);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private streamFor(metric: string): Stream | undefined {
    let s = this.streams.get(metric);
    if (s) return s;
    if (this.streams.size >= this.cfg.maxStreams) {
      if (!this.warnedFull) this.log?.warn({ maxStreams: this.cfg.maxStreams, metric }, 'scoring: stream limit reached, new metrics stay unscored');
      this.warnedFull = true;
      return undefined;
    }
    s = new Stream(this.model, this.cfg);
    this.streams.set(metric, s);
    this.metrics?.streams.set(this.streams.size);
    return s;
  }

  /**
   * Features and inference go chunk by chunk (maxBatchRows readings each), so that the feature
   * buffer and onnxruntime's activations are sized by one call, not by the largest batch the agent
   * ever flushed (its arena keeps what it grew to). The result is the same as all features first:
   * a chunk's finish() touches only calibration and range state, which features never read.
   */
  private async scoreBatch(readings: SourceReading[]): Promise<void> {
    const model = this.model;
    const width = model.featureCount;
    const maxRows = this.cfg.maxBatchRows;
    const pending = this.pending;
    const rowsNeeded = Math.min(readings.length, maxRows) * width;
    if (this.buffer.length < rowsNeeded) this.buffer = new Float32Array(rowsNeeded);
    let unscored = 0;
    let failed = false;
    let i = 0;
    try {
      while (i < readings.length) {
        pending.length = 0;
        for (; i < readings.length && pending.length < maxRows; i++) {
          const r = readings[i]!;
          const stream = Number.isFinite(r?.value) && Number.isFinite(r?.ts) && typeof r.metric === 'string' ? this.streamFor(r.metric) : undefined;
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
          for (let j = 0; j < pending.length; j++) this.finish(pending[j]!, out, j * FORECAST_COLUMNS, model);
        } catch (err) {
          // Readings stay unscored rather than failing the agent's pipeline.
          failed = true;
          unscored += pending.filter((p) => p.reading.score === undefined).length;
          this.log?.error({ err: errorMessage(err), code: isEdgetwinError(err) ? err.code : undefined, model: model.version }, 'scoring: inference failed');
        }
      }
    } finally {
      // Drops the references to this batch's readings until the next one.
      pending.length = 0;
    }
    this.metrics?.readings.inc({ result: 'unscored' }, unscored);
    this.metrics?.readings.inc({ result: 'scored' }, readings.length - unscored);
  }

  /**
   * Turns one row of forecasts into the reading's calibrated score: each head's surprise
   * |y - mu| / b is calibrated against that head's own history on this stream, and the reading
   * is as anomalous as its most surprised head.
   */
  private finish(p: Pending, out: Float32Array, at: number, model: OnnxModel): void {
    const { reading, stream } = p;
    const cap = model.entry.calibration.surpriseCap;
    let score = 0;
    for (let h = 0; h < HEADS.length; h++) {
      const y = stream.features.target(reading.value, h === 0 ? p.last : p.mean, p.spread);
      const raw = Math.min(1, (Math.abs(y - out[at + 2 * h]!) * Math.exp(-out[at + 2 * h + 1]!)) / cap);
      const s = stream.likelihoods[h]!.update(Number.isFinite(raw) ? raw : 1);
      if (s > score) score = s;
    }
    if (this.outOfRange(stream, reading.value)) score = 1;
    this.annotate(reading, score, model.version);
  }

  /** Numenta's spatial anomaly: a value well outside everything this stream has shown so far. */
  private outOfRange(s: Stream, v: number): boolean {
    const tol = ((s.max - s.min) * this.cfg.rangeTolerancePercent) / 100;
    const out = this.cfg.rangeTolerancePercent > 0 && s.likelihoods[0]!.calibrated() && s.max > s.min && (v > s.max + tol || v < s.min - tol);
    if (v < s.min) s.min = v;
    if (v > s.max) s.max = v;
    return out;
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
