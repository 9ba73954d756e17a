/**
 * A GGUF file as a model: its architecture and shape from the metadata (as a
 * Hugging Face config.json would give them), its tokenizer, special tokens
 * and chat template from the metadata (gguf-tokenizer.ts), and its tensors
 * mapped onto the engine's weights (ggml-blocks.ts: quantized types onto the
 * quantized kernels, float types to float32), so that the file alone serves.
 *
 * Architectures: llama (Mistral's files say llama too), qwen2, qwen3.
 * llama.cpp's converter stores a llama model's q and k rows permuted for its
 * RoPE of adjacent pairs; they are put back in Hugging Face's order (halves),
 * which the graph rotates. Llama 3.1's RoPE frequency factors come as a
 * `rope_freqs` tensor.
 */
import { existsSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import type { ModelConfig, WeightQuantization } from '../config.ts';
import { parseModelConfig } from '../config.ts';
import { ModelLoadError } from '../errors.ts';
import type { LoadedModel, LoadOptions, ModelText } from '../load.ts';
import { modelText } from '../load.ts';
import { quantizeRows } from '../quantize.ts';
import type { Tensor } from '../safetensors.ts';
import { pairsToHalvesOrder, permuteRows, type LayerWeights, type Linear, type ModelWeights } from '../weights.ts';
import { dequantizeRows, isQuantizedType, permuteQuantizedRows, toNBits } from './ggml-blocks.ts';
import { ggmlTypeName, isSupportedType, SUPPORTED_TYPE_NAMES } from './ggml-types.ts';
import { hasGgufMagic, readGgufHeader, readTensorBytes, type GgufFile, type GgufTensorInfo } from './gguf-file.ts';
import { ggufTokenizer } from './gguf-tokenizer.ts';

const ARCHITECTURES: Record<string, string> = { llama: 'LlamaForCausalLM', qwen2: 'Qwen2ForCausalLM', qwen3: 'Qwen3ForCausalLM' };

/** A GGUF file: named *.gguf, or any file that starts with GGUF's magic. */
export function isGgufPath(path: string): boolean {
  if (!existsSync(path) || !statSync(path).isFile()) return false;
  return /\.gguf$/i.test(path) || hasGgufMagic(path);
}

function arch(file: GgufFile): string {
  const a = file.metadata.get('general.architecture');
  if (typeof a !== 'string' || !(a in ARCHITECTURES)) {
    throw new ModelLoadError(`${file.path}: architecture ${JSON.stringify(a ?? null)} is not supported; supported: ${Object.keys(ARCHITECTURES).join(', ')} (Mistral's files are llama)`);
  }
  return a;
}

/** The model's config, as parseModelConfig reads a config.json built from the metadata (ggufRawConfig). */
export function ggufConfig(file: GgufFile): ModelConfig {
  return parseModelConfig(ggufRawConfig(file), `${file.path} (its metadata)`);
}

/** The Hugging Face config.json the metadata describes (Llama 3.1's frequency factors as our own rope_scaling type "factors"). */
export function ggufRawConfig(file: GgufFile): Record<string, unknown> {
  const a = arch(file);
  const m = file.metadata;
  const top = (key: string) => {
    const v = m.get(key);
    if (typeof v === 'bigint') throw new ModelLoadError(`${file.path}: metadata ${key} is ${v}, beyond any model this engine serves`);
    return v;
  };
  const get = (key: string) => top(`${a}.${key}`);
  const tokens = m.get('tokenizer.ggml.tokens');
  const embed = file.tensors.get('token_embd.weight');
  const heads = get('attention.head_count');
  const hidden = get('embedding_length');
  const raw: Record<string, unknown> = {
    architectures: [ARCHITECTURES[a]],
    hidden_size: hidden,
    intermediate_size: get('feed_forward_length'),
    num_hidden_layers: get('block_count'),
    num_attention_heads: heads,
    num_key_value_heads: get('attention.head_count_kv') ?? heads,
    head_dim: get('attention.key_length') ?? undefined,
    vocab_size: get('vocab_size') ?? embed?.dims[1] ?? (Array.isArray(tokens) ? tokens.length : undefined),
    rms_norm_eps: get('attention.layer_norm_rms_epsilon'),
    rope_theta: get('rope.freq_base'),
    max_position_embeddings: get('context_length'),
    tie_word_embeddings: !file.tensors.has('output.weight'),
    bos_token_id: top('tokenizer.ggml.bos_token_id'),
    eos_token_id: top('tokenizer.ggml.eos_token_id'),
  };
  // As llama.cpp: a factor with no type is linear scaling, and older files name the factor rope.scale_linear.
  const factor = get('rope.scaling.factor') ?? get('rope.scale_linear');
  const scaling = get('rope.scaling.type') ?? (factor !== undefined ? 'linear' : undefined);
  // As llama.cpp: linear scaling with no factor (or 0 or 1) is no scaling.
  if (scaling === 'linear' && typeof factor === 'number' && factor > 0 && factor !== 1) raw.rope_scaling = { type: 'linear', factor };
  else if (scaling !== undefined && scaling !== 'none' && scaling !== 'linear') throw new ModelLoadError(`${file.path}: RoPE scaling "${String(scaling)}" is not supported (linear, or frequency factors)`);
  // q/k/v biases: Qwen2 always; a llama file where the converter found them.
  if (file.tensors.has('blk.0.attn_q.bias')) raw.attention_bias = true;
  // A sliding window in the metadata is left alone, as llama.cpp leaves it for these architectures.
  const freqs = file.tensors.get('rope_freqs.weight');
  if (freqs) {
    if (raw.rope_scaling) throw new ModelLoadError(`${file.path}: both a RoPE scaling type and frequency factors`);
    const headDim = typeof raw.head_dim === 'number' ? raw.head_dim : Number(hidden) / Number(heads);
    raw.rope_scaling = { rope_type: 'factors', factors: Array.from(floats(file, freqs, [headDim / 2])) };
  }
  return raw;
}

function floats(file: GgufFile, info: GgufTensorInfo, shape: number[]): Float32Array {
  checkShape(file, info, shape);
  return dequantizeRows(info.type, readTensorBytes(file, info), 1, shape.reduce((a, b) => a * b, 1));
}

function checkShape(file: GgufFile, info: GgufTensorInfo, shape: number[]): void {
  if (!isSupportedType(info.type)) {
    throw new ModelLoadError(`${file.path}: tensor ${info.name} has type ${ggmlTypeName(info.type)}, which this engine does not read; supported: ${SUPPORTED_TYPE_NAMES.join(', ')}`);
  }
  // ggml lists a row's length first: an HF [out, in] weight is [in, out] here.
  const want = [...shape].reverse();
  if (info.dims.length !== want.length || info.dims.some((d, i) => d !== want[i])) {
    throw new ModelLoadError(`${file.path}: tensor ${info.name} has shape [${info.dims}], expected [${want}]`);
  }
}

/**
 * Refuses a file with tensors the graph has no place for (an output-projection
 * or MLP bias, LongRoPE factors, experts), which would otherwise be dropped
 * silently: by name, before any tensor is read.
 */
export function checkTensorNames(file: GgufFile, c: ModelConfig): void {
  const known = new Set(['token_embd.weight', 'output_norm.weight', 'output.weight', 'rope_freqs.weight']);
  for (let i = 0; i < c.numLayers; i++) {
    const p = `blk.${i}.`;
    for (const n of ['attn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_norm', 'ffn_gate', 'ffn_up', 'ffn_down']) known.add(`${p}${n}.weight`);
    if (c.attentionBias) for (const n of ['attn_q', 'attn_k', 'attn_v']) known.add(`${p}${n}.bias`);
    if (c.qkNorm) for (const n of ['attn_q_norm', 'attn_k_norm']) known.add(`${p}${n}.weight`);
  }
  const unused = [...file.tensors.keys()].filter((n) => !known.has(n));
  if (unused.length > 0) {
    const many = unused.length > 1;
    throw new ModelLoadError(`${file.path}: tensor${many ? 's' : ''} ${unused.slice(0, 5).join(', ')}${unused.length > 5 ? ', …' : ''} ha${many ? 've' : 's'} no place in this engine's ${c.architecture} model`);
  }
}

export function ggufModelText(file: GgufFile, options: LoadOptions = {}): ModelText {
  const config = ggufConfig(file);
  const tok = ggufTokenizer(file.metadata, file.path);
  return modelText({
    name: options.name ?? basename(file.path).replace(/\.gguf$/i, ''),
    dir: file.path,
    config,
    tokJson: tok.json,
    tokConfig: tok.config,
    tokenizerSource: `${file.path} (its tokenizer metadata)`,
    fallbackChatTemplate: options.fallbackChatTemplate,
    eosTokenIds: tok.eosTokenIds,
    generationDefaults: {},
  });
}

export function loadGgufModel(path: string, options: LoadOptions = {}): LoadedModel {
  const file = readGgufHeader(path);
  const text = ggufModelText(file, options);
  return { ...text, weights: ggufWeights(file, text.config, options.quantize ?? null) };
}

/**
 * The tensors as the engine's weights. `quantize`: float tensors are
 * quantized as `--quantize` asks, and Q4_K becomes 4 bits where it asks 4 bits
 * of that weight (the layers with q4; the head and embedding only with a 4-bit
 * head), else 8 (near exact). Other quantized types keep their formats.
 */
export function ggufWeights(file: GgufFile, c: ModelConfig, quantize: WeightQuantization | null): ModelWeights {
  const a = arch(file);
  const H = c.hiddenSize;
  const qDim = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const I = c.intermediateSize;
  checkTensorNames(file, c);
  const info = (name: string): GgufTensorInfo => {
    const t = file.tensors.get(name);
    if (!t) throw new ModelLoadError(`${file.path}: missing tensor ${name}`);
    return t;
  };
  const vector = (name: string, n: number, order?: number[]): Tensor => {
    const data = floats(file, info(name), [n]);
    return { data: order ? permuteRows(data, 1, order) : data, shape: [n] };
  };
  /** `bits`: what --quantize asks of this weight (null: nothing); it also decides whether Q4_K becomes 4 bits (else 8). */
  const linear = (name: string, N: number, K: number, bits: 4 | 8 | null, order?: number[]): Linear => {
    const t = info(name);
    checkShape(file, t, [N, K]);
    const bytes = readTensorBytes(file, t);
    if (isQuantizedType(t.type)) {
      const q = toNBits(t.type, bytes, N, K, bits === 4 ? 4 : 8);
      return { shape: [N, K], quantized: order ? permuteQuantizedRows(q, order) : q };
    }
    const rows = order ? permuteRows(dequantizeRows(t.type, bytes, N, K), K, order) : dequantizeRows(t.type, bytes, N, K);
    if (!quantize || bits === null) return { data: rows, shape: [N, K] };
    return { shape: [N, K], quantized: quantizeRows(rows, N, K, { bits, block: quantize.block, zeroPoints: quantize.zeroPoints }) };
  };
  const bits = quantize?.bits ?? null;
  const headBits = quantize ? quantize.headBits : null;
  // A llama file's q and k rows, biases included, are in llama.cpp's order (pairs).
  const qOrder = a === 'llama' ? pairsToHalvesOrder(c.numHeads, c.headDim) : undefined;
  const kOrder = a === 'llama' ? pairsToHalvesOrder(c.numKvHeads, c.headDim) : undefined;
  const layers: LayerWeights[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const p = `blk.${i}.`;
    layers.push({
      inputNorm: vector(`${p}attn_norm.weight`, H),
      q: linear(`${p}attn_q.weight`, qDim, H, bits, qOrder),
      k: linear(`${p}attn_k.weight`, kv, H, bits, kOrder),
      v: linear(`${p}attn_v.weight`, kv, H, bits),
      o: linear(`${p}attn_output.weight`, H, qDim, bits),
      qBias: c.attentionBias ? vector(`${p}attn_q.bias`, qDim, qOrder) : null,
      kBias: c.attentionBias ? vector(`${p}attn_k.bias`, kv, kOrder) : null,
      vBias: c.attentionBias ? vector(`${p}attn_v.bias`, kv) : null,
      qNorm: c.qkNorm ? vector(`${p}attn_q_norm.weight`, c.headDim) : null,
      kNorm: c.qkNorm ? vector(`${p}attn_k_norm.weight`, c.headDim) : null,
      postNorm: vector(`${p}ffn_norm.weight`, H),
      gate: linear(`${p}ffn_gate.weight`, I, H, bits),
      up: linear(`${p}ffn_up.weight`, I, H, bits),
      down: linear(`${p}ffn_down.weight`, H, I, bits),
    });
  }
  const embed = linear('token_embd.weight', c.vocabSize, H, headBits);
  return {
    embed,
    layers,
    norm: vector('output_norm.weight', H),
    lmHead: file.tensors.has('output.weight') ? linear('output.weight', c.vocabSize, H, headBits) : embed,
  };
}

