/**
 * Incremental detokenization: turns a stream of token ids into text deltas
 * that never end in a broken UTF-8 character.
 *
 * Each new token is decoded together with a few tokens before it (so that
 * tokenizers which change a token's text by its neighbours, such as the
 * leading-space rule of SentencePiece, decode as they would in full); the
 * delta is released only once it no longer ends in U+FFFD, i.e. once the
 * bytes of a character split across tokens have all arrived.
 */
import type { Tokenizer } from '../model/tokenizer.ts';

export class IncrementalDecoder {
  private readonly tokenizer: Tokenizer;
  private readonly tokens: number[];
  private prefixOffset: number;
  private readOffset: number;

  /** `context`: tokens that precede the stream (e.g. the prompt's last few), decoded but never emitted. */
  constructor(tokenizer: Tokenizer, context: readonly number[] = []) {
    this.tokenizer = tokenizer;
    this.tokens = context.slice(-6);
    this.prefixOffset = 0;
    this.readOffset = this.tokens.length;
  }

  /** Adds one token; returns the text it completes ('' while a character is still partial). */
  push(token: number): string {
    this.tokens.push(token);
    const prefix = this.tokenizer.decode(this.tokens.slice(this.prefixOffset, this.readOffset));
    const full = this.tokenizer.decode(this.tokens.slice(this.prefixOffset));
    if (full.length > prefix.length && !full.endsWith('\uFFFD')) {
      this.prefixOffset = this.readOffset;
      this.readOffset = this.tokens.length;
      // Keep the window short: decoding cost stays constant per token.
      if (this.prefixOffset > 64) {
        this.tokens.splice(0, this.prefixOffset);
        this.readOffset -= this.prefixOffset;
        this.prefixOffset = 0;
      }
      return full.slice(prefix.length);
    }
    return '';
  }

  /** Text still held back at the end of the stream (a character that never completed). */
  flush(): string {
    const prefix = this.tokenizer.decode(this.tokens.slice(this.prefixOffset, this.readOffset));
    const full = this.tokenizer.decode(this.tokens.slice(this.prefixOffset));
    this.prefixOffset = this.readOffset = this.tokens.length;
    return full.length > prefix.length ? full.slice(prefix.length) : '';
  }
}
