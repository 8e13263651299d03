/**
 * One WebAssembly SIMD kernel, assembled here byte by byte (no toolchain, no dependency): a dense
 * layer over a batch, y[r, j] = max(floor, bias[j] + Σ_i x[r, i] · w[i, j]), 16 outputs at a time
 * in four f32x4 accumulators. small-graph.ts runs a model's Gemm nodes with it, so a small MLP needs
 * neither onnxruntime's library nor its session (≈ 30 MB of RSS, docs/benchmarks.md): the module is ~400 bytes
 * and each graph gets its own linear memory for weights and activations.
 *
 * Layout (byte offsets into the memory, all 16-byte aligned): x rows of `xStride` bytes (inputs read
 * one float at a time, so any width); w as [nin][quads × 16] floats (the ONNX weight transposed and
 * zero-padded to whole quads of 16 outputs); bias as quads × 16 floats; y rows of `yStride` bytes.
 * floor is 0 for a fused Relu, −Infinity for none.
 */

const leb = (n: number): number[] => {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
};
const sleb = (n: number): number[] => {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(b & 0x40)) || (n === -1 && b & 0x40)) return [...out, b];
    out.push(b | 0x80);
  }
};
const section = (id: number, bytes: number[]): number[] => [id, ...leb(bytes.length), ...bytes];
const name = (s: string): number[] => [...leb(s.length), ...new TextEncoder().encode(s)];

const I32 = 0x7f;
const F32 = 0x7d;
const V128 = 0x7b;
const op = {
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  end: [0x0b],
  br: (d: number) => [0x0c, ...leb(d)],
  brIf: (d: number) => [0x0d, ...leb(d)],
  get: (i: number) => [0x20, ...leb(i)],
  set: (i: number) => [0x21, ...leb(i)],
  i32: (v: number) => [0x41, ...sleb(v)],
  add: [0x6a],
  mul: [0x6c],
  shl: [0x74],
  geU: [0x4f],
  f32load: [0x2a, 2, 0],
  v128load: (offset: number) => [0xfd, 0x00, 4, ...leb(offset)],
  v128store: (offset: number) => [0xfd, 0x0b, 4, ...leb(offset)],
  f32x4splat: [0xfd, 0x13],
  f32x4add: [0xfd, 0xe4, 0x01],
  f32x4mul: [0xfd, 0xe6, 0x01],
  f32x4max: [0xfd, 0xe9, 0x01],
};

// Parameters, then locals (i32 × 7, v128 × 6).
const [X, ROWS, XSTRIDE, W, BIAS, NIN, QUADS, Y, YSTRIDE, FLOOR] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
const [R, Q, I, XROW, YROW, WP, WROW, A0, A1, A2, A3, FL, XV] = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22];
const ACC = [A0, A1, A2, A3];

/** while (!(a >= b)) { body } */
const until = (a: number, b: number, body: number[]): number[] => [
  ...op.block,
  ...op.loop,
  ...op.get(a),
  ...op.get(b),
  ...op.geU,
  ...op.brIf(1),
  ...body,
  ...op.br(0),
  ...op.end,
  ...op.end,
];
const inc = (local: number): number[] => [...op.get(local), ...op.i32(1), ...op.add, ...op.set(local)];
/** base + index × 64: the byte offset of quad `index` (16 floats). */
const quadAt = (base: number, index: number): number[] => [...op.get(base), ...op.get(index), ...op.i32(6), ...op.shl, ...op.add];

const body = [
  ...op.get(FLOOR),
  ...op.f32x4splat,
  ...op.set(FL),
  ...op.get(QUADS),
  ...op.i32(6),
  ...op.shl,
  ...op.set(WROW),
  ...op.i32(0),
  ...op.set(R),
  ...until(R, ROWS, [
    ...op.get(X),
    ...op.get(R),
    ...op.get(XSTRIDE),
    ...op.mul,
    ...op.add,
    ...op.set(XROW),
    ...op.get(Y),
    ...op.get(R),
    ...op.get(YSTRIDE),
    ...op.mul,
    ...op.add,
    ...op.set(YROW),
    ...op.i32(0),
    ...op.set(Q),
    ...until(Q, QUADS, [
      ...ACC.flatMap((a, k) => [...quadAt(BIAS, Q), ...op.v128load(16 * k), ...op.set(a)]),
      ...quadAt(W, Q),
      ...op.set(WP),
      ...op.i32(0),
      ...op.set(I),
      ...until(I, NIN, [
        ...op.get(XROW),
        ...op.get(I),
        ...op.i32(2),
        ...op.shl,
        ...op.add,
        ...op.f32load,
        ...op.f32x4splat,
        ...op.set(XV),
        ...ACC.flatMap((a, k) => [
          ...op.get(a),
          ...op.get(XV),
          ...op.get(WP),
          ...op.v128load(16 * k),
          ...op.f32x4mul,
          ...op.f32x4add,
          ...op.set(a),
        ]),
        ...op.get(WP),
        ...op.get(WROW),
        ...op.add,
        ...op.set(WP),
        ...inc(I),
      ]),
      ...ACC.flatMap((a, k) => [...quadAt(YROW, Q), ...op.get(a), ...op.get(FL), ...op.f32x4max, ...op.v128store(16 * k)]),
      ...inc(Q),
    ]),
    ...inc(R),
  ]),
];

const code = [...leb(2), ...leb(7), I32, ...leb(6), V128, ...body, ...op.end];

const MODULE_BYTES = new Uint8Array([
  0x00,
  0x61,
  0x73,
  0x6d,
  1,
  0,
  0,
  0,
  ...section(1, [1, 0x60, 10, I32, I32, I32, I32, I32, I32, I32, I32, I32, F32, 0]),
  ...section(2, [1, ...name('env'), ...name('memory'), 0x02, 0x00, 1]),
  ...section(3, [1, 0]),
  ...section(7, [1, ...name('gemm'), 0x00, 0]),
  ...section(10, [1, ...leb(code.length), ...code]),
]);

/** The slice of the WebAssembly JS API used here (Node has it; the repo's TypeScript libs do not declare it). */
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: Record<string, Record<string, unknown>>) => { exports: Record<string, unknown> };
  Memory: new (descriptor: { initial: number }) => WasmMemory;
}
const wasm = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

let compiled: object | undefined;

/** True when this runtime has WebAssembly with SIMD (Node ≥ 16.4 has). */
export function wasmSimdAvailable(): boolean {
  return wasm !== undefined && wasm.validate(MODULE_BYTES);
}

/** A linear memory of `pages` × 64 KiB. */
export function wasmMemory(pages: number): WasmMemory {
  return new wasm!.Memory({ initial: pages });
}

export type GemmFn = (
  x: number,
  rows: number,
  xStride: number,
  w: number,
  bias: number,
  nin: number,
  quads: number,
  y: number,
  yStride: number,
  floor: number,
) => void;

/** An instance of the kernel over `memory`. */
export function gemmKernel(memory: WasmMemory): GemmFn {
  compiled ??= new wasm!.Module(MODULE_BYTES);
  const instance = new wasm!.Instance(compiled, { env: { memory } });
  return instance.exports['gemm'] as GemmFn;
}
