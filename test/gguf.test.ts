/**
 * GGUF files (issue 16): files written here by test/gguf-writer.ts, in each
 * tensor type with ggml's block layouts, from the same weights as a
 * safetensors model. They must load with the values ggml's dequantization
 * gives (exactly where the kernels take the blocks as they are), give the
 * safetensors model's logits (exactly for float types), carry their own
 * tokenizer, special tokens and chat template so that the file alone serves,
 * and refuse what is not supported by name.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { afterAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/index.ts';
import { quantizationFor, type ModelConfig } from '../src/model/config.ts';
import { dequantizeRows as ggmlDequantize } from '../src/model/gguf/ggml-blocks.ts';
import { readGgufHeader } from '../src/model/gguf/gguf-file.ts';
import { loadModel, loadModelText } from '../src/model/load.ts';
import { PRESETS, type RandomModelSpec } from '../src/model/random.ts';
import { readSafetensors, writeSafetensors, type Tensor } from '../src/model/safetensors.ts';
import { isQuantized, linearValues, type Linear } from '../src/model/weights.ts';
import { startGateway } from './gateway-helpers.ts';
import { GGUF_TYPE_IDS, quantizeGgml, writeGguf, type GgufType, type MetaValue } from './gguf-writer.ts';
import { CHAT_TEMPLATES_DIR, greedy, haveChatTemplates, LLAMA_TOKENIZER_DIR, haveLlamaTokenizer, randomModelDir, runPie, SKIP_TOKENIZER, testEngine } from './helpers.ts';

const work = mkdtempSync(join(tmpdir(), 'pie-gguf-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Rows of 256 inputs everywhere, so that the k-quants (blocks of 256) fit every weight. */
const SPEC: RandomModelSpec = { ...PRESETS.tiny, hiddenSize: 256, intermediateSize: 512, numHeads: 4, numKvHeads: 2, vocabSize: 512 };
const ARCH: Record<string, string> = { LlamaForCausalLM: 'llama', Qwen2ForCausalLM: 'qwen2', Qwen3ForCausalLM: 'qwen3' };

/** A Hugging Face tensor name as llama.cpp's converter names it. */
function ggufName(name: string): string {
  const fixed: Record<string, string> = { 'model.embed_tokens.weight': 'token_embd.weight', 'model.norm.weight': 'output_norm.weight', 'lm_head.weight': 'output.weight' };
  if (fixed[name]) return fixed[name];
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
  if (!m) throw new Error(`no GGUF name for ${name}`);
  const parts: Record<string, string> = {
    'input_layernorm.weight': 'attn_norm.weight',
    'post_attention_layernorm.weight': 'ffn_norm.weight',
    'self_attn.q_proj.weight': 'attn_q.weight',
    'self_attn.k_proj.weight': 'attn_k.weight',
    'self_attn.v_proj.weight': 'attn_v.weight',
    'self_attn.o_proj.weight': 'attn_output.weight',
    'self_attn.q_proj.bias': 'attn_q.bias',
    'self_attn.k_proj.bias': 'attn_k.bias',
    'self_attn.v_proj.bias': 'attn_v.bias',
    'self_attn.q_norm.weight': 'attn_q_norm.weight',
    'self_attn.k_norm.weight': 'attn_k_norm.weight',
    'mlp.gate_proj.weight': 'ffn_gate.weight',
    'mlp.up_proj.weight': 'ffn_up.weight',
    'mlp.down_proj.weight': 'ffn_down.weight',
  };
  return `blk.${m[1]}.${parts[m[2]!]}`;
}

/** llama.cpp's converter reorders a llama model's q and k rows from halves to pairs (and this puts them back). */
function permuteHeads(rows: Float32Array, heads: number, K: number, toGguf: boolean): Float32Array {
  const hd = rows.length / K / heads;
  const half = hd / 2;
  const out = new Float32Array(rows.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const hf = h * hd + j * half + i;
        const gg = h * hd + i * 2 + j;
        const [from, to] = toGguf ? [hf, gg] : [gg, hf];
        out.set(rows.subarray(from * K, (from + 1) * K), to * K);
      }
    }
  }
  return out;
}

/** The SentencePiece-style tokenizer metadata of a Llama tokenizer.json: pieces by id, scores that rank merges, token types. */
function spmTokenizerMetadata(dir: string): Record<string, MetaValue> {
  const tok = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
  const cfg = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
  const pieces: string[] = [];
  for (const [p, id] of Object.entries(tok.model.vocab as Record<string, number>)) pieces[id] = p;
  const special = new Set<number>();
  for (const t of tok.added_tokens as { id: number; content: string; special: boolean }[]) {
    pieces[t.id] = t.content;
    if (t.special) special.add(t.id);
  }
  // A merged piece's score: minus the rank of the first merge that makes it (SentencePiece merges higher scores first).
  const rank = new Map<string, number>();
  (tok.model.merges as (string | string[])[]).forEach((m, r) => {
    const [a, b] = typeof m === 'string' ? m.split(' ') : m;
    if (!rank.has(a! + b!)) rank.set(a! + b!, r);
  });
  const types = pieces.map((p, i) => (p === tok.model.unk_token ? 2 : special.has(i) ? 3 : /^<0x[0-9A-F]{2}>$/.test(p) ? 6 : 1));
  const idOf = (t: unknown) => pieces.indexOf(typeof t === 'string' ? t : (t as { content: string }).content);
  return {
    'tokenizer.ggml.model': { str: 'llama' },
    'tokenizer.ggml.tokens': { strings: pieces },
    'tokenizer.ggml.scores': { f32s: pieces.map((p) => -(rank.get(p) ?? 1e9)) },
    'tokenizer.ggml.token_type': { i32s: types },
    'tokenizer.ggml.bos_token_id': { u32: idOf(cfg.bos_token) },
    'tokenizer.ggml.eos_token_id': { u32: idOf(cfg.eos_token) },
    'tokenizer.ggml.unknown_token_id': { u32: pieces.indexOf(tok.model.unk_token) },
    'tokenizer.ggml.add_bos_token': { bool: cfg.add_bos_token !== false },
  };
}

interface Written {
  path: string;
  /** What ggml's dequantization reads back, by Hugging Face name, in Hugging Face row order. */
  values: Map<string, Float32Array>;
  /** The same weights as a safetensors model directory. */
  sameDir: string;
}

/** A GGUF file of the model in `dir`, its 2-D tensors in the type `typeOf` gives (1-D ones in F32), as llama.cpp's converter lays it out. */
function ggufFromDir(dir: string, name: string, typeOf: (ggufName: string) => GgufType, extra: Record<string, MetaValue> = {}): Written {
  const raw = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  const arch = ARCH[raw.architectures[0]]!;
  const tensors = readSafetensors(join(dir, 'model.safetensors'));
  const values = new Map<string, Float32Array>();
  const out: Parameters<typeof writeGguf>[2] = [];
  for (const [hf, t] of tensors) {
    const gg = ggufName(hf);
    const K = t.shape[t.shape.length - 1]!;
    const heads = /attn_q\.weight$/.test(gg) ? raw.num_attention_heads : /attn_k\.weight$/.test(gg) ? raw.num_key_value_heads : 0;
    const permute = arch === 'llama' && heads > 0;
    const rows = permute ? permuteHeads(t.data, heads, K, true) : t.data;
    const type = t.shape.length === 1 ? 'F32' : typeOf(gg);
    const q = quantizeGgml(type, rows);
    out.push({ name: gg, dims: [...t.shape].reverse(), type: GGUF_TYPE_IDS[type], data: q.data });
    values.set(hf, permute ? permuteHeads(q.values, heads, K, false) : q.values);
  }
  const a = (k: string) => `${arch}.${k}`;
  const metadata: Record<string, MetaValue> = {
    'general.architecture': { str: arch },
    'general.name': { str: name },
    [a('context_length')]: { u32: raw.max_position_embeddings },
    [a('embedding_length')]: { u32: raw.hidden_size },
    [a('feed_forward_length')]: { u32: raw.intermediate_size },
    [a('block_count')]: { u32: raw.num_hidden_layers },
    [a('attention.head_count')]: { u32: raw.num_attention_heads },
    [a('attention.head_count_kv')]: { u32: raw.num_key_value_heads },
    [a('attention.layer_norm_rms_epsilon')]: { f32: raw.rms_norm_eps },
    [a('rope.freq_base')]: { f32: raw.rope_theta },
    ...spmTokenizerMetadata(dir),
    ...extra,
  };
  const path = join(work, `${name}.gguf`);
  writeGguf(path, metadata, out);
  // The same weights, in float, as a safetensors directory.
  const sameDir = join(work, `${name}-safetensors`);
  mkdirSync(sameDir, { recursive: true });
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) copyFileSync(join(dir, f), join(sameDir, f));
  const same = new Map<string, Tensor>();
  for (const [hf, t] of tensors) same.set(hf, { data: values.get(hf)!, shape: t.shape });
  writeSafetensors(join(sameDir, 'model.safetensors'), same);
  return { path, values, sameDir };
}

/** Logits at every position of `tokens`. */
async function logitsOf(engine: Engine, tokens: number[]): Promise<Float32Array[]> {
  const ctx = engine.createContext();
  try {
    engine.append(ctx, tokens);
    return (await engine.forward(ctx, { numLogits: tokens.length })).logits;
  } finally {
    engine.release(ctx);
  }
}

function linears(w: ReturnType<typeof loadModel>['weights']): [string, Linear][] {
  const out: [string, Linear][] = [
    ['model.embed_tokens.weight', w.embed],
    ['lm_head.weight', w.lmHead],
  ];
  w.layers.forEach((l, i) => {
    const p = `model.layers.${i}.`;
    out.push([`${p}self_attn.q_proj.weight`, l.q], [`${p}self_attn.k_proj.weight`, l.k], [`${p}self_attn.v_proj.weight`, l.v], [`${p}self_attn.o_proj.weight`, l.o]);
    out.push([`${p}mlp.gate_proj.weight`, l.gate], [`${p}mlp.up_proj.weight`, l.up], [`${p}mlp.down_proj.weight`, l.down]);
  });
  return out;
}

function maxAbs(a: Float32Array): number {
  let m = 0;
  for (const v of a) m = Math.max(m, Math.abs(v));
  return m;
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

const argmax = (row: Float32Array) => row.reduce((best, v, i) => (v > row[best]! ? i : best), 0);
const TOKENS = [1, 17, 33, 101, 250, 7, 9, 300, 42];

describe('GGUF tensor types', () => {
  const exact: GgufType[] = ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q6_K'];
  it.each([...exact, 'Q4_K'] as GgufType[])('%s: loads with the values ggml reads back, and gives the logits of the same weights from safetensors', async (type) => {
    const w = ggufFromDir(randomModelDir(SPEC), `llama-${type}`, () => type);
    const model = loadModel(w.path);
    const file = readGgufHeader(w.path);
    for (const [hf, lin] of linears(model.weights)) {
      const want = w.values.get(hf)!;
      // The engine's own ggml dequantization (used for types that stay float) reads the writer's blocks exactly.
      const info = file.tensors.get(ggufName(hf))!;
      expect(isQuantized(lin), hf).toBe(!['F32', 'F16', 'BF16'].includes(type));
      const got = linearValues(lin);
      if (exact.includes(type)) {
        expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer)), `${hf} exactly`).toBe(true);
      } else {
        // Q4_K as 8 bits: each sub-block's offset within 1/32 of its step (a step is at most 2·max|w| / 15).
        expect(maxDiff(got, want), hf).toBeLessThanOrEqual(((2 * maxAbs(want)) / 15) * (1 / 32) * 1.01);
      }
      const [K, N] = info.dims as [number, number];
      if (!hf.includes('q_proj') && !hf.includes('k_proj')) {
        const ggml = ggmlDequantize(info.type, readFileSync(w.path).subarray(info.offset, info.offset + info.bytes), N, K);
        expect(Buffer.from(ggml.buffer).equals(Buffer.from(want.buffer)), `${hf} by ggml's dequantization`).toBe(true);
      }
    }
    const fromGguf = await testEngine(w.path, { numPages: 16 });
    const fromSafetensors = await testEngine(w.sameDir, { numPages: 16 });
    const a = await logitsOf(fromGguf, TOKENS);
    const b = await logitsOf(fromSafetensors, TOKENS);
    if (['F32', 'F16', 'BF16'].includes(type)) {
      a.forEach((row, i) => expect(Buffer.from(row.buffer).equals(Buffer.from(b[i]!.buffer)), `position ${i} bit for bit`).toBe(true));
    } else {
      // The kernels quantize activations to int8 per block; the float model does not.
      const scale = Math.max(...b.map((r) => Math.max(...r.map(Math.abs))));
      const err = Math.max(...b.map((r, i) => Math.max(...r.map((v, j) => Math.abs(v - a[i]![j]!)))));
      expect(err / scale).toBeLessThan(0.03);
      // The top token agrees wherever the float model's margin exceeds what the rows differ by.
      let checked = 0;
      b.forEach((row, i) => {
        const sorted = [...row].sort((x, y) => y - x);
        if (sorted[0]! - sorted[1]! <= 2 * err) return;
        checked++;
        expect(argmax(a[i]!), `position ${i}`).toBe(argmax(row));
      });
      expect(checked).toBeGreaterThanOrEqual(3);
    }
  });

  it('a Q4_K_M-style mix (Q4_K with Q6_K for v, down and the head) loads each tensor onto its own kernel; --quantize q4 turns Q4_K into 4 bits with zero points', async () => {
    const w = ggufFromDir(randomModelDir(SPEC), 'llama-q4km', (n) => (/attn_v|ffn_down|output\.weight/.test(n) ? 'Q6_K' : 'Q4_K'));
    const m = loadModel(w.path);
    const l = m.weights.layers[0]!;
    const q = (x: Linear) => (isQuantized(x) ? x.quantized : null);
    expect([q(l.q)!.bits, q(l.q)!.block, q(l.q)!.zeroPoints !== null]).toEqual([8, 32, true]);
    expect([q(l.v)!.bits, q(l.v)!.block, q(l.v)!.zeroPoints]).toEqual([8, 16, null]);
    const q4 = loadModel(w.path, { quantize: quantizationFor('q4') });
    const l4 = q4.weights.layers[0]!;
    expect([q(l4.q)!.bits, q(l4.q)!.zeroPoints !== null]).toEqual([4, true]);
    expect(q(l4.v)!.bits).toBe(8); // Q6_K stays exact
    // Within half a step of ggml's values.
    const want = w.values.get('model.layers.0.mlp.gate_proj.weight')!;
    const got = linearValues(l4.gate);
    expect(maxDiff(got, want)).toBeLessThanOrEqual(((2 * maxAbs(want)) / 15) * 0.5 * 1.01);
    const engine = await testEngine(w.path, { numPages: 16 });
    const same = await testEngine(w.sameDir, { numPages: 16 });
    expect((await greedy(engine, TOKENS, 12)).tokens).toEqual((await greedy(same, TOKENS, 12)).tokens);
  });

  it.each(['Qwen2ForCausalLM', 'Qwen3ForCausalLM'])('%s (F32): the same logits as safetensors, bit for bit (biases, q/k norms, no row reordering)', async (architecture) => {
    const w = ggufFromDir(randomModelDir({ ...SPEC, architecture } as RandomModelSpec), `${architecture}-F32`, () => 'F32');
    const a = await logitsOf(await testEngine(w.path, { numPages: 16 }), TOKENS);
    const b = await logitsOf(await testEngine(w.sameDir, { numPages: 16 }), TOKENS);
    a.forEach((row, i) => expect(Buffer.from(row.buffer).equals(Buffer.from(b[i]!.buffer))).toBe(true));
  });
});
