/**
 * The model's tokenizer: `tokenizer.json` through @huggingface/tokenizers, with
 * the special tokens and the incremental decoder the engine needs.
 */
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';

export interface TokenizerConfig {
  bos_token?: string | { content: string } | null;
  eos_token?: string | { content: string } | null;
  add_bos_token?: boolean;
  chat_template?: string | Array<{ name: string; template: string }>;
  [key: string]: unknown;
}

export class Tokenizer {
  readonly vocabSize: number;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  /** Special tokens that are never text (tool-call markers excepted: see `markerIds`). */
  readonly specialIds: ReadonlySet<number>;
  /**
   * Special tokens that mark tool calls (`[TOOL_CALLS]` in Mistral's
   * vocabularies, `<tool_call>` where a vocabulary makes it special): text to
   * grammars and in decoded output, so a call the model starts with its own
   * token is read as the call it is.
   */
  readonly markerIds: ReadonlySet<number>;
  private readonly hf: HfTokenizer;
  /** Whether the tokenizer's post-processor adds BOS by itself. */
  private readonly postProcessorAddsBos: boolean;
  private readonly addBos: boolean;
  /** Pieces written in GPT-2's byte alphabet (byte-level BPE) rather than SentencePiece's. */
  private readonly byteLevel: boolean;
  /** How a grammar engine should read the pieces (see `grammarVocabulary`). */
  private readonly vocabType: 'byte_fallback' | 'byte_level' | 'raw';
  private readonly prependsSpace: boolean;

  constructor(json: Record<string, unknown>, config: TokenizerConfig) {
    this.hf = new HfTokenizer(json, config);
    const decoder = JSON.stringify(json.decoder ?? null);
    this.byteLevel = decoder.includes('"ByteLevel"');
    this.vocabType = decoder.includes('"ByteFallback"') ? 'byte_fallback' : this.byteLevel ? 'byte_level' : 'raw';
    // SentencePiece's dummy prefix: a Prepend("▁") normalizer, or a Metaspace pre-tokenizer that prepends.
    const normalizer = JSON.stringify(json.normalizer ?? null);
    const metaspace = JSON.stringify(json.pre_tokenizer ?? null);
    this.prependsSpace =
      normalizer.includes('"type":"Prepend","prepend":"\u2581"') ||
      (/"type":"Metaspace"/.test(metaspace) && !/"prepend_scheme":"never"|"add_prefix_space":false/.test(metaspace));
    this.vocabSize = this.hf.get_vocab(true).size;
    this.bosToken = tokenText(config.bos_token);
    this.eosToken = tokenText(config.eos_token);
    this.bosTokenId = this.bosToken == null ? null : (this.hf.token_to_id(this.bosToken) ?? null);
    this.eosTokenId = this.eosToken == null ? null : (this.hf.token_to_id(this.eosToken) ?? null);
    const special = [...this.hf.get_added_tokens_decoder()].filter(([, t]) => t.special);
    this.markerIds = new Set(special.filter(([, t]) => TOOL_MARKERS.has(t.content)).map(([id]) => id));
    this.specialIds = new Set(special.map(([id]) => id).filter((id) => !this.markerIds.has(id)));
    const probe = this.hf.encode('a', { add_special_tokens: true }).ids;
    this.postProcessorAddsBos = this.bosTokenId != null && probe[0] === this.bosTokenId;
    this.addBos = config.add_bos_token ?? this.postProcessorAddsBos;
  }

  /** Encodes text; `addBos` prepends BOS when the model uses one (the default follows tokenizer_config). */
  encode(text: string, options: { addBos?: boolean } = {}): number[] {
    const ids = this.hf.encode(text, { add_special_tokens: false }).ids;
    const wantBos = options.addBos ?? this.addBos;
    return wantBos && this.bosTokenId != null ? [this.bosTokenId, ...ids] : ids;
  }

  /**
   * Encodes a rendered chat prompt. Templates that write the BOS token
   * themselves get no second one; others get BOS as plain text would.
   */
  encodeChat(rendered: string): number[] {
    const ids = this.hf.encode(rendered, { add_special_tokens: false }).ids;
    if (!this.addBos || this.bosTokenId == null || ids[0] === this.bosTokenId) return ids;
    return [this.bosTokenId, ...ids];
  }

  decode(ids: readonly number[], options: { skipSpecial?: boolean } = {}): string {
    if (ids.length === 0) return '';
    const skip = options.skipSpecial ?? true;
    // Tool-call markers stay: the other special tokens are dropped here rather than by the library.
    if (skip && this.markerIds.size > 0) return this.hf.decode(ids.filter((id) => !this.specialIds.has(id)), { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    return this.hf.decode(ids as number[], { skip_special_tokens: skip, clean_up_tokenization_spaces: false });
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  /**
   * The vocabulary as a grammar engine reads it: each id's piece as written
   * in tokenizer.json ('' for special tokens and for ids past the tokenizer's
   * pieces, so a grammar never allows them as text), how to decode a piece,
   * and whether encoding prepends a space.
   */
  grammarVocabulary(size: number): { pieces: string[]; type: 'byte_fallback' | 'byte_level' | 'raw'; prependSpace: boolean } {
    const pieces = new Array<string>(size);
    for (let id = 0; id < size; id++) pieces[id] = this.specialIds.has(id) ? '' : (this.hf.id_to_token(id) ?? '');
    return { pieces, type: this.vocabType, prependSpace: this.prependsSpace };
  }

  /**
   * The UTF-8 bytes a token stands for on its own (logprobs report these): a
   * byte-fallback piece `<0xE2>` is that byte, SentencePiece's `▁` a space,
   * byte-level pieces map back through GPT-2's byte alphabet.
   */
  /**
   * The most UTF-8 bytes one token stands for (special tokens' text included):
   * a text of n characters is at least n / this tokens, whatever it is.
   */
  get maxTokenBytes(): number {
    if (this.maxBytes === undefined) {
      let max = 1;
      for (let id = 0; id < this.vocabSize; id++) max = Math.max(max, this.tokenBytes(id).length);
      this.maxBytes = max;
    }
    return this.maxBytes;
  }
  private maxBytes: number | undefined;

  tokenBytes(id: number): Uint8Array {
    const piece = this.hf.id_to_token(id);
    if (piece === undefined) return new Uint8Array();
    const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
    if (byte) return Uint8Array.of(parseInt(byte[1]!, 16));
    if (this.byteLevel && !this.specialIds.has(id)) {
      const out: number[] = [];
      for (const ch of piece) out.push(BYTE_LEVEL_DECODE.get(ch) ?? 0x3f);
      return Uint8Array.from(out);
    }
    return UTF8.encode(piece.replaceAll('\u2581', ' '));
  }
}

const UTF8 = new TextEncoder();

/** Special tokens that open or close tool calls in the formats of model/tool-calls.ts. */
const TOOL_MARKERS = new Set(['[TOOL_CALLS]', '<tool_call>', '</tool_call>']);

/** GPT-2's bytes_to_unicode, reversed: printable bytes stand for themselves, the rest for 256 + n. */
const BYTE_LEVEL_DECODE: ReadonlyMap<string, number> = (() => {
  const map = new Map<string, number>();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    map.set(String.fromCodePoint(printable ? b : 256 + n++), b);
  }
  return map;
})();

function tokenText(t: TokenizerConfig['bos_token']): string | null {
  if (t == null) return null;
  return typeof t === 'string' ? t : t.content;
}
