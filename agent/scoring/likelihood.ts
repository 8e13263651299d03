/**
 * Per-stream anomaly likelihood, after Numenta's (Ahmad et al. 2017, "Unsupervised real-time
 * anomaly detection for streaming data"): a model's raw scores are not comparable across streams
 * (a noisy stream is always "surprising"), so what we alert on is how unusual the recent average
 * raw score is against this stream's own history of raw scores.
 *
 * score = log(tail) / log(1e-10), where tail is the Gaussian tail probability of the mean of the
 * last `averagingWindow` raw scores under the distribution of that mean over the last
 * `historyWindow` readings. 0.5 (nothing unusual) maps to 0.03, a 1e-5 tail to 0.5 and a 1e-10
 * tail to 1, which spreads the interesting end over most of [0, 1].
 */
import { tailProbability } from './stats.js';

export interface LikelihoodConfig {
  /** Readings at the start of a stream left out of the history, while the model's raw scores settle. */
  learningReadings: number;
  /** Readings then collected before the first fit; the score stays at LEARNING_SCORE until then. */
  estimationReadings: number;
  /** Readings of raw-score history the distribution is estimated on (memory: 4 bytes each). */
  historyReadings: number;
  /** The distribution is refitted every this many readings. */
  reestimateEveryReadings: number;
  /** Raw scores are averaged over this many readings before comparison. */
  averagingReadings: number;
  /**
   * After a "red" reading (tail <= 1e-5), further reds within this many readings count as yellow.
   * Numenta damps only back-to-back reds (1); one averaging window (10) treats reds that share
   * most of their averaged readings as the same evidence: one anomaly, one alert.
   */
  redCooldownReadings: number;
  /** Floors on the fitted distribution, so that a stream that was perfectly predictable until now does not alarm on a tiny blip. */
  minMean: number;
  minVariance: number;
}

/** Numenta's defaults (learning 288 + 100 estimation samples, history 8640, i.e. 30 days at 5 min), but the red cooldown. */
export const DEFAULT_LIKELIHOOD: LikelihoodConfig = {
  learningReadings: 288,
  estimationReadings: 100,
  historyReadings: 8640,
  reestimateEveryReadings: 100,
  averagingReadings: 10,
  redCooldownReadings: 10,
  minMean: 0.03,
  minVariance: 0.0003,
};

const LOG_FLOOR = Math.log(1e-10);
/** Tail probability below which Numenta calls a likelihood "red"; repeated reds are damped. */
const RED_TAIL = 1e-5;
const YELLOW_TAIL = 1e-3;

/** The score returned while a stream is still learning: the log score of a 0.5 tail. */
export const LEARNING_SCORE = logScore(0.5);

export function logScore(tail: number): number {
  return Math.min(1, Math.max(0, Math.log(tail + 1e-10) / LOG_FLOOR));
}

export class AnomalyLikelihood {
  private readonly cfg: LikelihoodConfig;
  private seen = 0;
  private readonly recent: Float32Array;
  private recentSum = 0;
  /** Moving averages of raw scores since learning ended: a ring with running sums. */
  private readonly history: Float32Array;
  private historyLen = 0;
  private historyAt = 0;
  private sum = 0;
  private sumSq = 0;
  private mean = 0;
  private std = 0;
  /** Readings since the last red one. */
  private sinceRed = Infinity;

  constructor(cfg: LikelihoodConfig = DEFAULT_LIKELIHOOD) {
    this.cfg = cfg;
    this.recent = new Float32Array(cfg.averagingReadings);
    this.history = new Float32Array(cfg.historyReadings);
  }

  /** True once the stream's score is calibrated (its learning period is over). */
  calibrated(): boolean {
    return this.seen > this.cfg.learningReadings + this.cfg.estimationReadings;
  }

  /** Feeds one raw score (>= 0) and returns the calibrated score in [0, 1]. */
  update(raw: number): number {
    const k = this.seen % this.recent.length;
    this.recentSum += raw - this.recent[k]!;
    this.recent[k] = raw;
    this.seen++;
    const avg = this.recentSum / Math.min(this.seen, this.recent.length);
    let score = LEARNING_SCORE;
    if (this.calibrated()) {
      if (this.std === 0 || this.seen % this.cfg.reestimateEveryReadings === 0) this.refit();
      let tail = tailProbability(avg, this.mean, this.std);
      this.sinceRed++;
      // Only the first "red" reading of a run keeps its full weight: one anomaly, one alert.
      if (tail <= RED_TAIL) {
        if (this.sinceRed <= this.cfg.redCooldownReadings) tail = YELLOW_TAIL;
        this.sinceRed = 0;
      }
      score = logScore(tail);
    }
    if (this.seen > this.cfg.learningReadings) this.remember(avg);
    return score;
  }

  private remember(avg: number): void {
    const h = this.history;
    if (this.historyLen === h.length) {
      const old = h[this.historyAt]!;
      this.sum -= old;
      this.sumSq -= old * old;
    } else {
      this.historyLen++;
    }
    h[this.historyAt] = avg;
    this.sum += avg;
    this.sumSq += avg * avg;
    this.historyAt = (this.historyAt + 1) % h.length;
    // Running sums drift with rounding; a full pass once per lap of the ring resets them.
    if (this.historyAt === 0) {
      this.sum = 0;
      this.sumSq = 0;
      for (const v of h) {
        this.sum += v;
        this.sumSq += v * v;
      }
    }
  }

  private refit(): void {
    const n = Math.max(1, this.historyLen);
    const mean = this.sum / n;
    const variance = Math.max(this.sumSq / n - mean * mean, this.cfg.minVariance);
    this.mean = Math.max(mean, this.cfg.minMean);
    this.std = Math.sqrt(variance);
  }
}
