/**
 * Writes Llama-style (SentencePiece BPE with byte fallback) `tokenizer.json`
 * and `tokenizer_config.json` documents from a list of pieces with scores.
 * Used by the llama2.c importer and by the random-model generator.
 */

export interface Piece {
  /** The piece with spaces written as U+2581 ("▁"), or `<0xNN>` for a byte. */
  text: string;
  score: number;
}

export const SPECIALS = ['<unk>', '<s>', '</s>'] as const;
export const BYTE_PIECE_OFFSET = 3;

export function bytePiece(b: number): string {
  return `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
}

/**
 * Builds the merge list: every way to split a merged piece into two pieces of
 * the vocabulary, ranked by the merged piece's score (higher score merges
 * first, ties by id), which is how SentencePiece BPE and llama2.c choose
 * merges. `mergeable(id)`: whether a piece can be a merge's result (by
 * default, every piece after the specials and the byte pieces).
 */
export function mergesFromScores(pieces: Piece[], mergeable: (id: number) => boolean = (id) => id >= BYTE_PIECE_OFFSET + 256): [string, string][] {
  const vocab = new Map<string, number>();
  pieces.forEach((p, i) => {
    if (!vocab.has(p.text)) vocab.set(p.text, i);
  });
  const ranked: { a: string; b: string; score: number; id: number }[] = [];
  pieces.forEach((p, id) => {
    if (!mergeable(id)) return;
    const chars = [...p.text];
    for (let i = 1; i < chars.length; i++) {
      const a = chars.slice(0, i).join('');
      const b = chars.slice(i).join('');
      if (vocab.has(a) && vocab.has(b)) ranked.push({ a, b, score: p.score, id });
    }
  });
  ranked.sort((x, y) => y.score - x.score || x.id - y.id);
  return ranked.map((m) => [m.a, m.b]);
}

/**
 * A vocabulary object: each piece to its first id. Without a prototype, so
 * that pieces such as "toString" or "__proto__" are pieces like any other.
 */
export function vocabOf(pieces: string[]): Record<string, number> {
  const vocab = Object.create(null) as Record<string, number>;
  pieces.forEach((p, i) => {
    if (!Object.hasOwn(vocab, p)) vocab[p] = i;
  });
  return vocab;
}

export interface AddedToken {
  id: number;
  content: string;
  special: boolean;
}

/**
 * A SentencePiece-style BPE tokenizer.json: a dummy-prefix "▁" and spaces as
 * "▁" (normalizer), byte fallback, and the matching decoder. `merges`: by
 * default ranked from the pieces' scores (mergesFromScores).
 */
export function sentencePieceTokenizerJson(
  pieces: Piece[],
  options: { added: AddedToken[]; unk: string | null; merges?: [string, string][]; postProcessor?: Record<string, unknown> | null; prependSpace?: boolean },
): Record<string, unknown> {
  const spaces = { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: options.added.map((t) => ({ id: t.id, content: t.content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: t.special })),
    normalizer: options.prependSpace === false ? spaces : { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '\u2581' }, spaces] },
    pre_tokenizer: null,
    post_processor: options.postProcessor ?? null,
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        // The dummy prefix's space comes off again.
        ...(options.prependSpace === false ? [] : [{ type: 'Strip', content: ' ', start: 1, stop: 0 }]),
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: options.unk,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab: vocabOf(pieces.map((p) => p.text)),
      merges: options.merges ?? mergesFromScores(pieces),
    },
  };
}

export function llamaTokenizerJson(pieces: Piece[]): Record<string, unknown> {
  return sentencePieceTokenizerJson(pieces, {
    added: SPECIALS.map((content, id) => ({ id, content, special: true })),
    unk: '<unk>',
    postProcessor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '<s>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<s>', type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
  });
}

export function llamaTokenizerConfig(maxLength: number): Record<string, unknown> {
  return {
    add_bos_token: true,
    add_eos_token: false,
    bos_token: '<s>',
    eos_token: '</s>',
    unk_token: '<unk>',
    pad_token: '<unk>',
    clean_up_tokenization_spaces: false,
    legacy: true,
    model_max_length: maxLength,
    tokenizer_class: 'LlamaTokenizer',
  };
}
