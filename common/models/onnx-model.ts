/**
 * One loaded forecaster: a verified inference engine and its manifest entry. Loading checks the
 * file's sha256, the tensor names and shapes against the manifest, and runs one smoke inference,
 * so a model that loads is a model that works; that is what makes a hot swap safe.
 *
 * Two engines run the same ONNX file. `small-graph` (small-graph.ts: the dense networks edgetwin
 * ships, in a WebAssembly SIMD kernel) needs neither onnxruntime's native library nor a session:
 * that is ≈ 35-40 MB of agent RSS (docs/benchmarks.md), the difference between meeting the
 * device's 100 MB budget and not. `onnxruntime` runs any valid model. `auto` (the default) takes
 * the small graph when it can run the file and onnxruntime otherwise, which is then imported on
 * first use only. Their forecasts agree to float32 rounding (test/models/small-graph.test.ts).
 */
import type * as Ort from 'onnxruntime-node';
import { EdgetwinError, ErrorCodes } from '../errors.js';
import { HEADS, featureCount } from './features.js';
import { readVerifiedModel, type ModelEntry, type TensorSpec } from './manifest.js';
import { SmallGraph } from './small-graph.js';

/** Output columns per row: mu and log b of each head's Laplace forecast, heads in HEADS order. */
export const FORECAST_COLUMNS = 2 * HEADS.length;

/** The onnxruntime session options edgetwin sets; the rest stay onnxruntime's. */
export type SessionTuning = Pick<
  Ort.InferenceSession.SessionOptions,
  'enableCpuMemArena' | 'enableMemPattern' | 'interOpNumThreads' | 'executionMode' | 'graphOptimizationLevel'
>;

/**
 * Chosen by measurement (`npm run bench:scoring -- --sessions`, docs/benchmarks.md): one thread and
 * sequential execution, because a second intra- or inter-op thread spins and halves the readings per
 * CPU-second on a small model without saving memory. The CPU arena and memory patterns stay on:
 * without the arena every call mallocs its activations and glibc keeps more of them (more RSS, not
 * less); what bounds the arena is the rows per call (`maxBatchRows`), not these switches. Graph
 * optimisation changes neither memory nor speed measurably here, and 'all' is what the scores in
 * docs/anomaly-detection.md were computed with.
 */
const SESSION_DEFAULTS: Ort.InferenceSession.SessionOptions = {
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
  enableCpuMemArena: true,
  enableMemPattern: true,
};

function shapeError(entry: ModelEntry, what: string, details: Record<string, unknown>): EdgetwinError {
  return new EdgetwinError(ErrorCodes.MODEL, `model ${entry.version}: ${what}`, { details: { model: entry.version, ...details } });
}

/** Fixed dimensions must agree; a symbolic one (the batch) matches anything. */
function sameShape(spec: TensorSpec, meta: Ort.InferenceSession.ValueMetadata | undefined): boolean {
  if (!meta || !meta.isTensor || meta.type !== spec.type || meta.shape.length !== spec.shape.length) return false;
  return spec.shape.every((d, i) => typeof d === 'string' || typeof meta.shape[i] === 'string' || meta.shape[i] === d);
}

/** Which engine runs a model: `auto` = the small graph when it can run the file, else onnxruntime. */
export const INFERENCE_ENGINES = ['auto', 'small-graph', 'onnxruntime'] as const;
export type InferenceEngine = (typeof INFERENCE_ENGINES)[number];

export interface ModelLoadOptions {
  /** onnxruntime intra-op threads (the small graph runs on the calling thread). */
  threads?: number;
  /** onnxruntime session options over SESSION_DEFAULTS (benchmarks compare them side by side). */
  tuning?: SessionTuning;
  engine?: InferenceEngine;
}

/** What runs the rows: a session or a small graph. */
interface Runner {
  readonly engine: Exclude<InferenceEngine, 'auto'>;
  run(features: Float32Array, rows: number): Promise<Float32Array> | Float32Array;
  /** Throws a shape error when the engine's tensors differ from the manifest. */
  check(entry: ModelEntry, width: number): void;
  release(): Promise<void>;
}

class SmallGraphRunner implements Runner {
  readonly engine = 'small-graph';
  constructor(private readonly graph: SmallGraph) {}
  run(features: Float32Array, rows: number): Float32Array {
    return this.graph.run(features, rows);
  }
  check(entry: ModelEntry, width: number): void {
    const [inSpec, outSpec] = [entry.inputs[0]!, entry.outputs[0]!];
    const g = this.graph;
    if (g.inputName !== inSpec.name || g.outputName !== outSpec.name || g.inputWidth !== width || g.outputWidth !== FORECAST_COLUMNS) {
      throw shapeError(entry, 'tensors differ from the manifest', {
        manifest: { input: inSpec, output: outSpec },
        model: { input: { name: g.inputName, width: g.inputWidth }, output: { name: g.outputName, width: g.outputWidth } },
      });
    }
  }
  async release(): Promise<void> {}
}

class OrtRunner implements Runner {
  readonly engine = 'onnxruntime';
  constructor(
    private readonly ort: typeof Ort,
    private readonly session: Ort.InferenceSession,
    private readonly input: string,
    private readonly output: string,
  ) {}
  async run(features: Float32Array, rows: number): Promise<Float32Array> {
    const tensor = new this.ort.Tensor('float32', features, [rows, features.length / rows]);
    const result = await this.session.run({ [this.input]: tensor });
    return result[this.output]!.data as Float32Array;
  }
  check(entry: ModelEntry): void {
    const [inSpec, outSpec] = [entry.inputs[0]!, entry.outputs[0]!];
    const inMeta = this.session.inputMetadata.find((m) => m.name === inSpec.name);
    const outMeta = this.session.outputMetadata.find((m) => m.name === outSpec.name);
    if (!sameShape(inSpec, inMeta) || !sameShape(outSpec, outMeta)) {
      throw shapeError(entry, 'tensors differ from the manifest', {
        manifest: { input: inSpec, output: outSpec },
        model: { input: inMeta, output: outMeta },
      });
    }
  }
  release(): Promise<void> {
    return this.session.release();
  }
}

async function ortRunner(entry: ModelEntry, path: string, bytes: Uint8Array, opts: ModelLoadOptions): Promise<Runner> {
  const ort = await import('onnxruntime-node');
  try {
    const session = await ort.InferenceSession.create(bytes, { ...SESSION_DEFAULTS, intraOpNumThreads: opts.threads ?? 1, ...opts.tuning });
    return new OrtRunner(ort, session, entry.inputs[0]!.name, entry.outputs[0]!.name);
  } catch (cause) {
    throw new EdgetwinError(ErrorCodes.MODEL, `model ${entry.version}: onnxruntime cannot load ${path}`, {
      cause,
      details: { model: entry.version },
    });
  }
}

async function runnerFor(
  entry: ModelEntry,
  path: string,
  bytes: Uint8Array,
  opts: ModelLoadOptions,
): Promise<{ runner: Runner; why?: string }> {
  const engine = opts.engine ?? 'auto';
  if (engine === 'onnxruntime') return { runner: await ortRunner(entry, path, bytes, opts) };
  const graph = SmallGraph.compile(bytes);
  if (graph instanceof SmallGraph) return { runner: new SmallGraphRunner(graph) };
  if (engine === 'small-graph')
    throw new EdgetwinError(ErrorCodes.MODEL, `model ${entry.version}: the small-graph engine cannot run it: ${graph.unsupported}`, {
      details: { model: entry.version, engine },
    });
  return { runner: await ortRunner(entry, path, bytes, opts), why: graph.unsupported };
}

export class OnnxModel {
  readonly entry: ModelEntry;
  readonly featureCount: number;
  /** Why `auto` fell back to onnxruntime (undefined: it did not, or was not asked to choose). */
  readonly fallbackReason: string | undefined;
  private readonly runner: Runner;
  private closed = false;

  private constructor(entry: ModelEntry, runner: Runner, fallbackReason?: string) {
    this.entry = entry;
    this.runner = runner;
    this.fallbackReason = fallbackReason;
    this.featureCount = featureCount(entry.featureRecipe);
  }

  get version(): string {
    return this.entry.version;
  }

  /** The engine running this model. */
  get engine(): Exclude<InferenceEngine, 'auto'> {
    return this.runner.engine;
  }

  /** Loads and checks a model; throws EDGETWIN_ERR_MODEL (details say why) when it is not fit to run. */
  static async load(entry: ModelEntry, path: string, opts: ModelLoadOptions = {}): Promise<OnnxModel> {
    const bytes = readVerifiedModel(entry, path);
    const { runner, why } = await runnerFor(entry, path, bytes, opts);
    const model = new OnnxModel(entry, runner, why);
    try {
      model.checkShapes();
      const out = await model.forecast(new Float32Array(model.featureCount), 1);
      if (out.length !== FORECAST_COLUMNS || !out.every(Number.isFinite))
        throw shapeError(entry, 'smoke inference gave no finite forecast', { out: [...out] });
    } catch (err) {
      await model.close();
      throw err;
    }
    return model;
  }

  private checkShapes(): void {
    const { entry } = this;
    const [inSpec, outSpec] = [entry.inputs[0]!, entry.outputs[0]!];
    if (inSpec.shape[1] !== this.featureCount)
      throw shapeError(entry, 'input width does not match its feature recipe', { width: inSpec.shape[1], features: this.featureCount });
    if (outSpec.shape[1] !== FORECAST_COLUMNS)
      throw shapeError(entry, `output must have ${FORECAST_COLUMNS} columns`, { shape: outSpec.shape });
    this.runner.check(entry, this.featureCount);
  }

  /** Runs `rows` feature rows (row-major in `features`) and returns rows × FORECAST_COLUMNS values. */
  async forecast(features: Float32Array, rows: number): Promise<Float32Array> {
    return this.runner.run(features.subarray(0, rows * this.featureCount), rows);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.runner.release();
  }
}
