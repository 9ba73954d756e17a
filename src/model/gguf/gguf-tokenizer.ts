/**
 * A GGUF file's tokenizer as a Hugging Face `tokenizer.json` and
 * `tokenizer_config.json`, from its metadata (`tokenizer.ggml.*`):
 *
 *   "llama"  SentencePiece-style BPE: pieces with scores (spaces as "▁",
 *            bytes as <0xNN> pieces for byte fallback); the merges are
 *            every split of a piece into two pieces, ranked by the merged
 *            piece's score, as SentencePiece merges
 *   "gpt2"   byte-level BPE: pieces and merges, split first by the
 *            pre-tokenizer `tokenizer.ggml.pre` names (Llama 3, Qwen2, GPT-2;
 *            GPT-2's when it names none)
 *
 * Token types (`tokenizer.ggml.token_type`): 1 normal, 2 unknown, 3 control,
 * 4 user-defined, 5 unused, 6 byte. Control tokens become special added
 * tokens; user-defined ones plain added tokens (matched whole in text).
 */
import { ModelLoadError } from '../errors.ts';
import type { TokenizerConfig } from '../tokenizer.ts';
import { mergesFromScores, sentencePieceTokenizerJson, vocabOf } from '../tokenizer-json.ts';
import type { GgufValue } from './gguf-file.ts';

const enum_ = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/** Pre-tokenizer regexes by `tokenizer.ggml.pre` (as llama.cpp names them), for byte-level BPE. */
const PRE_TOKENIZERS: Record<string, string | null> = {
  'llama-bpe': "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  'llama3': "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  qwen2: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  // GPT-2's own split, which the ByteLevel pre-tokenizer applies itself.
  gpt2: null,
};

/**
 * Control tokens that end a generation by their text, as llama.cpp ends on
 * them whatever ids the metadata names (a Qwen2.5 file names <|im_end|> but
 * also stops on <|endoftext|>; Llama 3.1 on <|eom_id|>).
 */
const END_OF_GENERATION = new Set(['<|eot_id|>', '<|eom_id|>', '<|end_of_text|>', '<|im_end|>', '<|endoftext|>', '<|end|>', '<end_of_turn>', '<|return|>', '<|call|>']);

export const SUPPORTED_PRE_TOKENIZERS = Object.keys(PRE_TOKENIZERS);

export interface GgufTokenizer {
  json: Record<string, unknown>;
  config: TokenizerConfig;
  bosTokenId: number | null;
  eosTokenIds: number[];
}

function strings(v: GgufValue | undefined, key: string, source: string): string[] {
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new ModelLoadError(`${source}: metadata ${key} is missing or not a list of strings`);
  return v as string[];
}

function numbers(v: GgufValue | undefined, n: number, fallback: number): number[] {
  if (!Array.isArray(v) || v.length !== n) return new Array(n).fill(fallback);
  return v.map(Number);
}

function id(meta: Map<string, GgufValue>, key: string, n: number, source: string): number | null {
  const v = meta.get(key);
  if (typeof v === 'bigint') throw new ModelLoadError(`${source}: metadata ${key} is ${v}, past any vocabulary`);
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < n ? v : null;
}

export function ggufTokenizer(meta: Map<string, GgufValue>, source: string): GgufTokenizer {
  const model = meta.get('tokenizer.ggml.model');
  const tokens = strings(meta.get('tokenizer.ggml.tokens'), 'tokenizer.ggml.tokens', source);
  const n = tokens.length;
  const types = numbers(meta.get('tokenizer.ggml.token_type'), n, enum_.NORMAL);
  const bos = id(meta, 'tokenizer.ggml.bos_token_id', n, source);
  const eos = id(meta, 'tokenizer.ggml.eos_token_id', n, source);
  const unk = id(meta, 'tokenizer.ggml.unknown_token_id', n, source);
  // End-of-turn tokens also end a generation (Llama 3's <|eot_id|>, chat models' <|im_end|>).
  const eot = id(meta, 'tokenizer.ggml.eot_token_id', n, source);
  const eom = id(meta, 'tokenizer.ggml.eom_token_id', n, source);
  const added = tokens
    .map((content, i) => ({ id: i, content, type: types[i]! }))
    .filter((t) => t.type === enum_.CONTROL || t.type === enum_.USER_DEFINED || (t.type === enum_.UNKNOWN && model === 'llama'))
    .map((t) => ({ id: t.id, content: t.content, special: t.type !== enum_.USER_DEFINED }));
  let json: Record<string, unknown>;
  if (model === 'llama') {
    const scores = numbers(meta.get('tokenizer.ggml.scores'), n, 0);
    const pieces = tokens.map((text, i) => ({ text, score: scores[i]! }));
    json = sentencePieceTokenizerJson(pieces, {
      added,
      unk: unk === null ? null : tokens[unk]!,
      merges: mergesFromScores(pieces, (i) => types[i] === enum_.NORMAL),
      // SentencePiece's dummy prefix, unless the file turns it off.
      prependSpace: meta.get('tokenizer.ggml.add_space_prefix') !== false,
    });
  } else if (model === 'gpt2') {
    const pre = String(meta.get('tokenizer.ggml.pre') ?? 'gpt2');
    if (!(pre in PRE_TOKENIZERS)) {
      throw new ModelLoadError(`${source}: pre-tokenizer "${pre}" (tokenizer.ggml.pre) is not supported; supported: ${SUPPORTED_PRE_TOKENIZERS.join(', ')}`);
    }
    const regex = PRE_TOKENIZERS[pre]!;
    const merges = strings(meta.get('tokenizer.ggml.merges'), 'tokenizer.ggml.merges', source).map((m) => {
      const at = m.indexOf(' ', 1);
      return [m.slice(0, at), m.slice(at + 1)];
    });
    json = {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: added.map((t) => ({ ...t, single_word: false, lstrip: false, rstrip: false, normalized: false })),
      // Qwen2's tokenizer normalizes to NFC before it splits.
      normalizer: pre === 'qwen2' ? { type: 'NFC' } : null,
      pre_tokenizer: regex
        ? { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false }, { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] }
        : { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      post_processor: null,
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, ignore_merges: pre === 'llama-bpe' || pre === 'llama3', vocab: vocabOf(tokens), merges },
    };
  } else {
    throw new ModelLoadError(`${source}: tokenizer model ${JSON.stringify(model ?? null)} (tokenizer.ggml.model) is not supported; supported: llama (SentencePiece-style), gpt2 (byte-level BPE)`);
  }
  // Without the key, BOS as llama.cpp adds it: SentencePiece vocabularies and Llama 3's.
  const addBos = meta.get('tokenizer.ggml.add_bos_token');
  const pre = String(meta.get('tokenizer.ggml.pre') ?? '');
  const template = meta.get('tokenizer.chat_template');
  const config: TokenizerConfig = {
    bos_token: bos === null ? null : tokens[bos]!,
    eos_token: eos === null ? null : tokens[eos]!,
    add_bos_token: typeof addBos === 'boolean' ? addBos : model === 'llama' || pre === 'llama-bpe' || pre === 'llama3',
    ...(typeof template === 'string' ? { chat_template: template } : {}),
  };
  const byText = tokens.flatMap((t, i) => (END_OF_GENERATION.has(t) ? [i] : []));
  const eosTokenIds = [...new Set([eos, eot, eom, ...byText].filter((x): x is number => x !== null))];
  return { json, config, bosTokenId: bos, eosTokenIds };
}
