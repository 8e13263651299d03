/**
 * One loaded forecaster: a verified onnxruntime session and its manifest entry. Loading checks the
 * file's sha256, the tensor names and shapes against the manifest, and runs one smoke inference,
 * so a model that loads is a model that works; that is what makes a hot swap safe.
 */
import * as ort from 'onnxruntime-node';
import { EdgetwinError, ErrorCodes } from './errors.js';
import { HEADS, featureCount } from './model-features.js';
import { readVerifiedModel, type ModelEntry, type TensorSpec } from './model-manifest.js';

/** Output columns per row: mu and log b of each head's Laplace forecast, heads in HEADS order. */
export const FORECAST_COLUMNS = 2 * HEADS.length;

/** The onnxruntime session options edgetwin sets; the rest stay onnxruntime's. */
export type SessionTuning = Pick<ort.InferenceSession.SessionOptions, 'enableCpuMemArena' | 'enableMemPattern' | 'interOpNumThreads' | 'executionMode' | 'graphOptimizationLevel'>;

/**
 * Chosen by measurement (`npm run bench:scoring -- --sessions`, docs/benchmarks.md): one thread and
 * sequential execution, because a second intra- or inter-op thread spins and halves the readings per
 * CPU-second on a small model without saving memory. The CPU arena and memory patterns stay on:
 * without the arena every call mallocs its activations and glibc keeps more of them (more RSS, not
 * less); what bounds the arena is the rows per call (`maxBatchRows`), not these switches. Graph
 * optimisation changes neither memory nor speed measurably here, and 'all' is what the scores in
 * docs/anomaly-detection.md were computed with.
 */
const SESSION_DEFAULTS: ort.InferenceSession.SessionOptions = {
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
function sameShape(spec: TensorSpec, meta: ort.InferenceSession.ValueMetadata | undefined): boolean {
  if (!meta || !meta.isTensor || meta.type !== spec.type || meta.shape.length !== spec.shape.length) return false;
  return spec.shape.every((d, i) => typeof d === 'string' || typeof meta.shape[i] === 'string' || meta.shape[i] === d);
}

export class OnnxModel {
  readonly entry: ModelEntry;
  readonly featureCount: number;
  private readonly session: ort.InferenceSession;
  private readonly input: string;
  private readonly output: string;
  private closed = false;

  private constructor(entry: ModelEntry, session: ort.InferenceSession) {
    this.entry = entry;
    this.session = session;
    this.featureCount = featureCount(entry.featureRecipe);
    this.input = entry.inputs[0]!.name;
    this.output = entry.outputs[0]!.name;
  }

  get version(): string {
    return this.entry.version;
  }

  /**
   * Loads and checks a model; throws EDGETWIN_ERR_MODEL (details say why) when it is not fit to run.
   * `tuning` overrides SESSION_DEFAULTS (benchmarks compare them side by side).
   */
  static async load(entry: ModelEntry, path: string, threads = 1, tuning: SessionTuning = {}): Promise<OnnxModel> {
    const bytes = readVerifiedModel(entry, path);
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(bytes, { ...SESSION_DEFAULTS, intraOpNumThreads: threads, ...tuning });
    } catch (cause) {
      throw new EdgetwinError(ErrorCodes.MODEL, `model ${entry.version}: onnxruntime cannot load ${path}`, { cause, details: { model: entry.version } });
    }
    const model = new OnnxModel(entry, session);
    try {
      model.checkShapes();
      const out = await model.forecast(new Float32Array(model.featureCount), 1);
      if (out.length !== FORECAST_COLUMNS || !out.every(Number.isFinite)) throw shapeError(entry, 'smoke inference gave no finite forecast', { out: [...out] });
    } catch (err) {
      await model.close();
      throw err;
    }
    return model;
  }

  private checkShapes(): void {
    const { entry, session } = this;
    const [inSpec, outSpec] = [entry.inputs[0]!, entry.outputs[0]!];
    if (inSpec.shape[1] !== this.featureCount) throw shapeError(entry, 'input width does not match its feature recipe', { width: inSpec.shape[1], features: this.featureCount });
    if (outSpec.shape[1] !== FORECAST_COLUMNS) throw shapeError(entry, `output must have ${FORECAST_COLUMNS} columns`, { shape: outSpec.shape });
    const inMeta = session.inputMetadata.find((m) => m.name === inSpec.name);
    const outMeta = session.outputMetadata.find((m) => m.name === outSpec.name);
    if (!sameShape(inSpec, inMeta) || !sameShape(outSpec, outMeta)) {
      throw shapeError(entry, 'tensors differ from the manifest', { manifest: { input: inSpec, output: outSpec }, model: { input: inMeta, output: outMeta } });
    }
  }

  /** Runs `rows` feature rows (row-major in `features`) and returns rows × FORECAST_COLUMNS values. */
  async forecast(features: Float32Array, rows: number): Promise<Float32Array> {
    const input = new ort.Tensor('float32', features.subarray(0, rows * this.featureCount), [rows, this.featureCount]);
    const result = await this.session.run({ [this.input]: input });
    return result[this.output]!.data as Float32Array;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.session.release();
  }
}
