/**
 * The input of a failure model for one asset: its last `window` completed steps, each feature
 * scaled with the training statistics of the manifest's recipe (asset-window-v1). The agent keeps
 * one per asset; `npm run eval:rul` builds the same windows from a C-MAPSS file, so evaluation and
 * the device cannot disagree. The trainer (models/rul/train.py) implements the same recipe and
 * `test/models/rul-model.test.ts` checks that both give the same predictions.
 */
import type { AssetWindowRecipe } from './manifest.js';

export class AssetWindow {
  private readonly ring: Float32Array;
  private readonly first: Float32Array;
  /** Smoothed value of each feature (float64: the recursion must not drift from the trainer's). */
  private readonly ema: Float64Array;
  private readonly alpha: number;
  private readonly width: number;
  private readonly size: number;
  private head = 0;
  /** Completed steps pushed so far. */
  steps = 0;

  constructor(readonly recipe: AssetWindowRecipe) {
    this.width = recipe.features.length;
    this.size = recipe.window;
    this.ring = new Float32Array(this.size * this.width);
    this.first = new Float32Array(this.width);
    this.ema = new Float64Array(this.width);
    this.alpha = recipe.smooth ?? 1;
  }

  /** Appends one step: raw values in the recipe's feature order (all finite: the caller checks). */
  push(values: ArrayLike<number>): void {
    const { center, scale } = this.recipe;
    const at = this.head * this.width;
    const a = this.steps === 0 ? 1 : this.alpha;
    for (let f = 0; f < this.width; f++) {
      this.ema[f] = a * ((values[f]! - center[f]!) / scale[f]!) + (1 - a) * this.ema[f]!;
      this.ring[at + f] = this.ema[f]!;
    }
    if (this.steps === 0) this.first.set(this.ring.subarray(at, at + this.width));
    this.head = (this.head + 1) % this.size;
    this.steps++;
  }

  /** The scaled (and smoothed) value of feature `f` in the newest step: drift monitoring reads what the model reads. */
  newest(f: number): number {
    const at = ((this.head + this.size - 1) % this.size) * this.width;
    return this.ring[at + f]!;
  }

  /** Writes the window, oldest step first, at `offset` of `out`; before `window` steps the first step repeats in front. */
  write(out: Float32Array, offset: number): void {
    const w = this.width;
    const have = Math.min(this.steps, this.size);
    let o = offset;
    for (let i = have; i < this.size; i++, o += w) out.set(this.first, o);
    // The oldest kept step is at `head` once the ring is full, at 0 before.
    const start = this.steps >= this.size ? this.head : 0;
    for (let i = 0; i < have; i++, o += w) {
      const at = ((start + i) % this.size) * w;
      out.set(this.ring.subarray(at, at + w), o);
    }
  }
}
