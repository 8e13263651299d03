/**
 * Runs a small ONNX graph without onnxruntime: the dense networks edgetwin ships for anomaly
 * scoring (Gemm, Relu, Gather, Slice, Clip, Concat over [batch, width] tensors). Gemm nodes (with a
 * Relu that only they feed, fused) run in the WebAssembly SIMD kernel of wasm-gemm.ts; the others
 * are column copies in JavaScript. SmallGraph.compile() says why a graph is out of reach (another
 * op, a shape other than [batch, width], a non-constant parameter) and onnx-model.ts then uses
 * onnxruntime instead (engine `auto`), so any valid model still runs.
 *
 * Numerics: float32 everywhere, products accumulated in float32 in input order; outputs agree with
 * onnxruntime's within 1e-5 relative (7e-6 at worst on random rows, test/models/small-graph.test.ts),
 * not bit for bit. Each row is computed alone, so a row's result does not depend on its batch.
 */
import { readOnnxGraph, type OnnxGraph, type OnnxNode, type OnnxTensor } from './onnx-proto.js';
import { gemmKernel, wasmMemory, wasmSimdAvailable, type GemmFn, type WasmMemory } from './wasm-gemm.js';

type Step =
  | { kind: 'gemm'; input: string; output: string; w: number; bias: number; nin: number; nout: number; relu: boolean }
  | { kind: 'relu'; input: string; output: string }
  | { kind: 'columns'; input: string; output: string; cols: number[] }
  | { kind: 'clip'; input: string; output: string; min: number; max: number }
  | { kind: 'concat'; inputs: string[]; output: string };

interface Layer {
  weights: Float32Array;
  nin: number;
  nout: number;
  bias: Float32Array;
}

const PAGE = 65536;
/** Bytes of one row of `width` floats, padded to whole quads of 16 floats (the kernel writes quads). */
const rowBytes = (width: number): number => Math.ceil(width / 16) * 64;

export class SmallGraph {
  readonly inputName: string;
  readonly outputName: string;
  readonly inputWidth: number;
  readonly outputWidth: number;
  private readonly memory: WasmMemory;
  private readonly gemm: GemmFn;
  private readonly widths = new Map<string, number>();
  private readonly offsets = new Map<string, number>();
  private activationsAt = 0;
  private rowsCapacity = 0;

  private constructor(
    graph: { input: string; output: string; widths: Map<string, number> },
    private readonly steps: Step[],
    layers: Layer[],
  ) {
    this.inputName = graph.input;
    this.outputName = graph.output;
    this.widths = graph.widths;
    this.inputWidth = graph.widths.get(graph.input)!;
    this.outputWidth = graph.widths.get(graph.output)!;
    // Weights first, then the activations (re-laid out when a larger batch comes).
    const weightBytes = layers.reduce((s, l) => s + l.nin * rowBytes(l.nout) + rowBytes(l.nout), 0);
    this.memory = wasmMemory(Math.ceil(weightBytes / PAGE) + 1);
    this.gemm = gemmKernel(this.memory);
    const f = new Float32Array(this.memory.buffer);
    let at = 0;
    const gemmSteps = steps.filter((s): s is Extract<Step, { kind: 'gemm' }> => s.kind === 'gemm');
    layers.forEach((l, k) => {
      const stride = rowBytes(l.nout) / 4;
      gemmSteps[k]!.w = at;
      for (let i = 0; i < l.nin; i++) for (let j = 0; j < l.nout; j++) f[at / 4 + i * stride + j] = l.weights[j * l.nin + i]!;
      at += l.nin * rowBytes(l.nout);
      gemmSteps[k]!.bias = at;
      f.set(l.bias, at / 4);
      at += rowBytes(l.nout);
    });
    this.activationsAt = at;
  }

  /** A runnable graph, or why this one is not for this engine. */
  static compile(bytes: Uint8Array): SmallGraph | { unsupported: string } {
    if (!wasmSimdAvailable()) return { unsupported: 'this runtime has no WebAssembly SIMD' };
    let graph: OnnxGraph;
    try {
      graph = readOnnxGraph(bytes);
    } catch (err) {
      return { unsupported: (err as Error).message };
    }
    try {
      const p = plan(graph);
      return new SmallGraph(p.graph, p.steps, p.layers);
    } catch (err) {
      if (err instanceof Unsupported) return { unsupported: err.message };
      throw err;
    }
  }

  private layout(rows: number): void {
    if (rows <= this.rowsCapacity) return;
    let at = this.activationsAt;
    for (const [value, width] of this.widths) {
      this.offsets.set(value, at);
      at += rows * rowBytes(width);
    }
    const need = Math.ceil(at / PAGE) - this.memory.buffer.byteLength / PAGE;
    if (need > 0) this.memory.grow(need);
    this.rowsCapacity = rows;
  }

  /** Runs `rows` rows of `input` (row-major, inputWidth each); returns rows × outputWidth values. */
  run(input: Float32Array, rows: number): Float32Array {
    this.layout(rows);
    const f = new Float32Array(this.memory.buffer);
    const stride = (v: string): number => rowBytes(this.widths.get(v)!) / 4;
    const base = (v: string): number => this.offsets.get(v)! / 4;
    const inW = this.inputWidth;
    const inAt = base(this.inputName);
    const inStride = stride(this.inputName);
    // Element by element: a subarray per row would be 1024 allocations per call for the GC.
    for (let r = 0; r < rows; r++) for (let c = 0, o = inAt + r * inStride, i = r * inW; c < inW; c++) f[o + c] = input[i + c]!;
    for (const s of this.steps) {
      if (s.kind === 'gemm') {
        const quads = rowBytes(s.nout) / 64;
        this.gemm(
          4 * base(s.input),
          rows,
          4 * stride(s.input),
          s.w,
          s.bias,
          s.nin,
          quads,
          4 * base(s.output),
          4 * stride(s.output),
          s.relu ? 0 : -Infinity,
        );
      } else if (s.kind === 'concat') {
        const out = base(s.output);
        const os = stride(s.output);
        let col = 0;
        for (const v of s.inputs) {
          const w = this.widths.get(v)!;
          const src = base(v);
          const is = stride(v);
          for (let r = 0; r < rows; r++) for (let c = 0; c < w; c++) f[out + r * os + col + c] = f[src + r * is + c]!;
          col += w;
        }
      } else {
        const src = base(s.input);
        const is = stride(s.input);
        const out = base(s.output);
        const os = stride(s.output);
        const w = this.widths.get(s.output)!;
        for (let r = 0; r < rows; r++) {
          for (let c = 0; c < w; c++) {
            if (s.kind === 'columns') f[out + r * os + c] = f[src + r * is + s.cols[c]!]!;
            else {
              const x = f[src + r * is + c]!;
              f[out + r * os + c] = s.kind === 'relu' ? (x > 0 ? x : 0) : x < s.min ? s.min : x > s.max ? s.max : x;
            }
          }
        }
      }
    }
    const result = new Float32Array(rows * this.outputWidth);
    const outAt = base(this.outputName);
    const outStride = stride(this.outputName);
    const outW = this.outputWidth;
    for (let r = 0; r < rows; r++) for (let c = 0, o = outAt + r * outStride, i = r * outW; c < outW; c++) result[i + c] = f[o + c]!;
    return result;
  }
}

class Unsupported extends Error {}

function need(ok: boolean, why: string): asserts ok {
  if (!ok) throw new Unsupported(why);
}

interface Plan {
  graph: { input: string; output: string; widths: Map<string, number> };
  steps: Step[];
  layers: Layer[];
}

/** Orders the nodes into steps and infers every value's width; throws Unsupported for what it cannot run. */
function plan(g: OnnxGraph): Plan {
  need(g.inputs.length === 1 && g.outputs.length === 1, 'one input and one output only');
  const input = g.inputs[0]!;
  const output = g.outputs[0]!;
  need(input.elemType === 1 && input.shape.length === 2 && typeof input.shape[1] === 'number', 'input must be float [batch, width]');
  const widths = new Map<string, number>([[input.name, input.shape[1] as number]]);
  const constants = new Map<string, OnnxTensor>(g.initializers);
  const uses = new Map<string, number>();
  for (const n of g.nodes) for (const i of n.inputs) uses.set(i, (uses.get(i) ?? 0) + 1);
  const steps: Step[] = [];
  const layers: Layer[] = [];
  const width = (v: string): number => {
    const w = widths.get(v);
    need(w !== undefined, `value ${v} is used before it is computed (or is not a [batch, width] tensor)`);
    return w;
  };
  const ints = (v: string | undefined): number[] | undefined => (v ? constants.get(v)?.ints : undefined);
  const scalar = (v: string | undefined, dflt: number): number => {
    if (!v) return dflt;
    const t = constants.get(v);
    need(t?.floats?.length === 1, `${v} must be a constant float scalar`);
    return t.floats[0]!;
  };
  const relu = new Set<OnnxNode>();
  for (const n of g.nodes) {
    need(n.domain === '' || n.domain === 'ai.onnx', `operator domain ${n.domain} is not supported`);
    const [out] = n.outputs;
    need(out !== undefined && n.outputs.length === 1, `${n.opType}: one output only`);
    const attr = n.attributes;
    switch (n.opType) {
      case 'Constant': {
        const t = attr.get('value')?.t;
        need(t !== undefined, 'Constant without a tensor value');
        constants.set(out, t);
        break;
      }
      case 'Gemm': {
        const [a, b, c] = n.inputs;
        const B = constants.get(b!);
        need(B?.floats !== undefined && B.dims.length === 2, 'Gemm: B must be a constant float matrix');
        const transA = attr.get('transA')?.i ?? 0;
        const transB = attr.get('transB')?.i ?? 0;
        const alpha = attr.get('alpha')?.f ?? 1;
        const beta = attr.get('beta')?.f ?? 1;
        need(transA === 0, 'Gemm: transA is not supported');
        const nin = width(a!);
        const [d0, d1] = B.dims as [number, number];
        const nout = transB ? d0 : d1;
        need((transB ? d1 : d0) === nin, `Gemm ${out}: B does not match its input width ${nin}`);
        // As [nout][nin], alpha folded in.
        const weights = new Float32Array(nout * nin);
        for (let j = 0; j < nout; j++)
          for (let i = 0; i < nin; i++) weights[j * nin + i] = alpha * B.floats[transB ? j * nin + i : i * nout + j]!;
        const C = c ? constants.get(c) : undefined;
        need(
          !c || (C?.floats !== undefined && (C.floats.length === nout || C.floats.length === 1)),
          'Gemm: C must be a constant [N] or scalar',
        );
        const bias = Float32Array.from({ length: nout }, (_, j) => beta * (C ? C.floats![C.floats!.length === 1 ? 0 : j]! : 0));
        layers.push({ weights, nin, nout, bias });
        // A Relu that is this Gemm's only consumer runs inside the kernel.
        const next = g.nodes.find((m) => m.opType === 'Relu' && m.inputs[0] === out);
        const fuse = next !== undefined && uses.get(out) === 1 && !g.outputs.some((o) => o.name === out);
        if (fuse) relu.add(next);
        const target = fuse ? next.outputs[0]! : out;
        steps.push({ kind: 'gemm', input: a!, output: target, w: 0, bias: 0, nin, nout, relu: fuse });
        widths.set(target, nout);
        break;
      }
      case 'Relu':
        if (relu.has(n)) break;
        steps.push({ kind: 'relu', input: n.inputs[0]!, output: out });
        widths.set(out, width(n.inputs[0]!));
        break;
      case 'Gather': {
        const [data, idx] = n.inputs;
        const axis = attr.get('axis')?.i ?? 0;
        const w = width(data!);
        const cols = ints(idx);
        need(
          (axis === 1 || axis === -1) && cols !== undefined && constants.get(idx!)!.dims.length === 1,
          'Gather: only constant 1-D indices on axis 1',
        );
        need(
          cols.every((k) => k >= -w && k < w),
          'Gather: index out of range',
        );
        steps.push({ kind: 'columns', input: data!, output: out, cols: cols.map((k) => (k < 0 ? k + w : k)) });
        widths.set(out, cols.length);
        break;
      }
      case 'Slice': {
        const [data, startsV, endsV, axesV, stepsV] = n.inputs;
        const w = width(data!);
        const starts = ints(startsV);
        const ends = ints(endsV);
        const axes = axesV ? ints(axesV) : [1];
        const stepsK = stepsV ? ints(stepsV) : [1];
        need(starts?.length === 1 && ends?.length === 1 && axes?.length === 1 && stepsK?.length === 1, 'Slice: constant, on one axis');
        need((axes[0] === 1 || axes[0] === -1) && stepsK[0] === 1, 'Slice: only axis 1 with step 1');
        const clamp = (k: number): number => Math.min(w, Math.max(0, k < 0 ? k + w : k));
        const from = clamp(starts[0]!);
        const to = clamp(ends[0]!);
        const cols = Array.from({ length: Math.max(0, to - from) }, (_, k) => from + k);
        steps.push({ kind: 'columns', input: data!, output: out, cols });
        widths.set(out, cols.length);
        break;
      }
      case 'Clip': {
        const [x, lo, hi] = n.inputs;
        const min = attr.get('min')?.f ?? scalar(lo, -Infinity);
        const max = attr.get('max')?.f ?? scalar(hi, Infinity);
        steps.push({ kind: 'clip', input: x!, output: out, min, max });
        widths.set(out, width(x!));
        break;
      }
      case 'Concat': {
        const axis = attr.get('axis')?.i;
        need(axis === 1 || axis === -1, 'Concat: only axis 1');
        steps.push({ kind: 'concat', inputs: n.inputs, output: out });
        widths.set(
          out,
          n.inputs.reduce((s, v) => s + width(v), 0),
        );
        break;
      }
      case 'Identity':
        steps.push({ kind: 'columns', input: n.inputs[0]!, output: out, cols: Array.from({ length: width(n.inputs[0]!) }, (_, k) => k) });
        widths.set(out, width(n.inputs[0]!));
        break;
      default:
        throw new Unsupported(`operator ${n.opType} is not supported`);
    }
  }
  need(widths.has(output.name), `the output ${output.name} is not a [batch, width] tensor`);
  return { graph: { input: input.name, output: output.name, widths }, steps, layers };
}
