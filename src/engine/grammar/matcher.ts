/**
 * A grammar matcher: where a generation stands in its grammar. It gives the
 * tokens allowed next as a bitset (bit t of word t >>> 5, as the sampler
 * takes it) and advances over the tokens chosen.
 */
import type { GrammarMatcher } from '@mlc-ai/web-xgrammar';
import type { TokenMask } from '../sampler.ts';
import type { Grammar } from './grammars.ts';

export class Matcher {
  readonly grammar: Grammar;
  /** Tokens accepted since the start (or the last reset), for forks. */
  private readonly accepted: number[] = [];
  private readonly m: GrammarMatcher;
  private readonly stopTokenIds: readonly number[];
  private disposed = false;

  /** @internal use Grammars.matcher */
  constructor(grammar: Grammar, m: GrammarMatcher, stopTokenIds: readonly number[]) {
    this.grammar = grammar;
    this.m = m;
    this.stopTokenIds = stopTokenIds;
  }

  /** Tokens allowed next (end-of-sequence tokens only where the grammar may end). */
  async mask(): Promise<TokenMask> {
    this.checkLive();
    const t0 = performance.now();
    const bits = await this.m.getNextTokenBitmask();
    this.grammar.owner.noteMask(performance.now() - t0);
    return new Uint32Array(bits.buffer, bits.byteOffset, bits.length);
  }

  /** Advances over a token; false (and no change) if the grammar does not allow it. */
  accept(token: number): boolean {
    this.checkLive();
    if (this.m.isTerminated()) return false;
    const ok = this.m.acceptToken(token);
    if (ok) this.accepted.push(token);
    return ok;
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

  /** Whether the grammar is complete and an end token was accepted (or, without end tokens, whether it is complete). */
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
    const m = await this.grammar.owner.matcher(this.grammar, this.stopTokenIds);
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
