/**
 * One loaded failure (remaining-useful-life) model: a verified onnxruntime session and its manifest
 * entry. As for the anomaly forecaster (onnx-model.ts), loading checks the sha256, the tensors
 * against the manifest and runs a smoke inference, so a model that loads is one that works. The
 * agent's predictor, `npm run eval:rul`, the benchmark and the cloud registry's upload check all
 * load it through here.
 */
import * as ort from 'onnxruntime-node';
import { EdgetwinError, ErrorCodes } from '../errors.js';
import { readVerifiedModel, type FailureModelEntry, type TensorSpec } from './manifest.js';

function modelError(entry: FailureModelEntry, what: string, details: Record<string, unknown> = {}, cause?: unknown): EdgetwinError {
  return new EdgetwinError(ErrorCodes.MODEL, `model ${entry.version}: ${what}`, { cause, details: { model: entry.version, ...details } });
}

function sameShape(spec: TensorSpec, meta: ort.InferenceSession.ValueMetadata | undefined): boolean {
  if (!meta || !meta.isTensor || meta.type !== spec.type || meta.shape.length !== spec.shape.length) return false;
  return spec.shape.every((d, i) => typeof d === 'string' || typeof meta.shape[i] === 'string' || meta.shape[i] === d);
}

export class FailureModel {
  readonly entry: FailureModelEntry;
  /** Values per window: steps × features. */
  readonly windowSize: number;
  private readonly session: ort.InferenceSession;
  private readonly input: string;
  private readonly output: string;
  private closed = false;

  private constructor(entry: FailureModelEntry, session: ort.InferenceSession) {
    this.entry = entry;
    this.session = session;
    this.windowSize = entry.featureRecipe.window * entry.featureRecipe.features.length;
    this.input = entry.inputs[0]!.name;
    this.output = entry.outputs[0]!.name;
  }

  get version(): string {
    return this.entry.version;
  }

  /** Loads and checks a failure model; throws EDGETWIN_ERR_MODEL (details say why) when it is not fit to run. */
  static async load(entry: FailureModelEntry, path: string, threads = 1): Promise<FailureModel> {
    const bytes = readVerifiedModel(entry, path);
    let session: ort.InferenceSession;
    try {
      // One thread, sequential: a window is a few thousand multiply-adds; more threads only spin.
      session = await ort.InferenceSession.create(bytes, {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
      });
    } catch (cause) {
      throw modelError(entry, `onnxruntime cannot load ${path}`, {}, cause);
    }
    const model = new FailureModel(entry, session);
    try {
      const [inSpec, outSpec] = [entry.inputs[0]!, entry.outputs[0]!];
      if (
        !sameShape(
          inSpec,
          session.inputMetadata.find((m) => m.name === inSpec.name),
        )
      )
        throw modelError(entry, 'input tensor differs from the manifest', { manifest: inSpec });
      if (
        outSpec.shape.length !== 2 ||
        outSpec.shape[1] !== 1 ||
        !sameShape(
          outSpec,
          session.outputMetadata.find((m) => m.name === outSpec.name),
        )
      )
        throw modelError(entry, 'output must be [batch, 1] as in the manifest', { manifest: outSpec });
      const out = await model.predict(new Float32Array(model.windowSize), 1);
      if (out.length !== 1 || !Number.isFinite(out[0]))
        throw modelError(entry, 'smoke inference gave no finite prediction', { out: [...out] });
    } catch (err) {
      await model.close();
      throw err;
    }
    return model;
  }

  /**
   * Runs `rows` windows (row-major `[rows, window, features]` in `windows`) and returns one
   * remaining useful life per window, in steps, clipped to [0, rulCap].
   */
  async predict(windows: Float32Array, rows: number): Promise<Float32Array> {
    const { window, features } = this.entry.featureRecipe;
    const input = new ort.Tensor('float32', windows.subarray(0, rows * this.windowSize), [rows, window, features.length]);
    const result = await this.session.run({ [this.input]: input });
    const out = Float32Array.from(result[this.output]!.data as Float32Array);
    const cap = this.entry.rulCap;
    for (let i = 0; i < out.length; i++) out[i] = Number.isFinite(out[i]) ? Math.min(cap, Math.max(0, out[i]!)) : NaN;
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.session.release();
  }
}
