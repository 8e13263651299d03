/**
 * Everything the scorer keeps per stream (metric), and the streaming part of the detector: it turns
 * one row of the forecaster's output into the reading's calibrated score.
 *
 *   per head: surprise |y − μ| / b, capped ─► ÷ usual surprise at this time of day (seasonal-surprise.ts)
 *             ─► anomaly likelihood over this stream's own history (likelihood.ts)
 *   max over heads ─► range rule (a value well outside everything seen) ─► count gate (small bursts of
 *   a count-like stream) ─► episodes (one alert per anomaly) ─► score
 *
 * Nothing here knows a file's length, minimum or maximum: ranges are running ranges and the time
 * scales are the readings' own timestamps, so it behaves on a device as in the NAB evaluation.
 * Memory per stream: the feature windows (~9.5 KiB), two likelihood histories (~1.4 KiB each), two
 * seasonal surprise profiles (~0.8 KiB each) and the explanation baseline (~0.1 KiB).
 */
import { HEADS, StreamFeatures, type FeatureRecipe } from '../../common/models/features.js';
import { AnomalyLikelihood, logScore, type LikelihoodConfig } from './likelihood.js';
import { SeasonalSurprise, type SeasonalSurpriseSettings } from './seasonal-surprise.js';

/** What the detector needs besides the model's output: the model's calibration and the agent's options. */
export interface DetectorSettings {
  surpriseCap: number;
  /** null: no seasonal normalisation (forecaster-1.0.0). */
  seasonal: SeasonalSurpriseSettings | null;
  /** Readings an episode lasts; 0: every reading scored on its own (forecaster-1.0.0). */
  episodeReadings: number;
  /**
   * Inside an episode, how much (score units) a reading must beat the episode's best to keep its
   * score; 0: any new high does (forecaster-2.0.0). 0.1 is one decade of the likelihood's tail.
   */
  episodeMargin: number;
  /** Count-like streams: a deviation below this fraction of the running range cannot alert; 0: off. */
  countGate: number;
  rangeTolerancePercent: number;
  likelihood: LikelihoodConfig;
}

/** Which part of the detector produced a score: one of the model's heads, or the range rule. */
export type Driver = (typeof HEADS)[number] | 'range';

/** An episode begins at Numenta's "yellow" level (tail 1e-3). */
export const EPISODE_START = logScore(1e-3);

/** Horizon, in readings, of the running mean feature row an explanation is measured against. */
const BASELINE_READINGS = 1000;

export class StreamDetector {
  features: StreamFeatures;
  private likelihoods: AnomalyLikelihood[] = [];
  private seasonal: SeasonalSurprise[] = [];
  private min = Infinity;
  private max = -Infinity;
  /** True while every value so far is a non-negative integer. */
  private countLike = true;
  /** Per kind of episode (the heads', the range rule's): readings left in it, and its best score. */
  private readonly episodeLeft = new Int32Array(2);
  private readonly episodeBest = new Float64Array(2);
  /** The typical feature row and head targets of this stream: the baseline of explanations. */
  readonly baseline: Float32Array;
  readonly baselineTargets = new Float64Array(HEADS.length);
  private baselineN = 0;
  /** Per head, the surprise of the last reading finished, before and after seasonal division. */
  readonly surprise = new Float64Array(HEADS.length);
  readonly divisor = new Float64Array(HEADS.length);
  readonly targets = new Float64Array(HEADS.length);
  /** What drove the last score. */
  driver: Driver = 'step';

  constructor(
    recipe: FeatureRecipe,
    width: number,
    private settings: DetectorSettings,
  ) {
    this.features = new StreamFeatures(recipe);
    this.baseline = new Float32Array(width);
    this.recalibrate(settings);
  }

  /** Restarts the calibration (a model swap: the raw scores of two models are not comparable). */
  recalibrate(settings: DetectorSettings): void {
    this.settings = settings;
    this.likelihoods = HEADS.map(() => new AnomalyLikelihood(settings.likelihood));
    this.seasonal = settings.seasonal ? HEADS.map(() => new SeasonalSurprise(settings.seasonal!)) : [];
    this.episodeLeft.fill(0);
  }

  /** True once the stream's score is calibrated (its learning period is over). */
  calibrated(): boolean {
    return this.likelihoods[0]!.calibrated();
  }

  /**
   * Scores one reading from its row of forecasts (`out` at `at`: μ, log b per head); `last`, `mean`
   * and `spread` are the centres and scale its features were made with.
   */
  finish(ts: number, value: number, out: Float32Array, at: number, centres: { last: number; mean: number; spread: number }): number {
    const s = this.settings;
    let score = 0;
    for (let h = 0; h < HEADS.length; h++) {
      const y = this.features.target(value, h === 0 ? centres.last : centres.mean, centres.spread);
      const surprise = Math.abs(y - out[at + 2 * h]!) * Math.exp(-out[at + 2 * h + 1]!);
      let raw = Math.min(1, surprise / s.surpriseCap);
      if (!Number.isFinite(raw)) raw = 1;
      let divisor = 1;
      const profile = this.seasonal[h];
      if (profile) {
        divisor = profile.divisor(ts);
        profile.add(ts, raw);
      }
      this.targets[h] = y;
      this.surprise[h] = surprise;
      this.divisor[h] = divisor;
      const calibrated = this.likelihoods[h]!.update(raw / divisor);
      if (calibrated > score || h === 0) {
        score = calibrated;
        this.driver = HEADS[h]!;
      }
    }
    if (this.outOfRange(value)) {
      score = 1;
      this.driver = 'range';
    }
    score = this.gate(value, centres.mean, score);
    return this.episode(score);
  }

  /** Numenta's spatial anomaly: a value well outside everything this stream has shown so far. */
  private outOfRange(v: number): boolean {
    const tolPct = this.settings.rangeTolerancePercent;
    const tol = ((this.max - this.min) * tolPct) / 100;
    const out = tolPct > 0 && this.calibrated() && this.max > this.min && (v > this.max + tol || v < this.min - tol);
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
    return out;
  }

  /**
   * A count-like stream (every value so far a non-negative integer: requests, events, queue
   * lengths) is bursty by nature; a reading less than `countGate` of its running range away from
   * its running mean is held at EPISODE_START at most, so a small burst cannot alert (nor start an
   * episode), however unusual it is for the model.
   */
  private gate(v: number, mean: number, score: number): number {
    if (this.countLike && (v < 0 || !Number.isInteger(v))) this.countLike = false;
    const g = this.settings.countGate;
    if (g <= 0 || !this.countLike || !(this.max > this.min)) return score;
    return Math.abs(v - mean) < g * (this.max - this.min) ? Math.min(score, EPISODE_START * 0.99) : score;
  }

  /**
   * One anomaly, one alert: an episode starts at a score of EPISODE_START or more and lasts
   * `episodeReadings` readings; within it only a reading that beats the episode's highest score so
   * far by more than `episodeMargin` keeps its score, the others are held at EPISODE_START. Whatever
   * the alert threshold above that level, an episode alerts at most once per new high. The margin
   * is there because an incident's evidence creeps up reading by reading (each a barely higher
   * high, each an alert); with 0.1 a further alert needs a tail ten times smaller than the last. The heads share their episodes; the
   * range rule has its own, so that a value far outside the range (a spike) does not hide the stuck
   * sensor that follows it. (Separate episodes per head cost NAB about 2 points in false positives.)
   */
  private episode(score: number): number {
    const r = this.settings.episodeReadings;
    if (r <= 0) return score;
    const d = this.driver === 'range' ? 1 : 0;
    for (let k = 0; k < 2; k++) if (this.episodeLeft[k]! > 0) this.episodeLeft[k]!--;
    if (this.episodeLeft[d]! > 0) {
      if (score <= this.episodeBest[d]! + this.settings.episodeMargin) return Math.min(score, EPISODE_START);
      this.episodeBest[d] = score;
      return score;
    }
    if (score >= EPISODE_START) {
      this.episodeLeft[d] = r;
      this.episodeBest[d] = score;
    }
    return score;
  }

  /** Folds the reading's feature row (`row` at `at`) into the baseline, after any explanation of it was taken. */
  learnBaseline(row: Float32Array, at: number): void {
    const a = 1 / Math.min(++this.baselineN, BASELINE_READINGS);
    const b = this.baseline;
    for (let i = 0; i < b.length; i++) b[i]! += a * (row[at + i]! - b[i]!);
    for (let h = 0; h < HEADS.length; h++) this.baselineTargets[h]! += a * (this.targets[h]! - this.baselineTargets[h]!);
  }
}
