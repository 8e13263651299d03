/**
 * ModelRollout: the agent's Scorer when scoring is on. It wraps the OnnxScorer and follows two
 * desired properties: `thresholds` (the alert threshold, live) and `model` (which version to run).
 *
 * A new `model` is fetched from the collector (or the local copy), checked (entry against desired,
 * bytes against sha256, signature when a key is configured, then onnxruntime's load, shapes and a
 * smoke run in `prepare`), and swapped in between two batches: no reading is dropped or scored
 * half by one model. The model it replaced stays loaded while the new one is on trial; if the
 * new model's alert rate explodes (alert-rate.ts) the agent swaps back by itself, and the
 * reason is reported (reported `modelRollout`, and `errors.model`). What it decided is kept in
 * `<dir>/rollout.json`, so a restart neither retries a rolled-back model nor re-runs a trial.
 */
import type { KeyObject } from 'node:crypto';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { Backoff } from '../../common/backoff.js';
import { EdgetwinError, ErrorCodes, isEdgetwinError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { counter, type Registry } from '../../common/metrics.js';
import { ModelFiles, type StoredModel } from '../../common/models/files.js';
import { parseDesiredModel, type DesiredModel } from '../../common/wire/model-protocol.js';
import { loadVerifyKey, verifyEntry } from '../../common/models/signature.js';
import { modelPath, parseModelEntry, pickModel, readManifest, type AnyModelEntry, type ModelEntry } from '../../common/models/manifest.js';
import { OnnxScorer } from '../scoring/onnx-scorer.js';
import type { DesiredApplier } from '../twin/desired-appliers.js';
import type { Scorer, SourceReading } from '../types.js';
import { AlertCount, judgeTrial, type TrialJudgement } from './alert-rate.js';
import { keepState, keyOf, loadKept, refusalOf, sameModel, type Kept, type Refusal } from './rollout-state.js';
import { CollectorModelClient } from './collector-model-client.js';
import type { AgentScoringConfig, ModelRolloutConfig } from './config.js';
import { anomalyKind, type LoadedModel, type RolloutKind, type RolloutRunner } from './kinds.js';
import type { DriftObserver } from '../drift/drift-recorder.js';

/** What the rollout needs from the agent. */
export interface RolloutHost {
  readonly log: Logger;
  readonly twin: { use(a: DesiredApplier): void; addReporter(key: string, read: () => unknown): void; report(): Promise<void> } | undefined;
  readonly uplink: { readonly mqttClient: MqttClient | undefined };
}

/** `retrying`: the desired model could not be fetched or was damaged on the way; tried again with backoff. */
type Status = 'configured' | 'trial' | 'accepted' | 'retrying' | 'refused' | 'rolled_back';

interface Running {
  version: string;
  sha256: string;
  origin: 'config' | 'rollout';
  /** Readings this model scored since it became active, and how many alerted. */
  counts: AlertCount;
}

/** Reported figures of a trial (no nulls: in a reported patch null deletes a key). */
const trialReport = ({ verdict: _v, previousAlertsPer10k: prev, ...rest }: TrialJudgement): Record<string, number> => ({
  ...rest,
  ...(prev === null ? {} : { previousAlertsPer10k: prev }),
});

export class ModelRollout<E extends AnyModelEntry = ModelEntry, M extends LoadedModel<E> = LoadedModel<E>> implements Scorer {
  private current: Running;
  /** The model replaced by the one on trial, still loaded: a rollback is one swap. */
  private baseline: (Running & { model: M }) | undefined;
  private status: Status = 'configured';
  private problem: Refusal | null = null;
  private judgement: TrialJudgement | undefined;
  private changedAt = new Date().toISOString();
  private kept: Kept;
  private queue: Promise<unknown> = Promise.resolve();
  private deciding = false;
  private closed = false;
  private host: RolloutHost | undefined;
  private client: CollectorModelClient | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly retry: Backoff;
  private readonly files: ModelFiles;
  private readonly statePath: string;
  private readonly log: Logger;
  private readonly mRollouts;
  private readonly mBytes;
  private readonly modelApplier: DesiredApplier;
  private readonly thresholdsApplier: DesiredApplier;

  constructor(
    private readonly scorer: RolloutRunner<E, M>,
    private readonly kind: RolloutKind<E>,
    private readonly configured: { entry: E; path: string },
    private readonly cfg: { rollout: ModelRolloutConfig },
    private readonly verifyKey: KeyObject | undefined,
    opts: { dir: string; log: Logger; registry: Registry },
  ) {
    this.log = opts.log.child({ part: 'model-rollout', kind: kind.kind });
    this.modelApplier = { key: kind.desiredKey, apply: (v) => this.applyModel(v) };
    this.thresholdsApplier = { key: kind.thresholdsKey, apply: (v) => this.applyThresholds(v) };
    this.files = new ModelFiles(opts.dir);
    this.statePath = join(opts.dir, kind.stateFile);
    this.kept = loadKept(this.statePath);
    this.retry = new Backoff(cfg.rollout.retry);
    this.current = { version: scorer.modelVersion, sha256: configured.entry.sha256, origin: 'config', counts: new AlertCount() };
    this.mRollouts = counter(
      opts.registry,
      `${kind.metricPrefix}_rollouts_total`,
      'Model changes by outcome: trial, activated, accepted, rolled_back, refused, failed (retried), configured',
      ['result'],
    );
    this.mBytes = counter(opts.registry, `${kind.metricPrefix}_download_bytes_total`, 'Model bytes fetched from the collector');
  }

  /** Loads the configured model (`manifestFile`, `modelName`); fails fast on a bad key file or manifest. */
  static async create(
    cfg: AgentScoringConfig,
    manifestFile: string,
    opts: { stateDir: string; log: Logger; registry: Registry; observer?: DriftObserver },
  ): Promise<ModelRollout> {
    const verifyKey = ModelRollout.checkConfig(cfg.rollout, anomalyKind.configKey);
    const entry = pickModel(readManifest(manifestFile), cfg.modelName);
    const path = modelPath(manifestFile, entry);
    const scorer = await OnnxScorer.load(entry, path, cfg, opts);
    const thresholds = { ...anomalyKind, thresholds: (v: unknown) => withDefault(anomalyKind.thresholds(v), cfg.alertThreshold) };
    return new ModelRollout(scorer, thresholds, { entry, path }, cfg, verifyKey, {
      dir: cfg.rollout.dir ?? join(opts.stateDir, 'models'),
      log: opts.log,
      registry: opts.registry,
    });
  }

  /** Checks a rollout section (`<configKey>.rollout`) and loads its public key, if any. */
  static checkConfig(r: ModelRolloutConfig, configKey: string): KeyObject | undefined {
    if (r.minReadings > r.trialReadings) {
      throw new EdgetwinError(
        ErrorCodes.CONFIG,
        `agent config: key "${configKey}.rollout.minReadings" must be <= ${configKey}.rollout.trialReadings`,
        { details: { key: `${configKey}.rollout.minReadings` } },
      );
    }
    return r.publicKeyFile ? loadVerifyKey(r.publicKeyFile, `${configKey}.rollout.publicKeyFile`) : undefined;
  }

  get modelVersion(): string {
    return this.scorer.modelVersion;
  }

  /** Registers the desired-property appliers and the `modelRollout` report (before the agent starts). */
  attach(host: RolloutHost): void {
    this.host = host;
    if (!host.twin) {
      this.log.warn(`twin.enabled is false: desired "${this.kind.desiredKey}" and "${this.kind.thresholdsKey}" are not followed`);
      return;
    }
    host.twin.use(this.thresholdsApplier);
    if (this.cfg.rollout.enabled) {
      this.client = new CollectorModelClient(() => host.uplink.mqttClient, this.cfg.rollout.requestTimeoutMs);
      host.twin.use(this.modelApplier);
    }
    host.twin.addReporter(this.kind.reportKey, () => this.snapshot());
  }

  async score(readings: SourceReading[]): Promise<void> {
    await this.scorer.score(readings);
    const cur = this.current;
    for (const r of readings) if (this.kind.judged(r, cur.version)) cur.counts.add(r.alert === true);
    if (this.baseline && !this.deciding) this.judge(cur);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    await this.serial(async () => {
      await this.baseline?.model.close();
      this.baseline = undefined;
    });
    await this.scorer.close();
  }

  private serial<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task);
    this.queue = run.catch(() => undefined);
    return run;
  }

  // ---- desired properties ----

  private applyThresholds(value: unknown): unknown {
    const { threshold, applied } = this.kind.thresholds(value);
    this.scorer.setAlertThreshold(threshold);
    return applied;
  }

  private applyModel(value: unknown): Promise<undefined> {
    return this.serial(async () => {
      clearTimeout(this.retryTimer);
      const desired = value === undefined || value === null ? null : parseDesiredModel(value, this.kind.desiredKey);
      if (!sameModel(desired, this.kept.desired)) {
        this.kept = { ...this.kept, desired, refused: null };
        this.keep();
        this.retry.reset();
      }
      if (!desired) return this.runConfigured();
      const refused = this.kept.refused;
      if (refused && sameModel(desired, refused)) {
        this.setStatus(refused.code === ErrorCodes.MODEL_ROLLED_BACK ? 'rolled_back' : 'refused', refused);
        throw new EdgetwinError(refused.code, refused.message, refused.details ? { details: refused.details } : {});
      }
      if (sameModel(desired, this.current)) {
        this.setStatus(this.baseline ? 'trial' : 'accepted', null);
        return undefined;
      }
      // Desired may name the configured model (a promotion back to it): that one is on disk already and trusted.
      const configured = sameModel(desired, this.configured.entry);
      let stored: StoredModel | undefined;
      try {
        if (!configured) stored = await this.obtain(desired);
      } catch (err) {
        // Collector away, a damaged copy: tried again with backoff, the running model carries on.
        this.mRollouts.inc({ result: 'failed' });
        this.setStatus('retrying', refusalOf(desired, err));
        this.log.warn(
          { model: desired.version, code: isEdgetwinError(err) ? err.code : undefined, err },
          'model download failed; retrying with backoff',
        );
        this.scheduleRetry();
        throw err;
      }
      let next: M;
      try {
        next = stored
          ? await this.scorer.prepare(this.checkEntry(desired, stored), this.files.filePath(desired.name, desired.version))
          : await this.scorer.prepare(this.configured.entry, this.configured.path);
      } catch (err) {
        // The model itself is unfit (signature, manifest, onnxruntime): not retried.
        const why = refusalOf(desired, err);
        this.kept = { ...this.kept, refused: why };
        this.keep();
        this.mRollouts.inc({ result: 'refused' });
        this.setStatus('refused', why);
        this.log.error({ model: desired.version, code: why.code, err }, 'model refused; the running model carries on');
        throw err;
      }
      await this.activate(next, configured ? 'config' : 'rollout', !configured && !this.kept.accepted.includes(keyOf(desired)));
      return undefined;
    });
  }

  /** The local copy when it is intact, else the collector's (checked against desired, then stored). */
  private async obtain(want: DesiredModel): Promise<StoredModel> {
    const local = this.files.get(want.name, want.version);
    if (local && local.entry.sha256 === want.sha256 && this.files.verify(want.name, want.version)) return local;
    if (!this.client) throw new EdgetwinError(ErrorCodes.UPLINK, 'no collector connection to fetch models over');
    const { stored, bytes } = await this.client.fetch(want, this.cfg.rollout.maxModelBytes);
    const e = stored.entry;
    if (e.name !== want.name || e.version !== want.version || e.sha256 !== want.sha256) {
      throw new EdgetwinError(
        ErrorCodes.MODEL,
        `model ${want.version}: the collector's entry (${e.name} ${e.version} ${e.sha256}) differs from desired`,
        { details: { model: want.version, expected: want.sha256, actual: e.sha256 } },
      );
    }
    this.files.put(stored, bytes);
    this.mBytes.inc(bytes.length);
    return stored;
  }

  private checkEntry(want: DesiredModel, stored: StoredModel): E {
    if (this.verifyKey) verifyEntry(stored.entry, stored.signature, this.verifyKey, want.version);
    return this.kind.entry(parseModelEntry(stored.entry, `model ${want.version}`), want.version);
  }

  // ---- swaps ----

  private async activate(next: M, origin: Running['origin'], onTrial: boolean): Promise<void> {
    const prev = await this.scorer.swap(next);
    if (this.baseline)
      await prev.close(); // it was on trial itself; the baseline stays the reference
    else if (onTrial) this.baseline = { ...this.current, model: prev };
    else await prev.close();
    if (!onTrial && this.baseline) {
      await this.baseline.model.close();
      this.baseline = undefined;
    }
    this.current = { version: next.version, sha256: next.entry.sha256, origin, counts: new AlertCount() };
    this.judgement = undefined;
    this.retry.reset();
    this.mRollouts.inc({ result: onTrial ? 'trial' : 'activated' });
    this.log.info({ model: next.version, previous: prev.version, trial: onTrial }, 'model swapped in');
    this.setStatus(onTrial ? 'trial' : 'accepted', null);
  }

  /** Desired has no model: back to the configured one. */
  private async runConfigured(): Promise<undefined> {
    if (this.current.origin !== 'config') {
      const base = this.baseline?.origin === 'config' ? this.baseline : undefined;
      const next = base ? base.model : await this.scorer.prepare(this.configured.entry, this.configured.path);
      await (await this.scorer.swap(next)).close();
      if (this.baseline && !base) await this.baseline.model.close();
      this.baseline = undefined;
      this.current = { version: next.version, sha256: next.entry.sha256, origin: 'config', counts: base?.counts ?? new AlertCount() };
      this.mRollouts.inc({ result: 'configured' });
      this.log.info({ model: next.version }, 'back to the configured model');
    }
    this.setStatus('configured', null);
    return undefined;
  }

  private judge(trial: Running): void {
    const j = judgeTrial(trial.counts, this.baseline!.counts, this.cfg.rollout);
    this.judgement = j;
    if (j.verdict === 'continue') return;
    this.deciding = true;
    this.serial(() => (j.verdict === 'rollback' ? this.rollBack(trial, j) : this.accept(trial)))
      .catch((err) => this.log.error({ err }, `model ${j.verdict} failed`))
      .finally(() => (this.deciding = false));
  }

  private async rollBack(trial: Running, j: TrialJudgement): Promise<void> {
    const base = this.baseline;
    if (!base || this.current !== trial) return; // something else changed the model meanwhile
    await (await this.scorer.swap(base.model)).close();
    this.baseline = undefined;
    this.current = { version: base.version, sha256: base.sha256, origin: base.origin, counts: base.counts };
    const why: Refusal = {
      version: trial.version,
      sha256: trial.sha256,
      code: ErrorCodes.MODEL_ROLLED_BACK,
      message: `model ${trial.version} rolled back to ${base.version}: ${j.alertsPer10k} alerts per 10k readings over its first ${j.readings}, limit ${j.limitPer10k} (previous model: ${j.previousAlertsPer10k ?? 'no readings'})`,
      at: new Date().toISOString(),
      details: { ...j },
    };
    this.kept = { ...this.kept, refused: why };
    this.keep();
    this.mRollouts.inc({ result: 'rolled_back' });
    this.log.warn({ model: trial.version, to: base.version, ...j }, 'model rolled back: alert rate exploded');
    this.setStatus('rolled_back', why);
    // Desired still names the model: re-applying it puts the reason under errors.model.
    this.host?.twin?.use(this.modelApplier);
  }

  private async accept(trial: Running): Promise<void> {
    if (!this.baseline || this.current !== trial) return;
    await this.baseline.model.close();
    this.baseline = undefined;
    this.kept = { ...this.kept, accepted: [...this.kept.accepted.filter((k) => k !== keyOf(trial)), keyOf(trial)].slice(-20) };
    this.keep();
    this.mRollouts.inc({ result: 'accepted' });
    this.log.info({ model: trial.version, ...this.judgement }, 'model kept after its trial');
    this.setStatus('accepted', null);
  }

  // ---- state and reporting ----

  private setStatus(status: Status, problem: Refusal | null): void {
    this.status = status;
    this.problem = problem;
    this.changedAt = new Date().toISOString();
    void this.host?.twin?.report();
  }

  private scheduleRetry(): void {
    clearTimeout(this.retryTimer);
    if (this.closed || !this.host?.twin) return;
    const twin = this.host.twin;
    // Registering the applier again makes the twin apply the current desired value to it now.
    this.retryTimer = setTimeout(() => twin.use(this.modelApplier), this.retry.next());
    this.retryTimer.unref();
  }

  /** Reported as `modelRollout`. */
  snapshot(): Record<string, unknown> {
    const p = this.problem;
    return {
      state: this.status,
      active: this.current.version,
      ...(this.kept.desired ? { desired: this.kept.desired.version } : {}),
      ...(this.baseline ? { previous: this.baseline.version } : {}),
      ...(this.baseline && this.judgement ? { trial: trialReport(this.judgement) } : {}),
      ...(p ? { reason: { code: p.code, message: p.message, model: p.version, at: p.at } } : {}),
      at: this.changedAt,
    };
  }

  private keep(): void {
    keepState(this.statePath, this.kept, this.log);
  }
}

/** A desired threshold of null falls back to the configured one (null there too: the model's own). */
function withDefault(
  t: { threshold: number | null; applied: unknown },
  configured: number | null,
): { threshold: number | null; applied: unknown } {
  return t.threshold === null ? { ...t, threshold: configured } : t;
}
