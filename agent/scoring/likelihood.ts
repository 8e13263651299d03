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
 *
 * Unlike Numenta's, the history is not kept value by value: the distribution is only refitted every
 * `reestimateEveryReadings` readings, so sums over blocks of that many readings give the same fit
 * with ~1.4 KiB per head instead of 34 KiB (4 bytes × 8640). The window therefore moves in whole
 * blocks: it holds the last floor(historyReadings / reestimateEveryReadings) blocks plus the block
 * being filled.
 */
import { tailProbability } from './stats.js';

export interface LikelihoodConfig {
  /** Readings at the start of a stream left out of the history, while the model's raw scores settle. */
  learningReadings: number;
  /** Readings then collected before the first fit; the score stays at LEARNING_SCORE until then. */
  estimationReadings: number;
  /** Readings of raw-score history the distribution is estimated on (kept as sums per block of reestimateEveryReadings: 16 bytes a block). */
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
  /** Sums and sums of squares of the moving averages, per completed block (a ring), since learning ended. */
  private readonly blockSum: Float64Array;
  private readonly blockSq: Float64Array;
  private blocks = 0;
  private blockAt = 0;
  private openSum = 0;
  private openSq = 0;
  private openN = 0;
  private mean = 0;
  private std = 0;
  /** Readings since the last red one. */
  private sinceRed = Infinity;

  constructor(cfg: LikelihoodConfig = DEFAULT_LIKELIHOOD) {
    this.cfg = cfg;
    this.recent = new Float32Array(cfg.averagingReadings);
    const blocks = Math.max(1, Math.floor(cfg.historyReadings / cfg.reestimateEveryReadings));
    this.blockSum = new Float64Array(blocks);
    this.blockSq = new Float64Array(blocks);
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
    this.openSum += avg;
    this.openSq += avg * avg;
    if (++this.openN < this.cfg.reestimateEveryReadings) return;
    this.blockSum[this.blockAt] = this.openSum;
    this.blockSq[this.blockAt] = this.openSq;
    this.blockAt = (this.blockAt + 1) % this.blockSum.length;
    if (this.blocks < this.blockSum.length) this.blocks++;
    this.openSum = 0;
    this.openSq = 0;
    this.openN = 0;
  }

  private refit(): void {
    let sum = this.openSum;
    let sq = this.openSq;
    for (let b = 0; b < this.blocks; b++) {
      sum += this.blockSum[b]!;
      sq += this.blockSq[b]!;
    }
    const n = Math.max(1, this.blocks * this.cfg.reestimateEveryReadings + this.openN);
    const mean = sum / n;
    const variance = Math.max(sq / n - mean * mean, this.cfg.minVariance);
    this.mean = Math.max(mean, this.cfg.minMean);
    this.std = Math.sqrt(variance);
  }
}
