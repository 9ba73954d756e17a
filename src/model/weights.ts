/**
 * The model's weights, keyed by role rather than by file name, with every
 * shape checked against the config. Linear weights keep Hugging Face's
 * [out, in] layout: in float32, or block-quantized (src/model/quantize.ts),
 * read so from a quantized directory or quantized here as they are bound.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ModelConfig, WeightQuantization } from './config.ts';
import { kvDim } from './config.ts';
import { ModelLoadError } from './errors.ts';
import { BLOCKS, blocksOf, bytesPerBlock, dequantizeRows, quantizeRows, zeroPointsPerOutput, type Bits, type Quantized } from './quantize.ts';
import { readSafetensors, type ByteTensor, type Tensor } from './safetensors.ts';

/** A block-quantized linear weight: `quantized.N` outputs (rows) of `quantized.K` inputs. */
export interface QuantizedTensor {
  shape: [number, number];
  quantized: Quantized;
}

/** A linear layer's weight, [out, in]: float32 or block-quantized. */
export type Linear = Tensor | QuantizedTensor;

export function isQuantized(t: Linear): t is QuantizedTensor {
  return 'quantized' in t;
}

/** A linear weight's values as float32 rows ([out, in]): dequantized where quantized. */
export function linearValues(t: Linear): Float32Array {
  return isQuantized(t) ? dequantizeRows(t.quantized) : t.data;
}

/**
 * The rows of a q or k projection reordered for Hugging Face's RoPE (which
 * rotates each head's halves) from an export that rotates adjacent pairs
 * (llama2.c, llama.cpp's llama files): row h·d + j·d/2 + i comes from row
 * h·d + 2i + j. `order[r]` is the source of row r.
 */
export function pairsToHalvesOrder(heads: number, headDim: number): number[] {
  const half = headDim / 2;
  const order = new Array<number>(heads * headDim);
  for (let h = 0; h < heads; h++) for (let i = 0; i < half; i++) for (let j = 0; j < 2; j++) order[h * headDim + j * half + i] = h * headDim + i * 2 + j;
  return order;
}

/** Rows of K values reordered: row r of the result is row `order[r]`. */
export function permuteRows(rows: Float32Array, K: number, order: number[]): Float32Array {
  const out = new Float32Array(rows.length);
  order.forEach((src, dst) => out.set(rows.subarray(src * K, (src + 1) * K), dst * K));
  return out;
}

export interface LayerWeights {
  inputNorm: Tensor;
  q: Linear;
  k: Linear;
  v: Linear;
  o: Linear;
  qBias: Tensor | null;
  kBias: Tensor | null;
  vBias: Tensor | null;
  qNorm: Tensor | null;
  kNorm: Tensor | null;
  postNorm: Tensor;
  gate: Linear;
  up: Linear;
  down: Linear;
}

export interface ModelWeights {
  /** [vocab, hidden], gathered by token. */
  embed: Linear;
  layers: LayerWeights[];
  norm: Tensor;
  /** [vocab, hidden]; the embedding itself when the head is tied. */
  lmHead: Linear;
}

/** Float tensors and U8 ones (quantized weights) of a model directory. */
export interface ModelTensors {
  floats: Map<string, Tensor>;
  bytes: Map<string, ByteTensor>;
}

/** Reads all tensors of a model directory: one .safetensors file, or shards listed in model.safetensors.index.json. */
export function readModelTensors(dir: string): ModelTensors {
  const index = join(dir, 'model.safetensors.index.json');
  let files: string[];
  if (existsSync(index)) {
    let map: Record<string, string>;
    try {
      map = JSON.parse(readFileSync(index, 'utf8')).weight_map;
    } catch (err) {
      throw new ModelLoadError(`${index}: not valid JSON (${(err as Error).message})`);
    }
    if (!map || typeof map !== 'object') throw new ModelLoadError(`${index}: no "weight_map" object`);
    files = [...new Set(Object.values(map))];
    for (const f of files) {
      if (!existsSync(join(dir, f))) throw new ModelLoadError(`${index} names shard ${f}, which is missing from ${dir}`);
    }
  } else {
    files = readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort();
    if (files.length === 0) throw new ModelLoadError(`${dir}: no *.safetensors weights file`);
  }
  const floats = new Map<string, Tensor>();
  const bytes = new Map<string, ByteTensor>();
  for (const f of files) for (const [k, v] of readSafetensors(join(dir, f), undefined, bytes)) floats.set(k, v);
  return { floats, bytes };
}

/**
 * Binds tensors to roles, checking shapes. A directory whose config records a
 * quantization is read as quantized, whatever `quantize` says; `quantize`
 * quantizes float weights as they are bound, each float tensor dropped from `tensors` once quantized so
 * that the float copy can go.
 */
export function bindWeights(config: ModelConfig, tensors: ModelTensors, source: string, asked: WeightQuantization | null = null): ModelWeights {
  const H = config.hiddenSize;
  const qDim = config.numHeads * config.headDim;
  const kv = kvDim(config);
  const I = config.intermediateSize;
  // A quantized directory loads as it was quantized: `quantize` is for float weights (quantizing twice would only lose more).
  const stored = config.quantization;
  const quantize = stored ? null : asked;
  const get = (name: string, shape: number[]): Tensor => {
    const t = tensors.floats.get(name);
    if (!t) throw new ModelLoadError(`${source}: missing tensor ${name}`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new ModelLoadError(`${source}: tensor ${name} has shape [${t.shape}], expected [${shape}]`);
    }
    return t;
  };
  /** `base` without ".weight": stored quantized, stored float and quantized now, or float. */
  const linear = (base: string, N: number, K: number, bits: Bits | null): Linear => {
    if (stored && bits !== null) return readQuantized(tensors, base, N, K, stored, source);
    const t = get(`${base}.weight`, [N, K]);
    if (!quantize || bits === null) return t;
    tensors.floats.delete(`${base}.weight`);
    return { shape: [N, K], quantized: quantizeRows(t.data, N, K, { bits, block: quantize.block, zeroPoints: quantize.zeroPoints }) };
  };
  const q = stored ?? quantize;
  const bits = q?.bits ?? null;
  const headBits = q?.headBits ?? null;
  const layers: LayerWeights[] = [];
  for (let i = 0; i < config.numLayers; i++) {
    const p = `model.layers.${i}.`;
    layers.push({
      inputNorm: get(`${p}input_layernorm.weight`, [H]),
      q: linear(`${p}self_attn.q_proj`, qDim, H, bits),
      k: linear(`${p}self_attn.k_proj`, kv, H, bits),
      v: linear(`${p}self_attn.v_proj`, kv, H, bits),
      o: linear(`${p}self_attn.o_proj`, H, qDim, bits),
      qBias: config.attentionBias ? get(`${p}self_attn.q_proj.bias`, [qDim]) : null,
      kBias: config.attentionBias ? get(`${p}self_attn.k_proj.bias`, [kv]) : null,
      vBias: config.attentionBias ? get(`${p}self_attn.v_proj.bias`, [kv]) : null,
      qNorm: config.qkNorm ? get(`${p}self_attn.q_norm.weight`, [config.headDim]) : null,
      kNorm: config.qkNorm ? get(`${p}self_attn.k_norm.weight`, [config.headDim]) : null,
      postNorm: get(`${p}post_attention_layernorm.weight`, [H]),
      gate: linear(`${p}mlp.gate_proj`, I, H, bits),
      up: linear(`${p}mlp.up_proj`, I, H, bits),
      down: linear(`${p}mlp.down_proj`, H, I, bits),
    });
  }
  const has = (base: string) => tensors.floats.has(`${base}.weight`) || tensors.bytes.has(`${base}.qweight`);
  const tied = config.tieWordEmbeddings || !has('lm_head');
  const embed = linear('model.embed_tokens', config.vocabSize, H, headBits);
  return {
    embed,
    layers,
    norm: get('model.norm.weight', [H]),
    lmHead: tied ? embed : linear('lm_head', config.vocabSize, H, headBits),
  };
}

/** A quantized weight as a quantized directory stores it: `.qweight` U8 [N, blocks, bytes per block], `.scales` F32 [N, blocks], `.qzeros` U8 [N, …]. */
function readQuantized(tensors: ModelTensors, base: string, N: number, K: number, q: WeightQuantization, source: string): QuantizedTensor {
  const data = tensors.bytes.get(`${base}.qweight`);
  const scales = tensors.floats.get(`${base}.scales`);
  if (!data || !scales) {
    const has = tensors.floats.has(`${base}.weight`) ? ` (it holds a float ${base}.weight: a config recording a quantization must come with quantized weights)` : '';
    throw new ModelLoadError(`${source}: missing quantized tensor ${base}.${data ? 'scales' : 'qweight'}${has}`);
  }
  // Each weight's block and bits come from its own shape (a GGUF import mixes blocks of 16 and 32; a head may keep more bits).
  const blocks = data.shape[1]!;
  const perBlock = data.shape[2]!;
  const bad = (what: string, got: number[], want: number[]) => new ModelLoadError(`${source}: tensor ${base}.${what} has shape [${got}], expected [${want}]`);
  // The config's block first (one shape can read as 8 bits in blocks of b or 4 bits in blocks of 2b
  // where the block covers the whole row), then the others (GGUF's Q6_K becomes blocks of 16).
  const fits = (b: number) => blocksOf({ K, block: b }) === blocks && [4, 8].includes((perBlock * 8) / b);
  const block = [q.block, ...BLOCKS].find(fits) ?? 0;
  const bits = ((perBlock * 8) / block) as Bits;
  if (data.shape.length !== 3 || data.shape[0] !== N || !block) {
    throw bad('qweight', data.shape, [N, blocksOf({ K, block: q.block }), bytesPerBlock({ block: q.block, bits: q.bits })]);
  }
  if (scales.shape.length !== 2 || scales.shape[0] !== N || scales.shape[1] !== blocks) throw bad('scales', scales.shape, [N, blocks]);
  const zp = tensors.bytes.get(`${base}.qzeros`) ?? null;
  const shape = { K, block, bits };
  if (zp && (zp.shape.length !== 2 || zp.shape[0] !== N || zp.shape[1] !== zeroPointsPerOutput(shape))) throw bad('qzeros', zp.shape, [N, zeroPointsPerOutput(shape)]);
  if (!zp && q.zeroPoints) throw new ModelLoadError(`${source}: missing quantized tensor ${base}.qzeros (the config records zero points)`);
  return { shape: [N, K], quantized: { bits, block, K, N, data: data.bytes, scales: scales.data, zeroPoints: zp?.bytes ?? null } };
}

/** The tensors a quantized directory stores for one weight (see readQuantized). */
export function quantizedTensorsOf(base: string, w: QuantizedTensor): [string, Tensor | ByteTensor][] {
  const q = w.quantized;
  const blocks = blocksOf(q);
  const out: [string, Tensor | ByteTensor][] = [
    [`${base}.qweight`, { bytes: q.data, shape: [q.N, blocks, bytesPerBlock(q)] }],
    [`${base}.scales`, { data: q.scales, shape: [q.N, blocks] }],
  ];
  if (q.zeroPoints) out.push([`${base}.qzeros`, { bytes: q.zeroPoints, shape: [q.N, zeroPointsPerOutput(q)] }]);
  return out;
}

export function describeQuantization(q: WeightQuantization): string {
  return `${q.bits}-bit blocks of ${q.block}${q.zeroPoints ? ' with zero points' : ''}, head ${q.headBits === null ? 'float' : `${q.headBits}-bit`}`;
}

/**
 * The tensors of `weights` under their Hugging Face names (quantized ones as
 * `readQuantized` reads them): what a model directory holds, in file order.
 */
export function weightTensors(weights: ModelWeights): Map<string, Tensor | ByteTensor> {
  const out = new Map<string, Tensor | ByteTensor>();
  const put = (name: string, t: Tensor | null) => t && out.set(name, t);
  const linear = (base: string, w: Linear) => {
    if (isQuantized(w)) for (const [name, t] of quantizedTensorsOf(base, w)) out.set(name, t);
    else out.set(`${base}.weight`, w);
  };
  linear('model.embed_tokens', weights.embed);
  weights.layers.forEach((w, i) => {
    const p = `model.layers.${i}.`;
    put(`${p}input_layernorm.weight`, w.inputNorm);
    linear(`${p}self_attn.q_proj`, w.q);
    linear(`${p}self_attn.k_proj`, w.k);
    linear(`${p}self_attn.v_proj`, w.v);
    linear(`${p}self_attn.o_proj`, w.o);
    put(`${p}self_attn.q_proj.bias`, w.qBias);
    put(`${p}self_attn.k_proj.bias`, w.kBias);
    put(`${p}self_attn.v_proj.bias`, w.vBias);
    put(`${p}self_attn.q_norm.weight`, w.qNorm);
    put(`${p}self_attn.k_norm.weight`, w.kNorm);
    put(`${p}post_attention_layernorm.weight`, w.postNorm);
    linear(`${p}mlp.gate_proj`, w.gate);
    linear(`${p}mlp.up_proj`, w.up);
    linear(`${p}mlp.down_proj`, w.down);
  });
  put('model.norm.weight', weights.norm);
  if (weights.lmHead !== weights.embed) linear('lm_head', weights.lmHead);
  return out;
}
