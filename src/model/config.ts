/**
 * The model's shape, read from a Hugging Face `config.json` and checked.
 * Every consumer (graph builder, reference forward, engine) reads this, never
 * the raw JSON.
 */
import { ModelLoadError } from './errors.ts';
import { BLOCKS } from './quantize.ts';

export const SUPPORTED_ARCHITECTURES = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'mistral',
  Qwen2ForCausalLM: 'qwen2',
  Qwen3ForCausalLM: 'qwen3',
} as const;

export type ArchitectureName = keyof typeof SUPPORTED_ARCHITECTURES;
export type Family = (typeof SUPPORTED_ARCHITECTURES)[ArchitectureName];

export type RopeScaling =
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number }
  | { type: 'linear'; factor: number }
  /** Each frequency divided by its own factor (Llama 3.1's scaling as a GGUF file stores it: a `rope_freqs` tensor). */
  | { type: 'factors'; factors: number[] };

export interface ModelConfig {
  architecture: ArchitectureName;
  family: Family;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** Biases on the q, k and v projections (Qwen2). */
  attentionBias: boolean;
  /** RMSNorm over each head of q and k before RoPE (Qwen3). */
  qkNorm: boolean;
  /** Keys further back than this many positions are masked (Mistral); null for none. */
  slidingWindow: number | null;
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** How the weights on disk are quantized (`quantization_config`, as `pie model quantize` writes it); null for float weights. */
  quantization: WeightQuantization | null;
}

/** Weight-only block quantization (src/model/quantize.ts), as recorded in config.json. */
export interface WeightQuantization {
  /** Bits of the linear layers of each block. */
  bits: 4 | 8;
  /** Bits of the output head and the embedding; null where they stay float. */
  headBits: 4 | 8 | null;
  block: number;
  zeroPoints: boolean;
}

/** What `--quantize q4|q8` (and `model.quantize`) mean: symmetric blocks of 32, the output head and embedding at 8 bits (as llama.cpp keeps its head wider). */
export function quantizationFor(choice: 'q4' | 'q8'): WeightQuantization {
  return { bits: choice === 'q4' ? 4 : 8, headBits: 8, block: 32, zeroPoints: false };
}

/** Our `quantization_config.quant_method`. */
export const QUANT_METHOD = 'pie-blockwise';

type Json = Record<string, unknown>;

export function parseModelConfig(raw: Json, source = 'config.json'): ModelConfig {
  const archs = raw.architectures;
  const arch = Array.isArray(archs) ? String(archs[0]) : undefined;
  if (!arch) throw new ModelLoadError(`${source}: no "architectures" entry`);
  if (!(arch in SUPPORTED_ARCHITECTURES)) {
    throw new ModelLoadError(
      `${source}: unsupported architecture ${arch}; supported: ${Object.keys(SUPPORTED_ARCHITECTURES).join(', ')}`,
    );
  }
  const architecture = arch as ArchitectureName;
  const family = SUPPORTED_ARCHITECTURES[architecture];
  const int = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
      throw new ModelLoadError(`${source}: "${key}" must be a positive integer, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const num = (key: string, fallback: number): number => {
    const v = raw[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ModelLoadError(`${source}: "${key}" must be a number`);
    return v;
  };
  const hiddenSize = int('hidden_size');
  const numHeads = int('num_attention_heads');
  const numKvHeads = int('num_key_value_heads', numHeads);
  const headDim = raw.head_dim == null ? hiddenSize / numHeads : int('head_dim');
  if (!Number.isInteger(headDim)) throw new ModelLoadError(`${source}: hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}`);
  if (headDim % 2 !== 0) throw new ModelLoadError(`${source}: head dimension ${headDim} must be even for RoPE`);
  if (numHeads % numKvHeads !== 0) {
    throw new ModelLoadError(`${source}: num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  }
  const act = raw.hidden_act ?? 'silu';
  if (act !== 'silu') throw new ModelLoadError(`${source}: hidden_act "${String(act)}" is not supported (only silu)`);
  const eos = raw.eos_token_id;
  const eosTokenIds = eos == null ? [] : Array.isArray(eos) ? eos.map(Number) : [Number(eos)];
  const useSliding = family === 'mistral' || (family !== 'llama' && raw.use_sliding_window === true);
  const window = typeof raw.sliding_window === 'number' && useSliding ? raw.sliding_window : null;
  const ropeScaling = parseRopeScaling(raw.rope_scaling, source);
  if (ropeScaling?.type === 'factors' && ropeScaling.factors.length !== headDim / 2) {
    throw new ModelLoadError(`${source}: ${ropeScaling.factors.length} RoPE frequency factors for a head of ${headDim} (${headDim / 2} frequencies)`);
  }
  return {
    architecture,
    family,
    hiddenSize,
    intermediateSize: int('intermediate_size'),
    numLayers: int('num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: int('vocab_size'),
    rmsNormEps: num('rms_norm_eps', 1e-6),
    ropeTheta: num('rope_theta', 10000),
    ropeScaling,
    maxPositionEmbeddings: int('max_position_embeddings', 2048),
    tieWordEmbeddings: raw.tie_word_embeddings === true,
    attentionBias: family === 'qwen2' || raw.attention_bias === true,
    qkNorm: family === 'qwen3',
    slidingWindow: window,
    bosTokenId: typeof raw.bos_token_id === 'number' ? raw.bos_token_id : null,
    eosTokenIds,
    quantization: parseQuantization(raw.quantization_config, source),
  };
}

function parseQuantization(raw: unknown, source: string): WeightQuantization | null {
  if (raw == null) return null;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ModelLoadError(`${source}: quantization_config must be an object`);
  const r = raw as Json;
  if (r.quant_method !== QUANT_METHOD) {
    throw new ModelLoadError(
      `${source}: weights quantized with ${JSON.stringify(r.quant_method)} are not supported; ` +
        `serve the float model (--quantize q4|q8 quantizes it at load), or quantize it with \`pie model quantize\``,
    );
  }
  const bits = (v: unknown, nullable: boolean): 4 | 8 | null => {
    if (v === 4 || v === 8 || (nullable && v === null)) return v;
    throw new ModelLoadError(`${source}: quantization_config bits must be 4 or 8${nullable ? ' (or null)' : ''}, got ${JSON.stringify(v)}`);
  };
  const block = r.block_size;
  if (typeof block !== 'number' || !(BLOCKS as readonly number[]).includes(block)) {
    throw new ModelLoadError(`${source}: quantization_config block_size must be one of ${BLOCKS.join(', ')}, got ${JSON.stringify(block)}`);
  }
  return { bits: bits(r.bits, false)!, headBits: bits(r.head_bits ?? null, true), block, zeroPoints: r.zero_points === true };
}

/** The `quantization_config` entry of config.json for `q`. */
export function quantizationConfigJson(q: WeightQuantization): Json {
  return { quant_method: QUANT_METHOD, bits: q.bits, head_bits: q.headBits, block_size: q.block, zero_points: q.zeroPoints };
}

function parseRopeScaling(raw: unknown, source: string): RopeScaling | null {
  if (raw == null) return null;
  if (typeof raw !== 'object') throw new ModelLoadError(`${source}: rope_scaling must be an object`);
  const r = raw as Json;
  const type = r.rope_type ?? r.type;
  if (type === 'default') return null;
  if (type === 'llama3') {
    return {
      type: 'llama3',
      factor: Number(r.factor),
      lowFreqFactor: Number(r.low_freq_factor ?? 1),
      highFreqFactor: Number(r.high_freq_factor ?? 4),
      originalMaxPositionEmbeddings: Number(r.original_max_position_embeddings ?? 8192),
    };
  }
  if (type === 'linear') return { type: 'linear', factor: Number(r.factor) };
  // Ours: a GGUF file's rope_freqs (Llama 3.1), kept when `pie model import-gguf` writes a directory.
  if (type === 'factors') {
    if (!Array.isArray(r.factors) || !r.factors.every((f) => typeof f === 'number' && f > 0)) throw new ModelLoadError(`${source}: rope_scaling "factors" must be a list of positive numbers`);
    return { type: 'factors', factors: r.factors as number[] };
  }
  throw new ModelLoadError(`${source}: rope_scaling type "${String(type)}" is not supported (llama3, linear)`);
}

/** RoPE inverse frequencies (length headDim/2), with the configured scaling applied. */
export function ropeInverseFrequencies(config: ModelConfig): Float64Array {
  const half = config.headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(config.ropeTheta, (2 * i) / config.headDim);
  const s = config.ropeScaling;
  if (s?.type === 'linear') {
    for (let i = 0; i < half; i++) inv[i]! /= s.factor;
  } else if (s?.type === 'factors') {
    for (let i = 0; i < half; i++) inv[i]! /= s.factors[i]!;
  } else if (s?.type === 'llama3') {
    const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
    const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const freq = inv[i]!;
      const wavelen = (2 * Math.PI) / freq;
      if (wavelen < highWavelen) continue;
      if (wavelen > lowWavelen) {
        inv[i] = freq / s.factor;
      } else {
        const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        inv[i] = (1 - smooth) * (freq / s.factor) + smooth * freq;
      }
    }
  }
  return inv;
}

/** Width of one token's key (or value) row: kv heads × head dim. */
export function kvDim(config: ModelConfig): number {
  return config.numKvHeads * config.headDim;
}
