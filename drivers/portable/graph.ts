/**
 * Builds the ONNX graph of a Llama-family model over a paged KV cache.
 *
 * Inputs (see drivers/driver.ts for the meaning of each):
 *   token_ids [T] i32, positions [T] i32, kv_pool [NL*2*KVH*NS, HD] f32,
 *   kv_gather [U] i32, key_index [B, L] i32, query_index [B, Q] i32,
 *   token_index [T] i32, attn_mask [B, Q, L] f32, sample_index [S] i32,
 *   inv_temperature [S] f32, token_mask [S, ceil(V/32)] u32, want_logits [] bool,
 *   want_head [] bool, and the sampling head's inputs (sampling-head.ts)
 * Outputs, all over the allowed tokens of each row (token_mask: bit t of word
 * t/32 set; -1 words allow all):
 *   best [S] i64 (argmax), best_logprob [S] f32, new_kv [T, NL*2*KVH, HD] f32;
 *   logits [S, V] f32 (-Infinity where masked; [0, V] unless want_logits);
 *   the sampling head's outputs (empty unless want_head).
 *
 * The pool is one flat tensor, slot-major: row slot*P + (layer*2 + kind)*KVH + head
 * (P = NL*2*KVH planes) holds HD floats, so one token's keys and values for all
 * layers are one contiguous block that the host writes (or copies) in one go.
 * Attention works head-major, [KVH, B, ...], so the gathered
 * keys and values need no transpose: scores are computed as K·Qᵀ ([L, Q·G],
 * small for decode) and transposed.
 */
import type { ModelConfig } from '../../src/model/config.ts';
import { ropeInverseFrequencies } from '../../src/model/config.ts';
import { isQuantized, type Linear, type ModelWeights, type QuantizedTensor } from '../../src/model/weights.ts';
import type { Tensor } from '../../src/model/safetensors.ts';
import { blocksOf, bytesPerBlock, stackable, stackQuantized, type Quantized } from '../../src/model/quantize.ts';
import { DType, GraphBuilder } from './onnx-builder.ts';
import { samplingHead, samplingHeadEmpty, samplingHeadOutputs } from './sampling-head.ts';

export interface GraphSpec {
  config: ModelConfig;
  weights: ModelWeights;
  numSlots: number;
}

/** The graph as one buffer (models under 2 GB). */
export function buildGraph(spec: GraphSpec): Uint8Array {
  return graphBuilder(spec).encode();
}

export function graphBuilder({ config, weights, numSlots }: GraphSpec): GraphBuilder {
  const g = new GraphBuilder();
  const c = config;
  const H = c.hiddenSize;
  const HD = c.headDim;
  const NH = c.numHeads;
  const KVH = c.numKvHeads;
  const G = NH / KVH;
  const qDim = NH * HD;
  const kvDimSize = KVH * HD;
  const NL = c.numLayers;
  const scale = 1 / Math.sqrt(HD);

  const tokenIds = g.input('token_ids', DType.INT32, ['T']);
  const positions = g.input('positions', DType.INT32, ['T']);
  const planes = NL * 2 * KVH;
  const pool = g.input('kv_pool', DType.FLOAT, [numSlots * planes, HD]);
  const kvGather = g.input('kv_gather', DType.INT32, ['U']);
  const keyIndex = g.input('key_index', DType.INT32, ['B', 'L']);
  const queryIndex = g.input('query_index', DType.INT32, ['B', 'Q']);
  const tokenIndex = g.input('token_index', DType.INT32, ['T']);
  const mask = g.input('attn_mask', DType.FLOAT, ['B', 'Q', 'L']);
  const sampleIndex = g.input('sample_index', DType.INT32, ['S']);
  const invTemperature = g.input('inv_temperature', DType.FLOAT, ['S']);
  const maskWords = Math.ceil(c.vocabSize / 32);
  const tokenMask = g.input('token_mask', DType.UINT32, ['S', maskWords]);

  const shape = (...dims: number[]) => g.constInt64(dims);
  const rmsNorm = (x: string, w: Tensor, name: string, eps = c.rmsNormEps, weightScale = 1): string => {
    // Written as x / sqrt(mean(x^2) + eps) * w: the pattern ONNX Runtime fuses into one kernel.
    const mean = g.op('ReduceMean', [g.op('Pow', [x, g.constFloat(2)]), shape(-1)], { keepdims: 1 });
    const normed = g.op('Div', [x, g.op('Sqrt', [g.op('Add', [mean, g.constFloat(eps)])])]);
    const wData = weightScale === 1 ? w.data : w.data.map((v) => v * weightScale);
    return g.op('Mul', [normed, g.floats(name, wData, [w.shape[0]!])]);
  };

  // RoPE tables for this step's positions, both halves: [T, 1, HD]. Rotating
  // halves is x·cos + rotate_half(x)·sin, and rotate_half(x) = x·R for a
  // constant signed permutation R: one MatMul (exact: one term per output)
  // instead of a split, four products and a concat.
  const half = Float32Array.from(ropeInverseFrequencies(c));
  const invFreq = new Float32Array(HD);
  invFreq.set(half, 0);
  invFreq.set(half, HD / 2);
  const angles = g.op('Mul', [
    g.op('Unsqueeze', [g.op('Cast', [positions], { to: DType.FLOAT }), shape(1)]),
    g.floats('rope_inv_freq', invFreq, [1, HD]),
  ]);
  const cos = g.op('Unsqueeze', [g.op('Cos', [angles]), shape(1)]);
  const sin = g.op('Unsqueeze', [g.op('Sin', [angles]), shape(1)]);
  const rotation = new Float32Array(HD * HD);
  for (let j = 0; j < HD / 2; j++) {
    rotation[(j + HD / 2) * HD + j] = -1; // out[j] = -x[j + HD/2]
    rotation[j * HD + j + HD / 2] = 1; // out[j + HD/2] = x[j]
  }
  const rotateHalf = g.floats('rope_rotate_half', rotation, [HD, HD]);
  const rope = (x: string): string => g.op('Add', [g.op('Mul', [x, cos]), g.op('Mul', [g.op('MatMul', [x, rotateHalf]), sin])]);

  let x = embedding(g, weights.embed, tokenIds, H);
  const newKv: string[] = [];
  // Pool rows of the gathered slots: slot*P + plane, per head: [KVH, U].
  const headOffsets = (layer: number, kind: number) =>
    g.int64s(`pool_offset_${layer}_${kind}`, Array.from({ length: KVH }, (_, h) => (layer * 2 + kind) * KVH + h), [KVH, 1]);
  const gatherRow = g.op('Mul', [g.op('Unsqueeze', [g.op('Cast', [kvGather], { to: DType.INT64 }), shape(0)]), g.constInt64([planes])]); // [1, U]
  // Run-time shapes [KVH, B, Q, G, L] and [KVH, B, Q·G, L] (B and L come from key_index).
  const dimsBL = g.op('Shape', [keyIndex]);
  const dimB = g.op('Slice', [dimsBL, shape(0), shape(1)]);
  const dimL = g.op('Slice', [dimsBL, shape(1), shape(2)]);
  const scores5Shape = g.op('Concat', [shape(KVH), dimB, shape(-1, G), dimL], { axis: 0 });
  const scores4Shape = g.op('Concat', [shape(KVH), dimB, shape(-1), dimL], { axis: 0 });
  const mask5 = g.op('Unsqueeze', [mask, shape(0, 3)]); // [1, B, Q, 1, L]

  for (let l = 0; l < NL; l++) {
    const w = weights.layers[l]!;
    const p = `layers.${l}.`;
    const h = rmsNorm(x, w.inputNorm, `${p}input_norm`);
    // q is pre-scaled by 1/sqrt(HD) (in its weights, or in its norm for Qwen3).
    const qScale = w.qNorm ? 1 : scale;
    let qkv = linear(g, h, [w.q, w.k, w.v], [qScale, 1, 1], `${p}qkv`);
    if (w.qBias && w.kBias && w.vBias) {
      const bias = new Float32Array(qDim + 2 * kvDimSize);
      bias.set(w.qBias.data.map((v) => v * qScale), 0);
      bias.set(w.kBias.data, qDim);
      bias.set(w.vBias.data, qDim + kvDimSize);
      qkv = g.op('Add', [qkv, g.floats(`${p}qkv_bias`, bias, [bias.length])]);
    }
    const [q0, k0, v0] = g.opN('Split', [qkv, g.constInt64([qDim, kvDimSize, kvDimSize])], 3, { axis: 1 }) as [string, string, string];
    let q = g.op('Reshape', [q0, shape(-1, NH, HD)]);
    let k = g.op('Reshape', [k0, shape(-1, KVH, HD)]);
    const v = g.op('Reshape', [v0, shape(-1, KVH, HD)]);
    if (w.qNorm && w.kNorm) {
      q = rmsNorm(q, w.qNorm, `${p}q_norm`, c.rmsNormEps, scale);
      k = rmsNorm(k, w.kNorm, `${p}k_norm`);
    }
    q = rope(q);
    k = rope(k);
    newKv.push(k, v);
    // New keys and values, head-major: [KVH, T, HD].
    const kNew = g.op('Transpose', [k], { perm: [1, 0, 2] });
    const vNew = g.op('Transpose', [v], { perm: [1, 0, 2] });
    // Keys of every row: [KVH, B, L, HD].
    const rowsOf = (kind: number, fresh: string) => {
      const poolRows = g.op('Add', [gatherRow, headOffsets(l, kind)]); // [KVH, U]
      const past = g.op('Gather', [pool, poolRows], { axis: 0 }); // [KVH, U, HD]
      const all = g.op('Concat', [past, fresh], { axis: 1 }); // [KVH, U+T, HD]
      return g.op('Gather', [all, keyIndex], { axis: 1 }); // [KVH, B, L, HD]
    };
    const keys = rowsOf(0, kNew);
    const values = rowsOf(1, vNew);
    // Queries: [T, NH, HD] → [B, Q, KVH, G, HD] → [KVH, B, HD, Q·G].
    const qRows = g.op('Gather', [g.op('Reshape', [q, shape(-1, KVH, G, HD)]), queryIndex], { axis: 0 });
    const qT = g.op('Reshape', [g.op('Transpose', [qRows], { perm: [2, 0, 4, 1, 3] }), shape(KVH, 0, HD, -1)]);
    const scoresT = g.op('MatMul', [keys, qT]); // [KVH, B, L, Q·G]
    const scores = g.op('Transpose', [scoresT], { perm: [0, 1, 3, 2] }); // [KVH, B, Q·G, L]
    const masked = g.op('Add', [g.op('Reshape', [scores, scores5Shape]), mask5]); // [KVH, B, Q, G, L]
    const probs = g.op('Reshape', [g.op('Softmax', [masked], { axis: -1 }), scores4Shape]); // [KVH, B, Q·G, L]
    const attn = g.op('MatMul', [probs, values]); // [KVH, B, Q·G, HD]
    // Back to tokens: [KVH, B, Q, G, HD] → [B, Q, KVH, G, HD] → [B·Q, NH·HD] → [T, NH·HD].
    const attn5 = g.op('Reshape', [attn, shape(KVH, 0, -1, G, HD)]);
    const perRow = g.op('Reshape', [g.op('Transpose', [attn5], { perm: [1, 2, 0, 3, 4] }), shape(-1, qDim)]);
    const perToken = g.op('Gather', [perRow, tokenIndex], { axis: 0 });
    x = g.op('Add', [x, linear(g, perToken, [w.o], [1], `${p}o`)]);

    const h2 = rmsNorm(x, w.postNorm, `${p}post_norm`);
    const I = c.intermediateSize;
    const gu = linear(g, h2, [w.gate, w.up], [1, 1], `${p}gate_up`);
    const [gate, up] = g.opN('Split', [gu, g.constInt64([I, I])], 2, { axis: 1 }) as [string, string];
    const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
    x = g.op('Add', [x, linear(g, act, [w.down], [1], `${p}down`)]);
  }

  const last = g.op('Gather', [x, sampleIndex], { axis: 0 });
  const normed = rmsNorm(last, weights.norm, 'final_norm');
  const rawLogits = linear(g, normed, [weights.lmHead], [1], 'lm_head');
  // Grammar masks: each word's 32 bits unpacked (shift right, mod 2), tokens
  // outside the mask set to -Infinity. Behind an If: a step whose words are all
  // ones (no row constrained, most steps) skips the passes over [S, V] and keeps
  // the logits bit for bit (measured: 10% of a 32-row decode step of the bench model).
  // A word other than all ones has a non-zero complement. (In float: ONNX Runtime 1.30's
  // int64 ReduceMin/ReduceMax over a whole tensor of more than two elements gave wrong
  // answers here; an empty batch reduces to -Infinity, which is not > 0.)
  const anyMasked = g.op('Greater', [g.op('ReduceMax', [g.op('Cast', [g.op('BitwiseNot', [tokenMask])], { to: DType.FLOAT })], { keepdims: 0 }), g.constFloat(0)]);
  const [logits] = g.valuesIf(
    anyMasked,
    [DType.FLOAT],
    (b) => {
      const shifted = b.op('BitShift', [b.op('Unsqueeze', [tokenMask, shape(2)]), g.uint32s('mask_shifts', Array.from({ length: 32 }, (_, i) => i), [32])], { direction: 'RIGHT' });
      const bits = b.op('Cast', [b.op('Mod', [shifted, g.uint32s('mask_two', [2], [])])], { to: DType.BOOL }); // [S, W, 32]
      const allowed = b.op('Slice', [b.op('Reshape', [bits, shape(0, maskWords * 32)]), shape(0), shape(c.vocabSize), shape(1)]);
      return [b.op('Where', [allowed, rawLogits, g.constFloat(-Infinity)])];
    },
    () => [rawLogits],
  ) as [string];
  // Per sampled row: the greedy token and its log-probability, so that a step
  // where every row is plain greedy need not fetch the logits at all.
  g.output(g.op('ArgMax', [logits], { axis: 1, keepdims: 0, select_last_index: 0 }), 'best', DType.INT64, ['S']);
  const maxLogit = g.op('ReduceMax', [logits, shape(1)], { keepdims: 0 });
  g.output(g.op('Sub', [maxLogit, g.op('ReduceLogSumExp', [logits, shape(1)], { keepdims: 0 })]), 'best_logprob', DType.FLOAT, ['S']);
  // Full rows and the sampling head behind If nodes: ONNX Runtime runs every
  // node of a graph whether its output is fetched or not, but only the branch an If takes.
  const V = c.vocabSize;
  g.outputsIf(g.input('want_logits', DType.BOOL, []), [{ name: 'logits', type: DType.FLOAT, shape: ['S', V] }], () => [logits], (b) => [b.empty(DType.FLOAT, [0, V])]);
  g.outputsIf(g.input('want_head', DType.BOOL, []), samplingHeadOutputs(V), (b) => samplingHead(b, g, logits, invTemperature, V), (b) => samplingHeadEmpty(b, V));
  g.output(g.op('Concat', newKv, { axis: 1 }), 'new_kv', DType.FLOAT, ['T', planes, HD]);
  return g;
}

/**
 * ONNX Runtime's `accuracy_level` for MatMulNBits: 4 quantizes each block of
 * activations to int8 inside the kernel and multiplies integers, as llama.cpp
 * does for its 4- and 8-bit formats (bench:matmul-nbits: 1.6–6.8× fp32 at
 * decode sizes); 0 computes in float and is slower than fp32 for 8 bits.
 */
const ACCURACY_LEVEL = 4;

/**
 * `x · Wᵀ` for weights sharing their inputs, their outputs side by side, each
 * weight's outputs scaled by its factor: one MatMul (float) or MatMulNBits
 * (quantized) per run of weights that stack, concatenated where there are more.
 */
function linear(g: GraphBuilder, x: string, ws: Linear[], factors: number[], name: string): string {
  const groups: { ws: Linear[]; factors: number[] }[] = [];
  ws.forEach((w, i) => {
    const last = groups[groups.length - 1];
    const fits = last && isQuantized(w) === isQuantized(last.ws[0]!) && (!isQuantized(w) || stackable([(last.ws[0] as QuantizedTensor).quantized, w.quantized]));
    if (fits) {
      last.ws.push(w);
      last.factors.push(factors[i]!);
    } else groups.push({ ws: [w], factors: [factors[i]!] });
  });
  const outs = groups.map((grp, i) => {
    const part = groups.length === 1 ? name : `${name}_${i}`;
    if (!isQuantized(grp.ws[0]!)) {
      const ts = grp.ws as Tensor[];
      const N = ts.reduce((a, t) => a + t.shape[0]!, 0);
      return g.op('MatMul', [x, g.floats(part, concatTransposed(ts, grp.factors), [ts[0]!.shape[1]!, N])]);
    }
    const qs = (grp.ws as QuantizedTensor[]).map((w) => w.quantized);
    return matMulNBits(g, x, qs.length === 1 && grp.factors[0] === 1 ? qs[0]! : stackQuantized(qs, grp.factors), part);
  });
  return outs.length === 1 ? outs[0]! : g.op('Concat', outs, { axis: -1 });
}

function matMulNBits(g: GraphBuilder, x: string, q: Quantized, name: string): string {
  const blocks = blocksOf(q);
  const inputs = [x, g.bytes(`${name}.qweight`, q.data, [q.N, blocks, bytesPerBlock(q)]), g.floats(`${name}.scales`, q.scales, [q.N * blocks])];
  if (q.zeroPoints) inputs.push(g.bytes(`${name}.qzeros`, q.zeroPoints, [q.zeroPoints.length]));
  return g.msOp('MatMulNBits', inputs, { K: q.K, N: q.N, bits: q.bits, block_size: q.block, accuracy_level: ACCURACY_LEVEL });
}

/** Rows of the embedding for `ids`: a Gather, or ONNX Runtime's GatherBlockQuantized over a quantized one. */
function embedding(g: GraphBuilder, w: Linear, ids: string, H: number): string {
  if (!isQuantized(w)) return g.op('Gather', [g.floats('embed_tokens', w.data, w.shape), ids], { axis: 0 });
  const q = w.quantized;
  const blocks = blocksOf(q);
  const rowBytes = blocks * bytesPerBlock(q);
  const inputs = [g.bytes('embed_tokens.qweight', q.data, [q.N, rowBytes]), ids, g.floats('embed_tokens.scales', q.scales, [q.N, blocks])];
  if (q.zeroPoints) inputs.push(g.bytes('embed_tokens.qzeros', q.zeroPoints, [q.N, q.zeroPoints.length / q.N]));
  const rows = g.msOp('GatherBlockQuantized', inputs, { gather_axis: 0, quantize_axis: 1, block_size: q.block, bits: q.bits });
  // The last block is padded past H where H is not a multiple of the block.
  return blocks * q.block === H ? rows : g.op('Slice', [rows, g.constInt64([0]), g.constInt64([H]), g.constInt64([1])]);
}

/** Several [out_i, in] matrices → one [in, Σ out_i], each scaled. */
function concatTransposed(ts: Tensor[], scales: number[]): Float32Array {
  const inDim = ts[0]!.shape[1]!;
  const total = ts.reduce((a, t) => a + t.shape[0]!, 0);
  const out = new Float32Array(inDim * total);
  let col = 0;
  ts.forEach((t, i) => {
    const rows = t.shape[0]!;
    const s = scales[i]!;
    for (let r = 0; r < rows; r++) for (let c = 0; c < inDim; c++) out[c * total + col + r] = t.data[r * inDim + c]! * s;
    col += rows;
  });
  return out;
}
