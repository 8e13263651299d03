/**
 * Just enough of the ONNX file format (protobuf, onnx/onnx.proto) to read a small model's graph:
 * nodes, initializers, constant attributes and the graph's input and output shapes. What it does
 * not know (external data, sparse tensors, subgraphs, training info) it skips or reports, and
 * small-graph.ts decides whether it can run the result; the bytes are the ones whose sha256 the
 * manifest pins, so this reads exactly what onnxruntime would.
 */
import { EdgetwinError, ErrorCodes } from '../errors.js';

export interface OnnxTensor {
  name: string;
  dims: number[];
  /** ONNX TensorProto.DataType: 1 float, 7 int64 (the two read here). */
  dataType: number;
  floats?: Float32Array;
  ints?: number[];
}

export interface OnnxAttribute {
  name: string;
  f?: number;
  i?: number;
  s?: string;
  t?: OnnxTensor;
  ints?: number[];
  floats?: number[];
}

export interface OnnxNode {
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  attributes: Map<string, OnnxAttribute>;
}

export interface OnnxValueInfo {
  name: string;
  elemType: number;
  /** Fixed sizes as numbers, symbolic ones (the batch) as strings. */
  shape: Array<number | string>;
}

export interface OnnxGraph {
  nodes: OnnxNode[];
  initializers: Map<string, OnnxTensor>;
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
  /** Version of the default ("ai.onnx") operator set. */
  opset: number;
}

const FLOAT = 1;
const INT64 = 7;

/** A protobuf reader over one message's bytes: fields as (number, wire type), values on demand. */
class Reader {
  pos = 0;
  constructor(private readonly b: Uint8Array) {}

  get done(): boolean {
    return this.pos >= this.b.length;
  }

  /** A varint as a number; int64 values beyond 2^53 (never sizes here) lose precision, negatives come back negative. */
  varint(): number {
    let lo = 0;
    let shift = 0;
    let hi = 0n;
    for (let k = 0; k < 10; k++) {
      const byte = this.byte();
      if (shift < 28) lo |= (byte & 0x7f) << shift;
      else hi |= BigInt(byte & 0x7f) << BigInt(shift);
      shift += 7;
      if ((byte & 0x80) === 0) return Number(BigInt.asIntN(64, hi | BigInt(lo >>> 0)));
    }
    throw protoError('varint longer than 10 bytes');
  }

  private byte(): number {
    if (this.pos >= this.b.length) throw protoError('message ends in the middle of a field');
    return this.b[this.pos++]!;
  }

  bytes(): Uint8Array {
    const n = this.varint();
    if (n < 0 || this.pos + n > this.b.length) throw protoError('length-delimited field runs past the message');
    const out = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  string(): string {
    return new TextDecoder().decode(this.bytes());
  }

  float32(): number {
    if (this.pos + 4 > this.b.length) throw protoError('fixed32 runs past the message');
    const v = new DataView(this.b.buffer, this.b.byteOffset + this.pos, 4).getFloat32(0, true);
    this.pos += 4;
    return v;
  }

  tag(): { field: number; wire: number } {
    const t = this.varint();
    return { field: Math.floor(t / 8), wire: t & 7 };
  }

  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.bytes();
    else if (wire === 5) this.pos += 4;
    else throw protoError(`unsupported wire type ${wire}`);
  }

  /** A repeated int64 field: packed (wire 2) or one value per tag (wire 0). */
  ints(wire: number, into: number[]): void {
    if (wire !== 2) {
      into.push(this.varint());
      return;
    }
    const r = new Reader(this.bytes());
    while (!r.done) into.push(r.varint());
  }

  floats(wire: number, into: number[]): void {
    if (wire !== 2) {
      into.push(this.float32());
      return;
    }
    const r = new Reader(this.bytes());
    while (!r.done) into.push(r.float32());
  }
}

function protoError(message: string): EdgetwinError {
  return new EdgetwinError(ErrorCodes.MODEL, `not a readable ONNX file: ${message}`);
}

function tensor(bytes: Uint8Array): OnnxTensor {
  const r = new Reader(bytes);
  const t: OnnxTensor = { name: '', dims: [], dataType: 0 };
  const floats: number[] = [];
  const ints: number[] = [];
  let raw: Uint8Array | undefined;
  while (!r.done) {
    const { field, wire } = r.tag();
    if (field === 1) r.ints(wire, t.dims);
    else if (field === 2) t.dataType = r.varint();
    else if (field === 4) r.floats(wire, floats);
    else if (field === 7) r.ints(wire, ints);
    else if (field === 8) t.name = r.string();
    else if (field === 9) raw = r.bytes();
    else if (field === 14) throw protoError(`tensor ${t.name}: external data is not supported`);
    else r.skip(wire);
  }
  const count = t.dims.reduce((a, b) => a * b, 1);
  if (t.dataType === FLOAT) {
    if (raw) {
      // A copy, aligned (raw_data sits anywhere in the file; a Buffer's slice() would not copy).
      const copy = new Uint8Array(raw);
      t.floats = new Float32Array(copy.buffer, 0, copy.byteLength / 4);
    } else t.floats = Float32Array.from(floats);
    if (t.floats.length !== count) throw protoError(`tensor ${t.name}: ${t.floats.length} values for dims [${t.dims.join(', ')}]`);
  } else if (t.dataType === INT64) {
    if (raw) {
      const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
      t.ints = Array.from({ length: raw.byteLength / 8 }, (_, k) => Number(view.getBigInt64(8 * k, true)));
    } else t.ints = ints;
    if (t.ints.length !== count) throw protoError(`tensor ${t.name}: ${t.ints.length} values for dims [${t.dims.join(', ')}]`);
  }
  return t;
}

function attribute(bytes: Uint8Array): OnnxAttribute {
  const r = new Reader(bytes);
  const a: OnnxAttribute = { name: '' };
  while (!r.done) {
    const { field, wire } = r.tag();
    if (field === 1) a.name = r.string();
    else if (field === 2) a.f = r.float32();
    else if (field === 3) a.i = r.varint();
    else if (field === 4) a.s = r.string();
    else if (field === 5) a.t = tensor(r.bytes());
    else if (field === 7) r.floats(wire, (a.floats ??= []));
    else if (field === 8) r.ints(wire, (a.ints ??= []));
    else r.skip(wire);
  }
  return a;
}

function node(bytes: Uint8Array): OnnxNode {
  const r = new Reader(bytes);
  const n: OnnxNode = { opType: '', domain: '', inputs: [], outputs: [], attributes: new Map() };
  while (!r.done) {
    const { field, wire } = r.tag();
    if (field === 1) n.inputs.push(r.string());
    else if (field === 2) n.outputs.push(r.string());
    else if (field === 4) n.opType = r.string();
    else if (field === 5) {
      const a = attribute(r.bytes());
      n.attributes.set(a.name, a);
    } else if (field === 7) n.domain = r.string();
    else r.skip(wire);
  }
  return n;
}

function valueInfo(bytes: Uint8Array): OnnxValueInfo {
  const r = new Reader(bytes);
  const v: OnnxValueInfo = { name: '', elemType: 0, shape: [] };
  while (!r.done) {
    const { field, wire } = r.tag();
    if (field === 1) v.name = r.string();
    else if (field === 2) {
      // TypeProto.tensor_type (1): elem_type (1), shape (2) → dim (1) → dim_value (1) | dim_param (2)
      const type = new Reader(r.bytes());
      while (!type.done) {
        const f = type.tag();
        if (f.field !== 1) {
          type.skip(f.wire);
          continue;
        }
        const tt = new Reader(type.bytes());
        while (!tt.done) {
          const g = tt.tag();
          if (g.field === 1) v.elemType = tt.varint();
          else if (g.field === 2) {
            const shape = new Reader(tt.bytes());
            while (!shape.done) {
              const s = shape.tag();
              if (s.field !== 1) {
                shape.skip(s.wire);
                continue;
              }
              const dim = new Reader(shape.bytes());
              let d: number | string = '?';
              while (!dim.done) {
                const x = dim.tag();
                if (x.field === 1) d = dim.varint();
                else if (x.field === 2) d = dim.string();
                else dim.skip(x.wire);
              }
              v.shape.push(d);
            }
          } else tt.skip(g.wire);
        }
      }
    } else r.skip(wire);
  }
  return v;
}

/** Reads a model file's graph; throws EDGETWIN_ERR_MODEL when the bytes are not a readable ONNX model. */
export function readOnnxGraph(bytes: Uint8Array): OnnxGraph {
  const model = new Reader(bytes);
  const g: OnnxGraph = { nodes: [], initializers: new Map(), inputs: [], outputs: [], opset: 0 };
  let graph: Uint8Array | undefined;
  while (!model.done) {
    const { field, wire } = model.tag();
    if (field === 7) graph = model.bytes();
    else if (field === 8) {
      const op = new Reader(model.bytes());
      let domain = '';
      let version = 0;
      while (!op.done) {
        const f = op.tag();
        if (f.field === 1) domain = op.string();
        else if (f.field === 2) version = op.varint();
        else op.skip(f.wire);
      }
      if (domain === '' || domain === 'ai.onnx') g.opset = version;
    } else model.skip(wire);
  }
  if (!graph) throw protoError('no graph');
  const r = new Reader(graph);
  while (!r.done) {
    const { field, wire } = r.tag();
    if (field === 1) g.nodes.push(node(r.bytes()));
    else if (field === 5) {
      const t = tensor(r.bytes());
      g.initializers.set(t.name, t);
    } else if (field === 11) g.inputs.push(valueInfo(r.bytes()));
    else if (field === 12) g.outputs.push(valueInfo(r.bytes()));
    else r.skip(wire);
  }
  // Initializers may also be listed as graph inputs (older exporters): those are not inputs to feed.
  g.inputs = g.inputs.filter((i) => !g.initializers.has(i.name));
  return g;
}
