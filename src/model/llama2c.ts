/**
 * Converts a llama2.c checkpoint (legacy v0 format) and its binary tokenizer
 * into a Hugging Face model directory. Layouts: ../shared/models/README.md.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ModelLoadError } from './errors.ts';
import { writeSafetensors, type Tensor } from './safetensors.ts';
import { pairsToHalvesOrder, permuteRows } from './weights.ts';
import { BYTE_PIECE_OFFSET, bytePiece, llamaTokenizerConfig, llamaTokenizerJson, SPECIALS, type Piece } from './tokenizer-json.ts';

export interface Llama2cHeader {
  dim: number;
  hiddenDim: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  vocabSize: number;
  seqLen: number;
  shared: boolean;
}

/** `onProgress(done, total)`: after each layer converted, and the written file. */
export function importLlama2c(checkpointPath: string, tokenizerPath: string, outDir: string, onProgress?: (done: number, total: number) => void): Llama2cHeader {
  const ckpt = readFileSync(checkpointPath);
  if (ckpt.length < 28) throw new ModelLoadError(`${checkpointPath}: too short for a llama2.c header`);
  const ints = [0, 1, 2, 3, 4, 5, 6].map((i) => ckpt.readInt32LE(i * 4));
  const [dim, hiddenDim, numLayers, numHeads, numKvHeads, rawVocab, seqLen] = ints as [number, number, number, number, number, number, number];
  const header: Llama2cHeader = {
    dim,
    hiddenDim,
    numLayers,
    numHeads,
    numKvHeads,
    vocabSize: Math.abs(rawVocab),
    seqLen,
    shared: rawVocab > 0,
  };
  if ([dim, hiddenDim, numLayers, numHeads, numKvHeads, seqLen].some((v) => v <= 0) || dim % numHeads !== 0) {
    throw new ModelLoadError(`${checkpointPath}: not a llama2.c legacy checkpoint (header ${ints.join(', ')})`);
  }
  const headSize = dim / numHeads;
  const kvDim = numKvHeads * headSize;
  const floats = new Float32Array(ckpt.buffer.slice(ckpt.byteOffset + 28, ckpt.byteOffset + ckpt.length));
  let offset = 0;
  const take = (count: number): Float32Array => {
    if (offset + count > floats.length) throw new ModelLoadError(`${checkpointPath}: truncated (needs more weights than the file holds)`);
    const out = floats.slice(offset, offset + count);
    offset += count;
    return out;
  };
  const V = header.vocabSize;
  const L = numLayers;
  const embed = take(V * dim);
  const attnNorm = take(L * dim);
  const wq = take(L * dim * dim);
  const wk = take(L * kvDim * dim);
  const wv = take(L * kvDim * dim);
  const wo = take(L * dim * dim);
  const ffnNorm = take(L * dim);
  const w1 = take(L * hiddenDim * dim);
  const w2 = take(L * dim * hiddenDim);
  const w3 = take(L * hiddenDim * dim);
  const finalNorm = take(dim);
  take(seqLen * (headSize / 2) * 2); // RoPE tables, unused
  const lmHead = header.shared ? null : take(V * dim);

  const tensors = new Map<string, Tensor>();
  const put = (name: string, data: Float32Array, shape: number[]) => tensors.set(name, { data, shape });
  const layerSlice = (all: Float32Array, i: number, size: number) => all.subarray(i * size, (i + 1) * size);
  put('model.embed_tokens.weight', embed, [V, dim]);
  for (let i = 0; i < L; i++) {
    const p = `model.layers.${i}.`;
    put(`${p}input_layernorm.weight`, layerSlice(attnNorm, i, dim), [dim]);
    put(`${p}self_attn.q_proj.weight`, permuteRows(layerSlice(wq, i, dim * dim), dim, pairsToHalvesOrder(numHeads, headSize)), [dim, dim]);
    put(`${p}self_attn.k_proj.weight`, permuteRows(layerSlice(wk, i, kvDim * dim), dim, pairsToHalvesOrder(numKvHeads, headSize)), [kvDim, dim]);
    put(`${p}self_attn.v_proj.weight`, layerSlice(wv, i, kvDim * dim), [kvDim, dim]);
    put(`${p}self_attn.o_proj.weight`, layerSlice(wo, i, dim * dim), [dim, dim]);
    put(`${p}post_attention_layernorm.weight`, layerSlice(ffnNorm, i, dim), [dim]);
    put(`${p}mlp.gate_proj.weight`, layerSlice(w1, i, hiddenDim * dim), [hiddenDim, dim]);
    put(`${p}mlp.down_proj.weight`, layerSlice(w2, i, dim * hiddenDim), [dim, hiddenDim]);
    put(`${p}mlp.up_proj.weight`, layerSlice(w3, i, hiddenDim * dim), [hiddenDim, dim]);
    onProgress?.(i + 1, L + 1);
  }
  put('model.norm.weight', finalNorm, [dim]);
  if (lmHead) put('lm_head.weight', lmHead, [V, dim]);

  const pieces = readLlama2cTokenizer(tokenizerPath, V);
  mkdirSync(outDir, { recursive: true });
  writeSafetensors(join(outDir, 'model.safetensors'), tensors);
  onProgress?.(L + 1, L + 1);
  const json = (name: string, value: unknown) => writeFileSync(join(outDir, name), JSON.stringify(value, null, 2) + '\n');
  json('config.json', {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: dim,
    intermediate_size: hiddenDim,
    num_hidden_layers: L,
    num_attention_heads: numHeads,
    num_key_value_heads: numKvHeads,
    vocab_size: V,
    max_position_embeddings: seqLen,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    hidden_act: 'silu',
    tie_word_embeddings: header.shared,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: 'float32',
  });
  json('generation_config.json', { bos_token_id: 1, eos_token_id: 2 });
  json('tokenizer.json', llamaTokenizerJson(pieces));
  json('tokenizer_config.json', llamaTokenizerConfig(seqLen));
  return header;
}

export function readLlama2cTokenizer(path: string, vocabSize: number): Piece[] {
  const buf = readFileSync(path);
  let pos = 4; // max_token_length, unused
  const pieces: Piece[] = [];
  for (let i = 0; i < vocabSize; i++) {
    if (pos + 8 > buf.length) throw new ModelLoadError(`${path}: truncated at token ${i} of ${vocabSize}`);
    const score = buf.readFloatLE(pos);
    const len = buf.readInt32LE(pos + 4);
    pos += 8;
    const raw = buf.subarray(pos, pos + len).toString('utf8');
    pos += len;
    let text: string;
    if (i < SPECIALS.length) text = SPECIALS[i]!;
    else if (i < BYTE_PIECE_OFFSET + 256) text = bytePiece(i - BYTE_PIECE_OFFSET);
    else text = raw.replaceAll(' ', '\u2581');
    pieces.push({ text, score });
  }
  return pieces;
}
