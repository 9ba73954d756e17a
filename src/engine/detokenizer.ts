/**
 * Incremental detokenization: turns a stream of token ids into text deltas
 * that never end in a broken UTF-8 character.
 *
 * Each new token is decoded together with a few tokens before it (so that
 * tokenizers which change a token's text by its neighbours, such as the
 * leading-space rule of SentencePiece, decode as they would in full); the
 * delta is released only once it no longer ends in U+FFFD, i.e. once the
 * bytes of a character split across tokens have all arrived.
 *
 * Fast path: most tokens decode to the same text wherever they stand in the
 * middle of a stream. That text is found once per token (decoded after two
 * different anchors; kept only if both agree and it is whole) and then
 * emitted directly, with no decode call, whenever nothing is held back and
 * the stream has started (the first token may lose a leading space).
 */
import type { Tokenizer } from '../model/tokenizer.ts';

const pieceCaches = new WeakMap<Tokenizer, { anchors: { ids: number[]; text: string }[]; texts: Map<number, string | null> }>();

/** The text `id` adds in the middle of a stream, or null when that depends on its neighbours. */
function pieceText(tokenizer: Tokenizer, id: number): string | null {
  let cache = pieceCaches.get(tokenizer);
  if (!cache) {
    const anchor = (text: string) => {
      const ids = tokenizer.encode(text, { addBos: false });
      return { ids, text: tokenizer.decode(ids) };
    };
    cache = { anchors: [anchor('a b'), anchor('x.')], texts: new Map() };
    pieceCaches.set(tokenizer, cache);
  }
  let text = cache.texts.get(id);
  if (text === undefined) {
    text = null;
    if (!tokenizer.specialIds.has(id)) {
      const pieces = cache.anchors.map((anchor) => {
        const full = tokenizer.decode([...anchor.ids, id]);
        return full.startsWith(anchor.text) ? full.slice(anchor.text.length) : null;
      });
      const [a, b] = pieces;
      if (a && a === b && !a.includes('\uFFFD')) text = a;
    }
    cache.texts.set(id, text);
  }
  return text;
}

export class IncrementalDecoder {
  private readonly tokenizer: Tokenizer;
  private readonly tokens: number[];
  private prefixOffset: number;
  private readOffset: number;
  private started: boolean;
  private readonly skipSpecial: boolean;

  /**
   * `context`: tokens that precede the stream (e.g. the prompt's last few), decoded but never emitted.
   * `skipSpecial` false keeps special tokens' text in the output.
   */
  constructor(tokenizer: Tokenizer, context: readonly number[] = [], skipSpecial = true) {
    this.tokenizer = tokenizer;
    this.skipSpecial = skipSpecial;
    this.tokens = context.slice(-6);
    this.prefixOffset = 0;
    this.readOffset = this.tokens.length;
    this.started = this.tokens.some((t) => !tokenizer.specialIds.has(t));
  }

  /** Adds one token; returns the text it completes ('' while a character is still partial). */
  push(token: number): string {
    if (this.started && this.readOffset === this.tokens.length) {
      const piece = pieceText(this.tokenizer, token);
      if (piece !== null) {
        this.tokens.push(token);
        this.advance();
        return piece;
      }
    }
    this.tokens.push(token);
    const prefix = this.decode(this.tokens.slice(this.prefixOffset, this.readOffset));
    const full = this.decode(this.tokens.slice(this.prefixOffset));
    if (full.length > prefix.length && !full.endsWith('\uFFFD')) {
      this.advance();
      this.started = true;
      return full.slice(prefix.length);
    }
    return '';
  }

  private decode(ids: number[]): string {
    return this.tokenizer.decode(ids, { skipSpecial: this.skipSpecial });
  }

  private advance(): void {
    this.prefixOffset = this.readOffset;
    this.readOffset = this.tokens.length;
    // Keep the window short: decoding cost stays constant per token.
    if (this.prefixOffset > 64) {
      this.tokens.splice(0, this.prefixOffset);
      this.readOffset -= this.prefixOffset;
      this.prefixOffset = 0;
    }
  }

  /** Text still held back at the end of the stream (a character that never completed). */
  flush(): string {
    const prefix = this.decode(this.tokens.slice(this.prefixOffset, this.readOffset));
    const full = this.decode(this.tokens.slice(this.prefixOffset));
    this.prefixOffset = this.readOffset = this.tokens.length;
    return full.length > prefix.length ? full.slice(prefix.length) : '';
  }
}
