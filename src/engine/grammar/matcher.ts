/**
 * A grammar matcher: where a generation stands in its grammar. It gives the
 * tokens allowed next as a bitset (bit t & 31 of word t >>> 5, as the sampler
 * and the driver take it) and advances over the tokens chosen.
 *
 * End tokens. A matcher is made with the model's end-of-sequence tokens
 * (special tokens, never text), which xgrammar allows exactly where the
 * grammar may end, and terminates on. A generation may end on other tokens
 * (a request's `stop_token_ids`, or none at all): `maskFor(endTokens)` moves
 * "may end here" onto those (none: the grammar ends only when nothing else may
 * follow), and `acceptEnd` terminates the matcher when one of them comes.
 *
 * Calls into the library that would abort it (a mask or a token after it has
 * terminated, a token outside the vocabulary, a rollback past its history) are
 * answered here instead: an abort on the engine thread's copy of the library
 * leaks its stack and eventually breaks it for everyone.
 */
import type { GrammarMatcher } from '@mlc-ai/web-xgrammar';
import type { TokenMask } from '../sampler.ts';
import type { Grammar } from './grammars.ts';

export class Matcher {
  readonly grammar: Grammar;
  /** The tokens it ends on (allowed only where the grammar may end). */
  readonly endTokenIds: readonly number[];
  /** Tokens accepted since the start (or the last reset), for forks and rollbacks. */
  private readonly accepted: number[] = [];
  private readonly m: GrammarMatcher;
  private disposed = false;

  /** @internal use Grammars.matcher */
  constructor(grammar: Grammar, m: GrammarMatcher, endTokenIds: readonly number[]) {
    this.grammar = grammar;
    this.m = m;
    this.endTokenIds = endTokenIds;
  }

  /** Tokens allowed next (its end tokens only where the grammar may end); none once terminated. */
  async mask(): Promise<TokenMask> {
    this.checkLive();
    const words = Math.ceil(this.grammar.owner.vocabSize / 32);
    if (this.m.isTerminated()) return new Uint32Array(words);
    const bits = await this.m.getNextTokenBitmask();
    return new Uint32Array(bits.buffer, bits.byteOffset, bits.length);
  }

  /**
   * The tokens allowed next for a generation that ends on `endTokenIds`:
   * those tokens exactly where the grammar may end (never as text, whatever
   * the grammar says of them), instead of the matcher's own end tokens; an
   * empty set when the grammar is complete and `endTokenIds` is empty. With
   * it, whether the grammar may end here (an empty mask where it may not is a
   * dead end).
   */
  async maskFor(endTokenIds: ReadonlySet<number>): Promise<{ mask: TokenMask; mayEnd: boolean }> {
    const mask = await this.mask();
    let mayEnd = this.m.isTerminated();
    for (const t of this.endTokenIds) {
      if (!has(mask, t)) continue;
      mayEnd = true;
      clear(mask, t);
    }
    for (const t of endTokenIds) if (t >>> 5 < mask.length) clear(mask, t);
    if (mayEnd) for (const t of endTokenIds) if (t >>> 5 < mask.length) mask[t >>> 5]! |= 1 << (t & 31);
    return { mask, mayEnd };
  }

  /** Advances over a token; false (and no change) if the grammar does not allow it. */
  accept(token: number): boolean {
    this.checkLive();
    if (this.m.isTerminated() || !Number.isInteger(token) || token < 0 || token >= this.grammar.owner.vocabSize) return false;
    const ok = this.m.acceptToken(token);
    if (ok) this.accepted.push(token);
    return ok;
  }

  /** Ends the grammar as if one of its end tokens came (the generation ended on one of its own); false where it may not end. */
  acceptEnd(): boolean {
    return this.isTerminated || this.endTokenIds.some((t) => this.accept(t));
  }

  /** Undoes the last `n` accepted tokens. */
  rollback(n: number): void {
    this.checkLive();
    if (!Number.isInteger(n) || n < 0 || n > this.accepted.length) throw new RangeError(`cannot roll back ${n} tokens: ${this.accepted.length} were accepted`);
    if (n === 0) return;
    const max = this.m.getMaxRollbackTokens();
    this.accepted.length -= n;
    if (max < 0 || n <= max) return this.m.rollBack(n);
    // Past the library's rollback window: replay from the start.
    this.m.reset();
    for (const t of this.accepted) this.m.acceptToken(t);
  }

  /** Whether it has accepted an end token (the grammar is complete). */
  get isTerminated(): boolean {
    this.checkLive();
    return this.m.isTerminated();
  }

  /** Back to the start of the grammar. */
  reset(): void {
    this.checkLive();
    this.m.reset();
    this.accepted.length = 0;
  }

  get numAccepted(): number {
    return this.accepted.length;
  }

  /** A new matcher on the same grammar that has accepted the same tokens. */
  async fork(): Promise<Matcher> {
    this.checkLive();
    const m = await this.grammar.owner.matcher(this.grammar, this.endTokenIds);
    for (const t of this.accepted) m.accept(t);
    return m;
  }

  /** Frees its memory in the grammar library; idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.m.dispose();
    this.grammar.release();
    this.grammar.owner.noteReleased();
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  private checkLive(): void {
    if (this.disposed) throw new Error('the grammar matcher was released');
  }
}

/** Disallows token `t`. */
export function clear(mask: TokenMask, t: number): void {
  mask[t >>> 5]! &= ~(1 << (t & 31));
}

function has(mask: TokenMask, t: number): boolean {
  return ((mask[t >>> 5]! >>> (t & 31)) & 1) === 1;
}

/** Whether a mask allows no token at all. */
export function isEmptyMask(mask: TokenMask): boolean {
  for (let i = 0; i < mask.length; i++) if (mask[i] !== 0) return false;
  return true;
}
