/**
 * Builds the forecaster's training set: synthetic streams (synth.ts) run through the agent's own
 * feature code (common/models/features.ts), so training and inference see identical features.
 * Writes float32 little-endian matrices the PyTorch trainer reads with numpy.fromfile.
 *
 *   node dist/models/train/make-dataset.js --out var/models/dataset [--series 4000] [--seed 1] [--keep 0.08]
 * (npm run train:model runs it as its first step.)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_RECIPE, HEADS, StreamFeatures, featureCount, levelInputs, type FeatureRecipe } from '../../common/models/features.js';
import { rng, synthSeries } from './synth.js';

export interface DatasetSplit {
  features: Float32Array;
  targets: Float32Array;
  rows: number;
}

/** Samples about `keep` of the readings of `count` streams starting at `seed`. */
export function buildSplit(recipe: FeatureRecipe, seed: number, count: number, keep: number): DatasetSplit {
  const f = featureCount(recipe);
  const feats: Float32Array[] = [];
  const targs: number[] = [];
  const pickRow = rng(seed ^ 0x5eed);
  const row = new Float32Array(f);
  for (let s = 0; s < count; s++) {
    const { times, values } = synthSeries(seed + s);
    const st = new StreamFeatures(recipe);
    for (let i = 0; i < values.length; i++) {
      if (st.ready() && pickRow() < keep) {
        st.write(times[i]!, row, 0);
        feats.push(row.slice());
        // One target per head, in HEADS order.
        targs.push(st.target(values[i]!, st.last(), st.scale()), st.target(values[i]!, st.centre(), st.scale()));
      }
      st.push(times[i]!, values[i]!);
    }
  }
  const features = new Float32Array(feats.length * f);
  feats.forEach((r, i) => features.set(r, i * f));
  return { features, targets: Float32Array.from(targs), rows: feats.length };
}

export interface DatasetMeta {
  recipe: FeatureRecipe;
  features: number;
  heads: readonly string[];
  levelInputs: number[];
  seed: number;
  series: number;
  validSeries: number;
  keep: number;
  trainRows: number;
  validRows: number;
}

/**
 * Writes train and validation splits plus meta.json (what train.py reads) to `dir`. Validation
 * streams come from seeds far from the training ones.
 */
export function writeDataset(dir: string, recipe: FeatureRecipe, seed: number, series: number, keep: number): DatasetMeta {
  mkdirSync(dir, { recursive: true });
  const validSeries = Math.max(50, Math.floor(series / 10));
  const splits = { train: buildSplit(recipe, seed, series, keep), valid: buildSplit(recipe, seed + 1_000_000, validSeries, keep) };
  for (const [name, split] of Object.entries(splits)) {
    writeFileSync(join(dir, `${name}-features.f32`), Buffer.from(split.features.buffer));
    writeFileSync(join(dir, `${name}-targets.f32`), Buffer.from(split.targets.buffer));
  }
  const meta: DatasetMeta = {
    recipe,
    features: featureCount(recipe),
    heads: HEADS,
    levelInputs: levelInputs(recipe),
    seed,
    series,
    validSeries,
    keep,
    trainRows: splits.train.rows,
    validRows: splits.valid.rows,
  };
  writeFileSync(join(dir, 'meta.json'), JSON.stringify(meta, null, 2) + '\n');
  return meta;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: 'var/models/dataset' },
      series: { type: 'string', default: '4000' },
      seed: { type: 'string', default: '1' },
      keep: { type: 'string', default: '0.08' },
    },
  });
  console.log(JSON.stringify(writeDataset(values.out!, DEFAULT_RECIPE, Number(values.seed), Number(values.series), Number(values.keep))));
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
