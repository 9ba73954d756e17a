/**
 * A small typed helper for writing ONNX graphs by hand: value names are
 * strings, every node gets a fresh output name, initializers carry raw bytes.
 *
 * An ONNX file is a protocol buffer, which cannot exceed 2 GB. For larger
 * models the weights go to a side file ("external data"), which `save()`
 * writes beside the model; `encode()` keeps everything in one buffer.
 */
import { closeSync, openSync } from 'node:fs';
import { basename } from 'node:path';
import onnxProto from 'onnx-proto';
import { writeFully } from '../../src/util/fs-io.ts';

const { onnx } = onnxProto;

export const DType = { FLOAT: 1, UINT8: 2, INT32: 6, INT64: 7, BOOL: 9, DOUBLE: 11, UINT32: 12 } as const;

/** Initializers at least this large may go to external data. */
const EXTERNAL_MIN_BYTES = 64 * 1024;
export type DTypeCode = (typeof DType)[keyof typeof DType];

export type Dim = number | string;

const MS_DOMAIN = 'com.microsoft';
export type AttrValue = number | number[] | string | { float: number } | { graph: onnxProto.onnx.IGraphProto };

export interface GraphIO {
  name: string;
  type: DTypeCode;
  shape: Dim[];
}

export class GraphBuilder {
  private readonly nodes: onnxProto.onnx.INodeProto[] = [];
  private readonly initializers: onnxProto.onnx.ITensorProto[];
  private readonly inputs: GraphIO[] = [];
  private readonly outputs: GraphIO[] = [];
  private readonly counter: { next: number };
  private readonly scalarCache: Map<string, string>;
  /** Float and byte initializers big enough to go to external data, in order. */
  private readonly large: { proto: onnxProto.onnx.ITensorProto; bytes: Uint8Array }[];

  /** `outer`: the graph a subgraph (an If branch) belongs to, whose names, initializers and constants it shares. */
  constructor(outer?: GraphBuilder) {
    this.initializers = outer?.initializers ?? [];
    this.counter = outer?.counter ?? { next: 0 };
    this.scalarCache = outer?.scalarCache ?? new Map();
    this.large = outer?.large ?? [];
  }

  input(name: string, type: DTypeCode, shape: Dim[]): string {
    this.inputs.push({ name, type, shape });
    return name;
  }

  output(value: string, name: string, type: DTypeCode, shape: Dim[]): void {
    this.op('Identity', [value], {}, name);
    this.outputs.push({ name, type, shape });
  }

  /** A float32 initializer; the bytes are referenced, not copied, until `encode()`. */
  floats(name: string, data: Float32Array, dims: number[]): string {
    if (data.length !== dims.reduce((a, b) => a * b, 1)) {
      throw new Error(`initializer ${name}: ${data.length} values for shape [${dims}]`);
    }
    const proto: onnxProto.onnx.ITensorProto = { name, dims, dataType: DType.FLOAT };
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.length >= EXTERNAL_MIN_BYTES) this.large.push({ proto, bytes });
    else proto.rawData = bytes;
    this.initializers.push(proto);
    return name;
  }

  /** A uint8 initializer (quantized weights); the bytes are referenced, not copied, until `encode()`. */
  bytes(name: string, data: Uint8Array, dims: number[]): string {
    if (data.length !== dims.reduce((a, b) => a * b, 1)) throw new Error(`initializer ${name}: ${data.length} bytes for shape [${dims}]`);
    const proto: onnxProto.onnx.ITensorProto = { name, dims, dataType: DType.UINT8 };
    if (data.length >= EXTERNAL_MIN_BYTES) this.large.push({ proto, bytes: data });
    else proto.rawData = data;
    this.initializers.push(proto);
    return name;
  }

  /** Bytes of the weights that `save()` would put in external data. */
  get externalBytes(): number {
    return this.large.reduce((a, l) => a + l.bytes.length, 0);
  }

  int64s(name: string, data: number[], dims: number[] = [data.length]): string {
    this.initializers.push({
      name,
      dims,
      dataType: DType.INT64,
      rawData: new Uint8Array(BigInt64Array.from(data.map(BigInt)).buffer),
    });
    return name;
  }

  uint32s(name: string, data: number[], dims: number[] = [data.length]): string {
    this.initializers.push({ name, dims, dataType: DType.UINT32, rawData: new Uint8Array(Uint32Array.from(data).buffer) });
    return name;
  }

  /** A shared int64 constant (for shapes, axes, offsets). */
  constInt64(values: number[]): string {
    const key = `i64:${values.join(',')}`;
    let name = this.scalarCache.get(key);
    if (!name) {
      name = this.int64s(`const_${this.scalarCache.size}`, values);
      this.scalarCache.set(key, name);
    }
    return name;
  }

  constFloat(value: number): string {
    const key = `f32:${value}`;
    let name = this.scalarCache.get(key);
    if (!name) {
      name = this.floats(`const_${this.scalarCache.size}`, Float32Array.of(value), []);
      this.scalarCache.set(key, name);
    }
    return name;
  }

  /** A shared float64 scalar constant. */
  constDouble(value: number): string {
    const key = `f64:${value}`;
    let name = this.scalarCache.get(key);
    if (!name) {
      name = `const_${this.scalarCache.size}`;
      this.initializers.push({ name, dims: [], dataType: DType.DOUBLE, rawData: new Uint8Array(Float64Array.of(value).buffer) });
      this.scalarCache.set(key, name);
    }
    return name;
  }

  /** Adds a node; returns the name of its first output. */
  op(type: string, inputs: string[], attrs: Record<string, AttrValue> = {}, output?: string): string {
    return this.opN(type, inputs, 1, attrs, output ? [output] : undefined)[0]!;
  }

  /** A node of ONNX Runtime's own operators (the `com.microsoft` domain). */
  msOp(type: string, inputs: string[], attrs: Record<string, AttrValue> = {}): string {
    return this.opN(type, inputs, 1, attrs, undefined, MS_DOMAIN)[0]!;
  }

  opN(type: string, inputs: string[], numOutputs: number, attrs: Record<string, AttrValue> = {}, outputs?: string[], domain?: string): string[] {
    const id = this.counter.next++;
    const outs = outputs ?? Array.from({ length: numOutputs }, (_, i) => `${type.toLowerCase()}_${id}_${i}`);
    this.nodes.push({
      opType: type,
      ...(domain ? { domain } : {}),
      name: `${type}_${id}`,
      input: inputs,
      output: outs,
      attribute: Object.entries(attrs).map(([name, value]) => attribute(name, value)),
    });
    return outs;
  }

  /** An empty initializer of the given type (a branch that produces nothing). */
  empty(type: DTypeCode, dims: number[]): string {
    const name = `empty_${this.counter.next++}`;
    if (dims.reduce((a, b) => a * b, 1) !== 0) throw new Error(`empty initializer ${name}: shape [${dims}] is not empty`);
    this.initializers.push({ name, dims, dataType: type, rawData: new Uint8Array(0) });
    return name;
  }

  /**
   * An If node: each branch builds its values (the else branch typically
   * empty tensors, or a cheaper way to the same); returns the node's outputs.
   * ONNX Runtime runs only the branch taken, where it would otherwise run
   * every node of a graph whether its output is fetched or not.
   */
  valuesIf(cond: string, types: DTypeCode[], thenBranch: (b: GraphBuilder) => string[], elseBranch: (b: GraphBuilder) => string[], names?: string[]): string[] {
    const id = this.counter.next++;
    const outs = names ?? types.map((_, i) => `if_${id}_${i}`);
    const branch = (label: string, build: (b: GraphBuilder) => string[]): onnxProto.onnx.IGraphProto => {
      const sub = new GraphBuilder(this);
      const values = build(sub);
      // A value made in the branch is its output as is; one from outside needs an Identity (a copy).
      const made = new Set(sub.nodes.flatMap((n) => n.output ?? []));
      const inner = values.map((v, i) => (made.has(v) && values.indexOf(v) === i ? v : sub.op('Identity', [v], {}, `${outs[i]}_${label}_${id}`)));
      return { name: `${label}_${id}`, node: sub.nodes, output: inner.map((name, i) => valueInfo({ name, type: types[i]!, shape: [] }, false)) };
    };
    return this.opN('If', [cond], outs.length, { then_branch: { graph: branch('then', thenBranch) }, else_branch: { graph: branch('else', elseBranch) } }, outs);
  }

  /** An If node whose outputs are graph outputs (see `valuesIf`). */
  outputsIf(cond: string, outputs: GraphIO[], thenBranch: (b: GraphBuilder) => string[], elseBranch: (b: GraphBuilder) => string[]): void {
    this.valuesIf(cond, outputs.map((o) => o.type), thenBranch, elseBranch, outputs.map((o) => o.name));
    this.outputs.push(...outputs);
  }

  /** The whole model, weights included, as one protocol buffer (under 2 GB only). */
  encode(opset = 18): Uint8Array {
    for (const { proto, bytes } of this.large) {
      // Inline, even after a save() that failed part way.
      proto.rawData = bytes;
      proto.dataLocation = onnx.TensorProto.DataLocation.DEFAULT;
      proto.externalData = [];
    }
    return this.modelBytes(opset);
  }

  /** Writes `modelPath` and its weights to `modelPath + '.data'` (ONNX external data), for models of any size. */
  save(modelPath: string, opset = 18): void {
    const dataPath = `${modelPath}.data`;
    const fd = openSync(dataPath, 'w');
    try {
      let offset = 0;
      for (const { proto, bytes } of this.large) {
        const aligned = Math.ceil(offset / 4096) * 4096;
        if (aligned > offset) writeFully(fd, new Uint8Array(aligned - offset));
        writeFully(fd, bytes);
        proto.rawData = null;
        proto.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
        proto.externalData = [
          { key: 'location', value: basename(dataPath) },
          { key: 'offset', value: String(aligned) },
          { key: 'length', value: String(bytes.length) },
        ];
        offset = aligned + bytes.length;
      }
    } finally {
      closeSync(fd);
    }
    const fdModel = openSync(modelPath, 'w');
    try {
      writeFully(fdModel, this.modelBytes(opset));
    } finally {
      closeSync(fdModel);
    }
  }

  private modelBytes(opset: number): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'pie-gateway',
      opsetImport: [
        { domain: '', version: opset },
        { domain: MS_DOMAIN, version: 1 },
      ],
      graph: {
        name: 'main',
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs.map((io) => valueInfo(io)),
        output: this.outputs.map((io) => valueInfo(io)),
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

function attribute(name: string, value: AttrValue): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof value === 'number') return { name, type: T.INT, i: value };
  if (typeof value === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: T.INTS, ints: value };
  if ('graph' in value) return { name, type: T.GRAPH, g: value.graph };
  return { name, type: T.FLOAT, f: value.float };
}

function valueInfo(io: GraphIO, withShape = true): onnxProto.onnx.IValueInfoProto {
  const shape = { dim: io.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) };
  return { name: io.name, type: { tensorType: { elemType: io.type, ...(withShape ? { shape } : {}) } } };
}
