/**
 * FailurePredictor: the agent's failure (remaining-useful-life) model. It follows the readings of
 * the configured assets (agent/assets/), keeps one window of completed steps per asset, and on each
 * completed step appends a `prediction` reading to the batch being committed:
 * `{ metric: "<asset>.rul", value: <remaining steps>, unit: <step unit>, model, kind: "prediction",
 * asset, alert? }`. A prediction below the threshold is an alert and takes the outbox's priority
 * lane, like an anomaly alert. All completed steps of one batch go through one inference call.
 *
 * Like the anomaly scorer, batches are handled one after the other and a model swap happens
 * between two batches, so each prediction comes from one model; it never throws for a bad
 * reading or a failed inference (the readings are committed without predictions, counted).
 */
import { SerialQueue } from '../../common/serial-queue.js';
import type { Logger } from '../../common/log.js';
import { counter, gauge, type Registry } from '../../common/metrics.js';
import { isEdgetwinError } from '../../common/errors.js';
import { AssetWindow } from '../../common/models/asset-window.js';
import { FailureModel } from '../../common/models/failure-model.js';
import type { FailureModelEntry } from '../../common/models/manifest.js';
import { driftSpecsOf, RUL_STREAM } from '../../common/drift/specs.js';
import { AssetSteps, type AssetState, type SkipReason } from '../assets/asset-steps.js';
import type { AssetsConfig } from '../assets/config.js';
import type { DriftRecorder } from '../drift/drift-recorder.js';
import type { Scorer, SourceReading } from '../types.js';
import type { FailureConfig } from './config.js';

interface Tracked {
  window: AssetWindow;
  lastRul: number | undefined;
}

interface Pending {
  asset: string;
  ts: number;
}

export class FailurePredictor implements Scorer {
  private model: FailureModel;
  private steps: AssetSteps;
  private readonly tracked = new Map<string, Tracked>();
  private buffer = new Float32Array(0);
  private readonly pending: Pending[] = [];
  private readonly queue = new SerialQueue();
  private alertBelow: number | null;
  private readonly log: Logger | undefined;
  private readonly m;

  private constructor(
    model: FailureModel,
    private readonly cfg: FailureConfig,
    private readonly assets: AssetsConfig,
    private readonly opts: { log?: Logger; registry?: Registry; drift?: DriftRecorder },
  ) {
    this.model = model;
    this.alertBelow = cfg.alertBelow ?? null;
    this.steps = new AssetSteps(assets, model.entry.featureRecipe.features);
    this.log = opts.log?.child({ component: 'failure' });
    opts.drift?.define(model.version, driftSpecsOf(model.entry));
    const r = opts.registry;
    this.m = r
      ? {
          predictions: counter(r, 'edgetwin_failure_predictions_total', 'Completed asset steps, by result (predicted, failed)', ['result']),
          alerts: counter(r, 'edgetwin_failure_alerts_total', 'Predictions below the alert threshold'),
          skipped: counter(r, 'edgetwin_failure_steps_skipped_total', 'Asset readings or steps left out (late, incomplete, over_limit)', [
            'reason',
          ]),
          assets: gauge(r, 'edgetwin_failure_assets', 'Assets with a window'),
        }
      : undefined;
  }

  static async load(
    entry: FailureModelEntry,
    path: string,
    cfg: FailureConfig,
    assets: AssetsConfig,
    opts: { log?: Logger; registry?: Registry; drift?: DriftRecorder } = {},
  ): Promise<FailurePredictor> {
    return new FailurePredictor(await FailureModel.load(entry, path, cfg.threads), cfg, assets, opts);
  }

  get modelVersion(): string {
    return this.model.version;
  }

  get threshold(): number {
    return this.alertBelow ?? this.model.entry.thresholds.alertBelow;
  }

  /** Changes the alert threshold live (desired `failureThresholds`); null: the configured one, else the model's. */
  setAlertThreshold(steps: number | null): void {
    this.alertBelow = steps ?? this.cfg.alertBelow ?? null;
  }

  /** Loads a model beside the active one (sha256, shapes, smoke run). */
  prepare(entry: FailureModelEntry, path: string): Promise<FailureModel> {
    return FailureModel.load(entry, path, this.cfg.threads);
  }

  /**
   * Makes `next` active between two batches; resolves with the previous model, still open (a
   * rollback is one more swap). Windows are kept when the recipe is the same, else rebuilt.
   */
  swap(next: FailureModel): Promise<FailureModel> {
    return this.queue.run(() => {
      const prev = this.model;
      if (JSON.stringify(prev.entry.featureRecipe) !== JSON.stringify(next.entry.featureRecipe)) {
        this.steps = new AssetSteps(this.assets, next.entry.featureRecipe.features);
        this.tracked.clear();
      }
      for (const t of this.tracked.values()) t.lastRul = undefined;
      this.model = next;
      this.opts.drift?.define(next.version, driftSpecsOf(next.entry));
      this.log?.info({ from: prev.version, to: next.version }, 'failure model swapped');
      return prev;
    });
  }

  score(readings: SourceReading[]): Promise<void> {
    return this.queue.run(() => this.predictBatch(readings));
  }

  async close(): Promise<void> {
    await this.queue.run(() => this.model.close());
  }

  private readonly skip = (reason: SkipReason): void => {
    this.m?.skipped.inc({ reason });
  };

  private async predictBatch(readings: SourceReading[]): Promise<void> {
    const model = this.model;
    const size = model.windowSize;
    const max = this.cfg.maxBatchWindows;
    // Room for one reading's worth of steps past `max`: a reading can close one step and complete the next.
    if (this.buffer.length < (max + 1) * size) this.buffer = new Float32Array((max + 1) * size);
    const features = model.entry.featureRecipe.features;
    const drift = this.opts.drift;
    const done = (s: AssetState, ts: number): void => {
      let t = this.tracked.get(s.id);
      if (!t) {
        this.tracked.set(s.id, (t = { window: new AssetWindow(model.entry.featureRecipe), lastRul: undefined }));
        this.m?.assets.set(this.tracked.size);
      }
      t.window.push(s.values);
      if (drift) for (let f = 0; f < features.length; f++) drift.observe(model.version, features[f]!, 'input', t.window.newest(f));
      t.window.write(this.buffer, this.pending.length * size);
      this.pending.push({ asset: s.id, ts });
    };
    const n = readings.length;
    let i = 0;
    try {
      while (i < n) {
        this.pending.length = 0;
        for (; i < n && this.pending.length < max; i++) {
          const r = readings[i]!;
          if (r.kind !== undefined || typeof r.metric !== 'string' || !Number.isFinite(r.value) || !Number.isFinite(r.ts)) continue;
          this.steps.add(r.metric, r.ts, r.value, done, this.skip);
        }
        if (this.pending.length > 0) await this.run(model, readings);
      }
    } finally {
      this.pending.length = 0;
    }
  }

  private async run(model: FailureModel, readings: SourceReading[]): Promise<void> {
    let out: Float32Array;
    try {
      out = await model.predict(this.buffer, this.pending.length);
    } catch (err) {
      this.m?.predictions.inc({ result: 'failed' }, this.pending.length);
      this.log?.error({ err, code: isEdgetwinError(err) ? err.code : undefined, model: model.version }, 'failure: inference failed');
      return;
    }
    const threshold = this.threshold;
    const unit = model.entry.unit;
    for (let k = 0; k < this.pending.length; k++) {
      const p = this.pending[k]!;
      const rul = out[k]!;
      const t = this.tracked.get(p.asset);
      if (!Number.isFinite(rul) || !t) {
        this.m?.predictions.inc({ result: 'failed' });
        continue;
      }
      const value = Math.round(rul * 100) / 100;
      this.opts.drift?.observe(model.version, RUL_STREAM, 'output', value);
      if (t.lastRul !== undefined) this.opts.drift?.observe(model.version, RUL_STREAM, 'error', value - t.lastRul + 1);
      t.lastRul = value;
      const r: SourceReading = {
        ts: p.ts,
        metric: `${p.asset}.rul`,
        value,
        unit,
        model: model.version,
        kind: 'prediction',
        asset: p.asset,
      };
      if (value < threshold) {
        r.alert = true;
        this.m?.alerts.inc();
      }
      readings.push(r);
      this.m?.predictions.inc({ result: 'predicted' });
    }
  }

  /** For tests and /healthz: assets with a window, and how many steps each has seen. */
  snapshot(): { model: string; threshold: number; assets: number } {
    return { model: this.model.version, threshold: this.threshold, assets: this.tracked.size };
  }
}
