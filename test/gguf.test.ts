/**
 * GGUF files (issue 16): files written here by test/gguf-writer.ts, in each
 * tensor type with ggml's block layouts, from the same weights as a
 * safetensors model. They must load with the values ggml's dequantization
 * gives (exactly where the kernels take the blocks as they are), give the
 * safetensors model's logits (exactly for float types), carry their own
 * tokenizer, special tokens and chat template so that the file alone serves,
 * and refuse what is not supported by name.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { afterAll, describe, expect, it } from 'vitest';
import { quantizationFor } from '../src/model/config.ts';
import { dequantizeRows as ggmlDequantize } from '../src/model/gguf/ggml-blocks.ts';
import { readGgufHeader } from '../src/model/gguf/gguf-file.ts';
import { importGguf } from '../src/model/gguf/import-gguf.ts';
import { quantizeModelDir } from '../src/model/quantize-dir.ts';
import { loadModel, loadModelText } from '../src/model/load.ts';
import { PRESETS, type RandomModelSpec } from '../src/model/random.ts';
import { readSafetensors, writeSafetensors, type Tensor } from '../src/model/safetensors.ts';
import { isQuantized, linearValues, type Linear } from '../src/model/weights.ts';
import { startGateway } from './gateway-helpers.ts';
import { ggufName, spmTokenizerMetadata, writeGguf, writeGgufFromDir, type GgufType, type MetaValue, type WriterTensor } from './gguf-writer.ts';
import { parseConfig } from '../src/config.ts';
import { servable } from '../src/cli/model-commands.ts';
import { ensureDefaultModel } from '../src/model/default-model.ts';
import { CHAT_TEMPLATES_DIR, greedy, logitsAt, haveChatTemplates, LLAMA_TOKENIZER_DIR, haveLlamaTokenizer, randomModelDir, runPie, SKIP_TOKENIZER, testEngine } from './helpers.ts';

const work = mkdtempSync(join(tmpdir(), 'pie-gguf-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Rows of 256 inputs everywhere, so that the k-quants (blocks of 256) fit every weight. */
const SPEC: RandomModelSpec = { ...PRESETS.tiny, hiddenSize: 256, intermediateSize: 512, numHeads: 4, numKvHeads: 2, vocabSize: 512 };

interface Written {
  path: string;
  /** What ggml's dequantization reads back, by Hugging Face name, in Hugging Face row order. */
  values: Map<string, Float32Array>;
  /** The same weights as a safetensors model directory. */
  sameDir: string;
}

/** A GGUF file of the model in `dir` (gguf-writer.ts), and the same weights as a safetensors directory. */
function ggufFromDir(dir: string, name: string, typeOf: (ggufName: string) => GgufType, extra: Record<string, MetaValue> = {}): Written {
  const path = join(work, `${name}.gguf`);
  const values = writeGgufFromDir(dir, path, name, typeOf, extra);
  const sameDir = join(work, `${name}-safetensors`);
  mkdirSync(sameDir, { recursive: true });
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) copyFileSync(join(dir, f), join(sameDir, f));
  const same = new Map<string, Tensor>();
  for (const [hf, t] of readSafetensors(join(dir, 'model.safetensors'))) same.set(hf, { data: values.get(hf)!, shape: t.shape });
  writeSafetensors(join(sameDir, 'model.safetensors'), same);
  return { path, values, sameDir };
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
  const exact: GgufType[] = ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q5_0', 'Q6_K'];
  it.each([...exact, 'Q5_1', 'Q4_K'] as GgufType[])('%s: loads with the values ggml reads back, and gives the logits of the same weights from safetensors', async (type) => {
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
        // As 8 bits with zero points: each block's offset within 1/32 (Q4_K) or 1/16 (Q5_1) of its step, a step
        // being at most 2·max|w| / 15 (or / 31); a block quantized anew is closer still.
        const bound = type === 'Q4_K' ? (2 * maxAbs(want)) / 15 / 32 : (2 * maxAbs(want)) / 31 / 16;
        expect(maxDiff(got, want), hf).toBeLessThanOrEqual(bound * 1.01);
      }
      const [K, N] = info.dims as [number, number];
      if (!hf.includes('q_proj') && !hf.includes('k_proj')) {
        const ggml = ggmlDequantize(info.type, readFileSync(w.path).subarray(info.offset, info.offset + info.bytes), N, K);
        expect(Buffer.from(ggml.buffer).equals(Buffer.from(want.buffer)), `${hf} by ggml's dequantization`).toBe(true);
      }
    }
    const fromGguf = await testEngine(w.path, { numPages: 16 });
    const fromSafetensors = await testEngine(w.sameDir, { numPages: 16 });
    const a = await logitsAt(fromGguf, TOKENS);
    const b = await logitsAt(fromSafetensors, TOKENS);
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

  it('a llama file with q/k/v biases: the biases reordered with their rows (F32, bit for bit)', async () => {
    // Qwen2's computation is Llama's with biases: written as a llama file, its q and k rows and biases are reordered.
    const w = ggufFromDir(randomModelDir({ ...SPEC, architecture: 'Qwen2ForCausalLM' } as RandomModelSpec), 'llama-with-biases', () => 'F32', { 'general.architecture': { str: 'llama' } });
    const model = loadModel(w.path);
    expect(model.config.architecture).toBe('LlamaForCausalLM');
    expect(model.weights.layers[0]!.qBias).not.toBeNull();
    const a = await logitsAt(await testEngine(w.path, { numPages: 16 }), TOKENS);
    const b = await logitsAt(await testEngine(w.sameDir, { numPages: 16 }), TOKENS);
    a.forEach((row, i) => expect(Buffer.from(row.buffer).equals(Buffer.from(b[i]!.buffer)), `position ${i}`).toBe(true));
  });

  it.each(['Qwen2ForCausalLM', 'Qwen3ForCausalLM'])('%s (F32): the same logits as safetensors, bit for bit (biases, q/k norms, no row reordering)', async (architecture) => {
    const w = ggufFromDir(randomModelDir({ ...SPEC, architecture } as RandomModelSpec), `${architecture}-F32`, () => 'F32');
    const a = await logitsAt(await testEngine(w.path, { numPages: 16 }), TOKENS);
    const b = await logitsAt(await testEngine(w.sameDir, { numPages: 16 }), TOKENS);
    a.forEach((row, i) => expect(Buffer.from(row.buffer).equals(Buffer.from(b[i]!.buffer))).toBe(true));
  });
});

/** Metadata for a GGUF file with no tensors: enough for its tokenizer and config (ModelText). */
function textOnlyMetadata(extra: Record<string, MetaValue>): Record<string, MetaValue> {
  return {
    'general.architecture': { str: 'llama' },
    'llama.context_length': { u32: 2048 },
    'llama.embedding_length': { u32: 64 },
    'llama.feed_forward_length': { u32: 128 },
    'llama.block_count': { u32: 1 },
    'llama.attention.head_count': { u32: 4 },
    'llama.attention.layer_norm_rms_epsilon': { f32: 1e-5 },
    ...extra,
  };
}

const TEXTS = [
  'Hello world',
  'Once upon a time, there was a little girl named Lily.',
  '  two leading spaces, trailing ones  ',
  'Tom said 你好 to 世界 and 東京 in 2024!',
  'emoji: 🦙👍🏽 and 🧑‍🚀 (a joined one)',
  'rare bytes: \u0001 ꙮ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢',
  'lines\nand\ttabs\n\n  end',
  '{"name": "Lily", "age": 7}',
  'with <s> and </s> in the text',
  // Pieces named like an object's own properties (a vocabulary that is a plain object loses them).
  'x.toString() and obj.valueOf() call the constructor; __proto__ too',
  // Composed and decomposed accents (NFC for Qwen2).
  'café and cafe\u0301',
];

describe.skipIf(!haveLlamaTokenizer)(`the tokenizer a GGUF file carries: SentencePiece-style ${SKIP_TOKENIZER}`, () => {
  it('encodes and decodes like the 32k Llama tokenizer.json it was built from (byte fallback, CJK, emoji, special tokens)', () => {
    const path = join(work, 'llama-tokenizer.gguf');
    writeGguf(path, textOnlyMetadata({ 'llama.vocab_size': { u32: 32000 }, ...spmTokenizerMetadata(LLAMA_TOKENIZER_DIR) }), []);
    const ours = loadModelText(path).tokenizer;
    const hf = new HfTokenizer(JSON.parse(readFileSync(join(LLAMA_TOKENIZER_DIR, 'tokenizer.json'), 'utf8')), JSON.parse(readFileSync(join(LLAMA_TOKENIZER_DIR, 'tokenizer_config.json'), 'utf8')));
    for (const text of TEXTS) {
      const want = hf.encode(text, { add_special_tokens: false }).ids;
      expect(ours.encode(text, { addBos: false }), text).toEqual(want);
      expect(ours.decode(want), text).toBe(hf.decode(want, { skip_special_tokens: true }));
    }
    expect(ours.encode('Hi')[0]).toBe(1); // add_bos_token
    expect([ours.bosTokenId, ours.eosTokenId]).toEqual([1, 2]);
  });

  it('without the dummy prefix where the file turns it off (tokenizer.ggml.add_space_prefix = false)', () => {
    const path = join(work, 'llama-tokenizer-no-prefix.gguf');
    writeGguf(path, textOnlyMetadata({ 'llama.vocab_size': { u32: 32000 }, ...spmTokenizerMetadata(LLAMA_TOKENIZER_DIR), 'tokenizer.ggml.add_space_prefix': { bool: false } }), []);
    const ours = loadModelText(path).tokenizer;
    const json = JSON.parse(readFileSync(join(LLAMA_TOKENIZER_DIR, 'tokenizer.json'), 'utf8'));
    json.normalizer = { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' };
    json.decoder.decoders = json.decoder.decoders.filter((d: { type: string }) => d.type !== 'Strip');
    const hf = new HfTokenizer(json, {});
    for (const text of TEXTS) {
      const want = hf.encode(text, { add_special_tokens: false }).ids;
      expect(ours.encode(text, { addBos: false }), text).toEqual(want);
      expect(ours.decode(want), text).toBe(hf.decode(want, { skip_special_tokens: true }));
    }
    expect(ours.encode('Hello', { addBos: false })).not.toEqual(loadModelText(join(work, 'llama-tokenizer.gguf')).tokenizer.encode('Hello', { addBos: false }));
  });
});

/** GPT-2's map from bytes to printable characters (byte-level BPE's alphabet). */
function byteAlphabet(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const out: string[] = new Array(256);
  bs.forEach((b, i) => (out[b] = String.fromCodePoint(cs[i]!)));
  return out;
}

/** A small byte-level BPE tokenizer.json, its merges learned here from a corpus, with chat special tokens. */
function byteLevelTokenizer(pre: 'qwen2' | 'llama-bpe' | 'gpt2'): Record<string, unknown> {
  const alphabet = byteAlphabet();
  const corpus = 'the quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs. 你好世界, 你好! emoji 🦙🦙 and numbers 12345 678'.repeat(3);
  let words = corpus.split(/(?=\s)/).map((w) => [...Buffer.from(w, 'utf8')].map((b) => alphabet[b]!));
  const vocab: Record<string, number> = {};
  alphabet.forEach((c, i) => (vocab[c] = i));
  const merges: [string, string][] = [];
  for (let m = 0; m < 60; m++) {
    const counts = new Map<string, number>();
    for (const w of words) for (let i = 0; i + 1 < w.length; i++) counts.set(`${w[i]}\u0000${w[i + 1]}`, (counts.get(`${w[i]}\u0000${w[i + 1]}`) ?? 0) + 1);
    const best = [...counts].sort((x, y) => y[1] - x[1])[0];
    if (!best) break;
    const [a, b] = best[0].split('\u0000') as [string, string];
    merges.push([a, b]);
    vocab[a + b] = Object.keys(vocab).length;
    words = words.map((w) => {
      const out: string[] = [];
      for (let i = 0; i < w.length; i++) {
        if (w[i] === a && w[i + 1] === b) out.push(a + b), i++;
        else out.push(w[i]!);
      }
      return out;
    });
  }
  const specials = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'];
  const added = specials.map((content) => ({ id: (vocab[content] = Object.keys(vocab).length), content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  const split = (regex: string) => ({ type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false }, { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] });
  const regexes = {
    qwen2: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    'llama-bpe': "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  };
  return {
    version: '1.0',
    added_tokens: added,
    normalizer: pre === 'qwen2' ? { type: 'NFC' } : null,
    pre_tokenizer: pre === 'gpt2' ? { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true } : split(regexes[pre]),
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, ignore_merges: pre === 'llama-bpe', vocab, merges },
  };
}

describe('the tokenizer a GGUF file carries: byte-level BPE', () => {
  it.each(['qwen2', 'llama-bpe', 'gpt2'] as const)('pre-tokenizer %s: encodes and decodes like the tokenizer.json it was built from', (pre) => {
    const tok = byteLevelTokenizer(pre);
    const model = tok.model as { vocab: Record<string, number>; merges: [string, string][] };
    const tokens: string[] = [];
    for (const [p, i] of Object.entries(model.vocab)) tokens[i] = p;
    const path = join(work, `bpe-${pre}.gguf`);
    const im = (s: string) => tokens.indexOf(s);
    writeGguf(
      path,
      textOnlyMetadata({
        'tokenizer.ggml.model': { str: 'gpt2' },
        'tokenizer.ggml.pre': { str: pre },
        'tokenizer.ggml.tokens': { strings: tokens },
        'tokenizer.ggml.token_type': { i32s: tokens.map((t) => (t.startsWith('<|') ? 3 : 1)) },
        'tokenizer.ggml.merges': { strings: model.merges.map(([a, b]) => `${a} ${b}`) },
        'tokenizer.ggml.bos_token_id': { u32: im('<|endoftext|>') },
        'tokenizer.ggml.eos_token_id': { u32: im('<|endoftext|>') },
        'tokenizer.ggml.eot_token_id': { u32: im('<|im_end|>') },
        'tokenizer.ggml.add_bos_token': { bool: false },
        'tokenizer.chat_template': { str: "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}" },
      }),
      [],
    );
    const text = loadModelText(path);
    const hf = new HfTokenizer(tok, {});
    for (const t of [...TEXTS, '<|im_start|>user\nhi<|im_end|>']) {
      const want = hf.encode(t, { add_special_tokens: false }).ids;
      expect(text.tokenizer.encode(t), t).toEqual(want);
      expect(text.tokenizer.decode(want), t).toBe(hf.decode(want, { skip_special_tokens: true }));
    }
    // Stop tokens: EOS and end of turn; the chat template from the file.
    expect(text.eosTokenIds).toEqual([im('<|endoftext|>'), im('<|im_end|>')]);
    expect(text.chatTemplate.isFallback).toBe(false);
    expect(text.chatTemplate.render([{ role: 'user', content: 'hi' }], { addGenerationPrompt: true })).toBe('<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n');
  });
});

describe('the special tokens a GGUF file carries', () => {
  const bpe = (more: (id: (t: string) => number) => Record<string, MetaValue>) => {
    const tok = byteLevelTokenizer('qwen2');
    const tokens: string[] = [];
    for (const [p, i] of Object.entries((tok.model as { vocab: Record<string, number> }).vocab)) tokens[i] = p;
    const id = (t: string) => tokens.indexOf(t);
    const extra = more(id);
    const path = join(work, `specials-${Math.random().toString(36).slice(2)}.gguf`);
    writeGguf(
      path,
      textOnlyMetadata({
        'tokenizer.ggml.model': { str: 'gpt2' },
        'tokenizer.ggml.tokens': { strings: tokens },
        'tokenizer.ggml.token_type': { i32s: tokens.map((t) => (t.startsWith('<|') ? 3 : 1)) },
        'tokenizer.ggml.merges': { strings: (tok.model as { merges: [string, string][] }).merges.map(([a, b]) => `${a} ${b}`) },
        ...extra,
      }),
      [],
    );
    return { text: loadModelText(path), id };
  };

  it("ends on the end-of-generation tokens llama.cpp ends on by their text (whatever their type), beside the ids the metadata names", () => {
    const { text, id } = bpe((id) => ({
      'tokenizer.ggml.pre': { str: 'qwen2' },
      'tokenizer.ggml.eos_token_id': { u32: id('<|im_end|>') },
      // <|endoftext|> typed as a plain token here: its text still ends a generation.
      'tokenizer.ggml.token_type': { i32s: [...Array(id('<|endoftext|>')).fill(1), 1, 3, 3] },
    }));
    expect(text.eosTokenIds.sort((a, b) => a - b)).toEqual([id('<|endoftext|>'), id('<|im_end|>')].sort((a, b) => a - b));
  });

  it('adds BOS as llama.cpp does when the file does not say: for Llama 3 (llama-bpe), not for Qwen2', () => {
    const llama3 = bpe((id) => ({ 'tokenizer.ggml.pre': { str: 'llama-bpe' }, 'tokenizer.ggml.bos_token_id': { u32: id('<|endoftext|>') } }));
    expect(llama3.text.tokenizer.encode('hi')[0]).toBe(llama3.id('<|endoftext|>'));
    const qwen2 = bpe((id) => ({ 'tokenizer.ggml.pre': { str: 'qwen2' }, 'tokenizer.ggml.bos_token_id': { u32: id('<|endoftext|>') } }));
    expect(qwen2.text.tokenizer.encode('hi')[0]).not.toBe(qwen2.id('<|endoftext|>'));
  });
});

describe('a GGUF file alone', () => {
  it('serves through the OpenAI endpoints: its name, its chat template, its stop token', async () => {
    const template = haveChatTemplates
      ? readFileSync(join(CHAT_TEMPLATES_DIR, 'hermes-tools.jinja'), 'utf8')
      : "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";
    const w = ggufFromDir(randomModelDir(SPEC), 'served-model', () => 'Q8_0', { 'tokenizer.chat_template': { str: template } });
    const engine = await testEngine(w.path, { numPages: 64 });
    expect(engine.model.name).toBe('served-model');
    expect(engine.model.chatTemplate.source).toBe(template);
    expect(engine.model.eosTokenIds).toEqual([2]); // </s>, from tokenizer.ggml.eos_token_id
    const server = await startGateway([engine]);
    try {
      const client = server.client();
      expect((await client.models.list()).data.map((m) => m.id)).toEqual(['served-model']);
      const r = await client.chat.completions.create({ model: 'served-model', messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 8, temperature: 0 });
      expect(r.choices[0]!.message.role).toBe('assistant');
      expect(r.usage!.completion_tokens).toBeGreaterThan(0);
      const rendered = engine.model.chatTemplate.render([{ role: 'user', content: 'Hello there' }], { addGenerationPrompt: true });
      expect(r.usage!.prompt_tokens).toBe(engine.model.tokenizer.encodeChat(rendered).length);
      const c = await client.completions.create({ model: 'served-model', prompt: 'Once upon', max_tokens: 5, temperature: 0 });
      expect(c.choices[0]!.text.length).toBeGreaterThan(0);
    } finally {
      await server.close();
    }
  });

  it('runs from the command line, imports into a directory that loads to the same model, and shows in model info', async () => {
    const w = ggufFromDir(randomModelDir(SPEC), 'cli-model', (n) => (/attn_v|ffn_down|output\.weight/.test(n) ? 'Q6_K' : 'Q4_K'));
    const gen = await runPie(['generate', '--model', w.path, '--max-tokens', '6']);
    expect(gen.code).toBe(0);
    expect(gen.stderr).toMatch(/6 tokens in .* on cli-model/);
    const info = await runPie(['model', 'info', w.path]);
    expect(info.stdout).toMatch(/can serve: GGUF LlamaForCausalLM, 2 layers, hidden 256, vocabulary 512, context 2048; tensors: (?:.*Q4_K.*Q6_K|.*Q6_K.*Q4_K)/);
    const out = join(work, 'imported');
    const imp = await runPie(['model', 'import-gguf', w.path, out]);
    expect(imp.stderr).toBe('');
    expect(imp.stdout).toMatch(/wrote .*imported: config\.json, generation_config\.json, model\.safetensors, tokenizer\.json, tokenizer_config\.json/);
    const a = loadModel(w.path);
    const b = loadModel(out);
    for (const [[name, x], [, y]] of linears(a.weights).map((p, i) => [p, linears(b.weights)[i]!] as const)) {
      expect(isQuantized(x) && isQuantized(y), name).toBe(true);
      expect(Buffer.from(linearValues(x).buffer).equals(Buffer.from(linearValues(y).buffer)), name).toBe(true);
    }
    expect(b.tokenizer.encode(TEXTS[3]!)).toEqual(a.tokenizer.encode(TEXTS[3]!));
    expect(b.eosTokenIds).toEqual(a.eosTokenIds);
    const e1 = await testEngine(w.path, { numPages: 16 });
    const e2 = await testEngine(out, { numPages: 16 });
    expect((await greedy(e2, TOKENS, 10)).tokens).toEqual((await greedy(e1, TOKENS, 10)).tokens);
  });
});

/** A GGUF file's metadata and tensors, to write again with changes. */
function metaOf(path: string): Record<string, MetaValue> {
  const file = readGgufHeader(path);
  return Object.fromEntries(
    [...file.metadata].map(([k, v]) => [
      k,
      typeof v === 'string' ? { str: v } : typeof v === 'boolean' ? { bool: v } : Array.isArray(v) ? (typeof v[0] === 'string' ? { strings: v as string[] } : k.endsWith('scores') ? { f32s: v as number[] } : { i32s: v as number[] }) : k.endsWith('epsilon') || k.endsWith('freq_base') ? { f32: v as number } : { u32: v as number },
    ]),
  ) as Record<string, MetaValue>;
}

function tensorsOf(path: string): WriterTensor[] {
  const bytes = readFileSync(path);
  return [...readGgufHeader(path).tensors.values()].map((t) => ({ name: t.name, dims: t.dims, type: t.type, data: bytes.subarray(t.offset, t.offset + t.bytes) }));
}

describe('GGUF files found by their contents, and odd settings', () => {
  it('a GGUF file without the .gguf name (an Ollama blob) loads; linear RoPE scaling with no factor is none; a missing .gguf model.path is not replaced by a random model', () => {
    const base = ggufFromDir(randomModelDir(SPEC), 'sniffed', () => 'Q8_0');
    const blob = join(work, 'sha256-0123abcd');
    copyFileSync(base.path, blob);
    expect(loadModelText(blob).name).toBe('sha256-0123abcd');
    const rope = (name: string, extra: Record<string, MetaValue>) => {
      const p = join(work, `${name}.gguf`);
      writeGguf(p, { ...metaOf(base.path), ...extra }, tensorsOf(base.path));
      return loadModelText(p).config.ropeScaling;
    };
    expect(rope('linear-no-factor', { 'llama.rope.scaling.type': { str: 'linear' } })).toBeNull();
    // As llama.cpp: a factor with no type is linear, and older files call it rope.scale_linear.
    expect(rope('factor-no-type', { 'llama.rope.scaling.factor': { f32: 4 } })).toEqual({ type: 'linear', factor: 4 });
    expect(rope('scale-linear', { 'llama.rope.scale_linear': { f32: 2 } })).toEqual({ type: 'linear', factor: 2 });
    const config = parseConfig(`[model]\npath = "${join(work, 'nowhere.gguf')}"\n`, 'test.toml', work);
    expect(() => ensureDefaultModel(config, () => {})).toThrow(/the configured model file .*nowhere\.gguf does not exist/);
    expect(existsSync(join(work, 'nowhere.gguf'))).toBe(false);
  });

  it('an output folder that is a file is refused before the model is read; a folder left by a killed import is cleaned up', () => {
    const base = ggufFromDir(randomModelDir(SPEC), 'outputs', () => 'Q8_0');
    const file = join(work, 'a-file.txt');
    writeFileSync(file, 'x');
    expect(() => importGguf(base.path, file)).toThrow(/a-file\.txt is a file: choose a new folder/);
    const out = join(work, 'imported-again');
    const stale = `${out}.partial-${hostname().replace(/[^A-Za-z0-9.-]/g, '_')}-999999999-0badc0de`;
    mkdirSync(stale);
    importGguf(base.path, out);
    expect(existsSync(stale)).toBe(false);
    expect(existsSync(join(out, 'model.safetensors'))).toBe(true);
  });
});

describe('GGUF refusals', () => {
  const tiny = () => ggufFromDir(randomModelDir(SPEC), 'base', () => 'Q8_0');

  it('names an unsupported tensor type, architecture, tokenizer model or pre-tokenizer', () => {
    const base = tiny();
    const file = readGgufHeader(base.path);
    const bytes = readFileSync(base.path);
    // The same file with one tensor's type changed to Q5_K (13), which this engine does not read.
    const info = file.tensors.get('blk.0.ffn_up.weight')!;
    const nameAt = bytes.indexOf(Buffer.from('blk.0.ffn_up.weight'));
    const typeAt = nameAt + 'blk.0.ffn_up.weight'.length + 4 + 8 * info.dims.length;
    expect(bytes.readUInt32LE(typeAt)).toBe(8);
    const q5 = Buffer.from(bytes);
    q5.writeUInt32LE(13, typeAt);
    writeFileSync(join(work, 'q5k.gguf'), q5);
    expect(() => loadModel(join(work, 'q5k.gguf'))).toThrow(/tensor blk\.0\.ffn_up\.weight has type Q5_K, which this engine does not read; supported: F32, F16, Q4_0, Q5_0, Q5_1, Q8_0, Q4_K, Q6_K, BF16/);
    const meta = (extra: Record<string, MetaValue>) => {
      const p = join(work, `meta-${Object.keys(extra).join('-')}.gguf`);
      writeGguf(p, textOnlyMetadata({ ...spmTokenizerMetadata(randomModelDir()), ...extra }), []);
      return p;
    };
    expect(() => loadModelText(meta({ 'general.architecture': { str: 'gemma2' } }))).toThrow(/architecture "gemma2" is not supported; supported: llama, qwen2, qwen3/);
    expect(() => loadModelText(meta({ 'tokenizer.ggml.model': { str: 'bert' } }))).toThrow(/tokenizer model "bert" \(tokenizer\.ggml\.model\) is not supported/);
    expect(() => loadModelText(meta({ 'tokenizer.ggml.model': { str: 'gpt2' }, 'tokenizer.ggml.pre': { str: 'deepseek-llm' }, 'tokenizer.ggml.merges': { strings: [] } }))).toThrow(/pre-tokenizer "deepseek-llm" \(tokenizer\.ggml\.pre\) is not supported; supported: llama-bpe, llama3, qwen2, gpt2/);
  });

  it('refuses what is not a whole GGUF file', () => {
    const base = tiny();
    const bytes = readFileSync(base.path);
    const write = (name: string, b: Buffer) => {
      const p = join(work, name);
      writeFileSync(p, b);
      return p;
    };
    expect(() => loadModel(write('magic.gguf', Buffer.concat([Buffer.from('GGML'), bytes.subarray(4)])))).toThrow(/not a GGUF file \(no "GGUF" magic\)/);
    const v1 = Buffer.from(bytes);
    v1.writeUInt32LE(1, 4);
    expect(() => loadModel(write('v1.gguf', v1))).toThrow(/GGUF version 1; this reader takes versions 2 and 3/);
    expect(() => loadModel(write('cut-data.gguf', bytes.subarray(0, bytes.length - 1000)))).toThrow(/runs past the end of the file \(truncated\?\)/);
    expect(() => loadModel(write('cut-header.gguf', bytes.subarray(0, 3000)))).toThrow(/claims 512 items, more than the file holds/);
    const inInfos = bytes.indexOf(Buffer.from('blk.0.attn_norm.weight')) + 10;
    expect(() => loadModel(write('cut-infos.gguf', bytes.subarray(0, inInfos)))).toThrow(/not a whole GGUF file \(its header runs past the end/);
    const missing = join(work, 'missing-tensor.gguf');
    writeGguf(missing, metaOf(base.path), tensorsOf(base.path).filter((t) => t.name !== 'blk.1.attn_k.weight'));
    expect(() => loadModel(missing)).toThrow(/missing tensor blk\.1\.attn_k\.weight/);
    // An array whose count is past the end of the file.
    const huge = Buffer.from(bytes);
    const tokensAt = huge.indexOf(Buffer.from('tokenizer.ggml.tokens')) + 'tokenizer.ggml.tokens'.length + 4 + 4;
    huge.writeBigUInt64LE(2n ** 40n, tokensAt);
    expect(() => loadModel(write('huge.gguf', huge))).toThrow(/metadata tokenizer\.ggml\.tokens claims 1099511627776 items, more than the file holds/);
    expect(() => importGguf(work, join(work, 'from-a-folder'))).toThrow(/is not a file \(a GGUF model is one file\)/);
    // A tensor the graph has no place for: an output-projection bias.
    const withBias = join(work, 'o-bias.gguf');
    writeGguf(withBias, metaOf(base.path), [...tensorsOf(base.path), { name: 'blk.0.attn_output.bias', dims: [256], type: 0, data: new Uint8Array(256 * 4) }]);
    expect(() => loadModel(withBias)).toThrow(/tensor blk\.0\.attn_output\.bias has no place in this engine's LlamaForCausalLM model/);
    expect(servable(withBias)).toMatchObject({ ok: false, why: expect.stringMatching(/attn_output\.bias has no place/) });
    // A context length past 2^53: a clear refusal.
    const big = join(work, 'big-context.gguf');
    writeGguf(big, { ...metaOf(base.path), 'llama.context_length': { u64: 2 ** 60 } }, tensorsOf(base.path));
    expect(() => loadModel(big)).toThrow(/metadata llama\.context_length is 1152921504606846976, beyond any model this engine serves/);
    expect(() => quantizeModelDir(base.path, join(work, 'quantized-gguf'), quantizationFor('q4'))).toThrow(/is a GGUF file: `pie model import-gguf FILE OUT_DIR \[--quantize q4\|q8\]` makes a directory of it/);
  });
});
