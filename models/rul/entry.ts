/**
 * One training run of the failure model (train.py in a child process) and the manifest entry of
 * its ONNX file: digest, size and the tensor shapes onnxruntime itself reports.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import * as ort from 'onnxruntime-node';
import { sha256, type FailureModelEntry, type TensorSpec } from '../../common/models/manifest.js';
import { fromRoot } from '../eval/repo.js';

/** A prediction below this many cycles alerts: about a week of flights for a short-haul engine, and where the model is most accurate. */
const ALERT_BELOW = 30;

export interface TrainReport {
  framework: string;
  features: string[];
  center: number[];
  scale: number[];
  window: number;
  smooth: number;
  cap: number;
  engines: number;
  train_windows: number;
  parameters: number;
  hyperparameters: Record<string, unknown>;
  final: Record<string, number>;
  checks: { seed: number; rows: number; drift: number; rul: number }[];
}

/** train.py's options that build.ts exposes (strings, as parsed); the fold seed is separate. */
export interface TrainOptions {
  epochs: string;
  /** Networks averaged in the exported graph (train.py --members). */
  members: string;
  window: string;
  cap: string;
}

/** One train.py run in a child process (one thread); resolves with its report. Several may run at once (build.ts --jobs). */
export async function train(
  data: string,
  out: string,
  report: string,
  exclude: number[],
  options: TrainOptions,
  seed: number,
): Promise<TrainReport> {
  const python = process.env['PYTHON'] ?? '/usr/bin/python3';
  const args = [
    fromRoot('models/rul/train.py'),
    '--data',
    data,
    '--out',
    out,
    '--report',
    report,
    '--epochs',
    options.epochs,
    '--members',
    options.members,
    '--window',
    options.window,
    '--cap',
    options.cap,
    '--seed',
    String(seed),
  ];
  if (exclude.length > 0) args.push('--exclude', exclude.join(','));
  await new Promise<void>((resolve, reject) => {
    const child = spawn(python, args, { stdio: ['ignore', 'ignore', 'inherit'] });
    child.on('error', (err) => reject(new Error(`train.py failed (${err.message})`)));
    child.on('exit', (code, signal) => (code === 0 ? resolve() : reject(new Error(`train.py failed (exit ${code ?? signal})`))));
  });
  return JSON.parse(readFileSync(report, 'utf8')) as TrainReport;
}

export async function describe(
  name: string,
  version: string,
  onnxFile: string,
  manifestDir: string,
  t: TrainReport,
): Promise<FailureModelEntry> {
  const bytes = readFileSync(onnxFile);
  const session = await ort.InferenceSession.create(bytes);
  const specs = (meta: readonly ort.InferenceSession.ValueMetadata[]): TensorSpec[] =>
    meta.map((m) => ({ name: m.name, type: 'float32', shape: m.isTensor ? [...m.shape] : [] }));
  const entry: FailureModelEntry = {
    kind: 'failure',
    name,
    version,
    file: relative(manifestDir, onnxFile),
    sha256: sha256(bytes),
    bytes: bytes.length,
    inputs: specs(session.inputMetadata),
    outputs: specs(session.outputMetadata),
    output: 'rul',
    unit: 'cycle',
    rulCap: t.cap,
    featureRecipe: {
      name: 'asset-window-v1',
      window: t.window,
      features: t.features,
      center: t.center,
      scale: t.scale,
      ...(t.smooth < 1 ? { smooth: t.smooth } : {}),
      pad: 'first',
    },
    thresholds: { alertBelow: ALERT_BELOW },
  };
  await session.release();
  return entry;
}
