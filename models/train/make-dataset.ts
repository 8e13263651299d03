/**
 * Builds the forecaster's training set: synthetic streams (synth.ts) run through the agent's own
 * feature code (agent/scoring/features.ts), so training and inference see identical features.
 * Writes float32 little-endian matrices the PyTorch trainer reads with numpy.fromfile.
 *
 *   node … models/train/make-dataset.ts --out var/models/dataset [--series 2400] [--seed 1]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_RECIPE, StreamFeatures, featureCount, type FeatureRecipe } from '../../agent/scoring/features.js';
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
        const { centre, spread } = st.write(times[i]!, row, 0);
        feats.push(row.slice());
        targs.push(st.target(values[i]!, centre, spread));
      }
      st.push(times[i]!, values[i]!);
    }
  }
  const features = new Float32Array(feats.length * f);
  feats.forEach((r, i) => features.set(r, i * f));
  return { features, targets: Float32Array.from(targs), rows: feats.length };
}

function save(dir: string, name: string, split: DatasetSplit): void {
  writeFileSync(join(dir, `${name}-features.f32`), Buffer.from(split.features.buffer));
  writeFileSync(join(dir, `${name}-targets.f32`), Buffer.from(split.targets.buffer));
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: 'var/models/dataset' },
      series: { type: 'string', default: '2400' },
      seed: { type: 'string', default: '1' },
      keep: { type: 'string', default: '0.08' },
    },
  });
  const recipe = DEFAULT_RECIPE;
  const series = Number(values.series);
  const seed = Number(values.seed);
  const keep = Number(values.keep);
  mkdirSync(values.out!, { recursive: true });
  const train = buildSplit(recipe, seed, series, keep);
  // Validation streams come from seeds far from the training ones.
  const valid = buildSplit(recipe, seed + 1_000_000, Math.max(50, Math.floor(series / 10)), keep);
  save(values.out!, 'train', train);
  save(values.out!, 'valid', valid);
  const meta = { recipe, features: featureCount(recipe), seed, series, keep, trainRows: train.rows, validRows: valid.rows };
  writeFileSync(join(values.out!, 'meta.json'), JSON.stringify(meta, null, 2) + '\n');
  console.log(JSON.stringify(meta));
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
