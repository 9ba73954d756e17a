/**
 * Deterministic random-weight models: a Hugging Face directory whose weights
 * come from a seeded generator, with a synthetic Llama-style tokenizer. `tiny`
 * serves fast tests; `bench` is sized for benchmarks (~58M parameters,
 * vocabulary 32000).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from '../util/rng.ts';
import { writeSafetensors, type Tensor, type WriteDType } from './safetensors.ts';
import { bytePiece, llamaTokenizerConfig, llamaTokenizerJson, SPECIALS, type Piece } from './tokenizer-json.ts';

export interface RandomModelSpec {
  architecture: 'LlamaForCausalLM' | 'MistralForCausalLM' | 'Qwen2ForCausalLM' | 'Qwen3ForCausalLM';
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim?: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  ropeTheta?: number;
  ropeScaling?: Record<string, unknown>;
  slidingWindow?: number;
  dtype?: WriteDType;
}

export const PRESETS = {
  tiny: {
    architecture: 'LlamaForCausalLM',
    hiddenSize: 64,
    intermediateSize: 128,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    vocabSize: 512,
    maxPositionEmbeddings: 2048,
    tieWordEmbeddings: false,
  },
  bench: {
    architecture: 'LlamaForCausalLM',
    hiddenSize: 512,
    intermediateSize: 1536,
    numLayers: 8,
    numHeads: 8,
    numKvHeads: 4,
    vocabSize: 32000,
    maxPositionEmbeddings: 4096,
    tieWordEmbeddings: false,
  },
} as const satisfies Record<string, RandomModelSpec>;

export type PresetName = keyof typeof PRESETS;

/** `onProgress(done, total)`: after the embedding, each layer, and the written file (long for the bench preset). */
export function createRandomModel(outDir: string, spec: RandomModelSpec, seed = 0, onProgress?: (done: number, total: number) => void): void {
  const steps = spec.numLayers + 2;
  const rng = new Rng(seed);
  const H = spec.hiddenSize;
  const hd = spec.headDim ?? H / spec.numHeads;
  const qDim = spec.numHeads * hd;
  const kv = spec.numKvHeads * hd;
  const I = spec.intermediateSize;
  const tensors = new Map<string, Tensor>();
  // Weights scaled by 1/sqrt(fan-in) keep activations of order one, so logits
  // are spread out and greedy decoding rarely meets a near-tie.
  const normal = (shape: number[], scale: number): Tensor => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = rng.normal() * scale;
    return { data, shape };
  };
  const norm = (n: number): Tensor => {
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = 1 + 0.1 * rng.normal();
    return { data, shape: [n] };
  };
  const linear = (out: number, inDim: number) => normal([out, inDim], 1 / Math.sqrt(inDim));
  const qwen2 = spec.architecture === 'Qwen2ForCausalLM';
  const qwen3 = spec.architecture === 'Qwen3ForCausalLM';
  tensors.set('model.embed_tokens.weight', normal([spec.vocabSize, H], 1));
  onProgress?.(1, steps);
  for (let i = 0; i < spec.numLayers; i++) {
    const p = `model.layers.${i}.`;
    tensors.set(`${p}input_layernorm.weight`, norm(H));
    tensors.set(`${p}self_attn.q_proj.weight`, linear(qDim, H));
    tensors.set(`${p}self_attn.k_proj.weight`, linear(kv, H));
    tensors.set(`${p}self_attn.v_proj.weight`, linear(kv, H));
    if (qwen2) {
      tensors.set(`${p}self_attn.q_proj.bias`, normal([qDim], 0.5));
      tensors.set(`${p}self_attn.k_proj.bias`, normal([kv], 0.5));
      tensors.set(`${p}self_attn.v_proj.bias`, normal([kv], 0.5));
    }
    if (qwen3) {
      tensors.set(`${p}self_attn.q_norm.weight`, norm(hd));
      tensors.set(`${p}self_attn.k_norm.weight`, norm(hd));
    }
    tensors.set(`${p}self_attn.o_proj.weight`, linear(H, qDim));
    tensors.set(`${p}post_attention_layernorm.weight`, norm(H));
    tensors.set(`${p}mlp.gate_proj.weight`, linear(I, H));
    tensors.set(`${p}mlp.up_proj.weight`, linear(I, H));
    tensors.set(`${p}mlp.down_proj.weight`, linear(H, I));
    onProgress?.(i + 2, steps);
  }
  tensors.set('model.norm.weight', norm(H));
  if (!spec.tieWordEmbeddings) tensors.set('lm_head.weight', linear(spec.vocabSize, H));

  mkdirSync(outDir, { recursive: true });
  writeSafetensors(join(outDir, 'model.safetensors'), tensors, spec.dtype ?? 'F32');
  onProgress?.(steps, steps);
  const json = (name: string, value: unknown) => writeFileSync(join(outDir, name), JSON.stringify(value, null, 2) + '\n');
  json('config.json', {
    architectures: [spec.architecture],
    model_type: spec.architecture.replace('ForCausalLM', '').toLowerCase(),
    hidden_size: H,
    intermediate_size: I,
    num_hidden_layers: spec.numLayers,
    num_attention_heads: spec.numHeads,
    num_key_value_heads: spec.numKvHeads,
    ...(spec.headDim ? { head_dim: spec.headDim } : {}),
    vocab_size: spec.vocabSize,
    max_position_embeddings: spec.maxPositionEmbeddings,
    rms_norm_eps: 1e-5,
    rope_theta: spec.ropeTheta ?? 10000,
    ...(spec.ropeScaling ? { rope_scaling: spec.ropeScaling } : {}),
    ...(spec.slidingWindow ? { sliding_window: spec.slidingWindow, use_sliding_window: true } : {}),
    hidden_act: 'silu',
    tie_word_embeddings: spec.tieWordEmbeddings,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: 'float32',
  });
  json('generation_config.json', { bos_token_id: 1, eos_token_id: 2 });
  json('tokenizer.json', llamaTokenizerJson(syntheticPieces(spec.vocabSize)));
  json('tokenizer_config.json', llamaTokenizerConfig(spec.maxPositionEmbeddings));
}

/**
 * A deterministic vocabulary: specials, the 256 byte-fallback pieces, every
 * printable ASCII character and "▁", then longer pieces formed by appending one
 * character to an earlier piece, until the vocabulary is full.
 */
export function syntheticPieces(vocabSize: number): Piece[] {
  const pieces: Piece[] = SPECIALS.map((text) => ({ text, score: 0 }));
  for (let b = 0; b < 256; b++) pieces.push({ text: bytePiece(b), score: 0 });
  const singles = ['\u2581', ...'etaoinshrdlucmfwypvbgkjqxz', ...'ETAOINSHRDLUCMFWYPVBGKJQXZ', ...'0123456789', ...`.,!?'"-:;()[]{}<>/\\|@#$%^&*_+=~\``];
  const seen = new Set<string>();
  const add = (text: string) => {
    if (pieces.length >= vocabSize || seen.has(text)) return;
    seen.add(text);
    pieces.push({ text, score: -pieces.length });
  };
  for (const s of singles) add(s);
  let layer = singles;
  while (pieces.length < vocabSize && layer.length > 0) {
    const next: string[] = [];
    for (const prefix of layer) {
      for (const s of singles) {
        if (pieces.length >= vocabSize) break;
        const text = prefix + s;
        add(text);
        next.push(text);
      }
    }
    layer = next;
  }
  if (pieces.length < vocabSize) throw new Error(`cannot build a synthetic vocabulary of ${vocabSize}`);
  return pieces;
}
