/**
 * A model's grammars: the tokenizer info xgrammar needs (built once), the
 * compiled grammars (a bounded LRU keyed by source), and matchers on them.
 *
 *   compile(source) ─► cached? ─► yes: the grammar
 *                       no ─► checker worker compiles it (refused: 400-able error,
 *                             too slow: refused) ─► compiled here ─► cached
 *
 * Only grammars the worker compiled without error are compiled on this
 * thread, so this thread's copy of the library never aborts.
 */
import type { CompiledGrammar, GrammarCompiler } from '@mlc-ai/web-xgrammar';
import type { Tokenizer } from '../../model/tokenizer.ts';
import { GrammarChecker } from './checker.ts';
import { Matcher } from './matcher.ts';
import { checkSource, compileSource, sourceKey, type GrammarSource } from './source.ts';
import { newCompiler, xgrammar, type GrammarVocabulary } from './xgrammar.ts';

/** A grammar the library cannot honour (the message says why); a client error. */
export class GrammarError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GrammarError';
  }
}

export interface GrammarsOptions {
  /** Compiled grammars kept (default 128). */
  cacheSize?: number;
  /** A grammar that takes longer to compile is refused (default 1000 ms). */
  compileTimeoutMs?: number;
  /** Shared by every model (default: one per process). */
  checker?: GrammarChecker;
}

export interface GrammarStats {
  compiled: number;
  cacheHits: number;
  refused: number;
  cached: number;
  /** Matchers alive (not yet released). */
  matchers: number;
}

/** A compiled grammar. Its memory is freed once it has left the cache and no matcher uses it. */
export class Grammar {
  readonly owner: Grammars;
  /** Milliseconds its compile took in the checker. */
  readonly compileMs: number;
  private readonly compiledGrammar: CompiledGrammar;
  private users = 0;
  private evicted = false;

  /** @internal */
  constructor(compiled: CompiledGrammar, owner: Grammars, compileMs: number) {
    this.compiledGrammar = compiled;
    this.owner = owner;
    this.compileMs = compileMs;
  }

  /** @internal the library's object, for a new matcher (which then holds it). */
  use(): CompiledGrammar {
    this.retain();
    return this.compiledGrammar;
  }

  /** Keeps it alive (past its eviction from the cache) until `release`. */
  retain(): void {
    if (this.evicted && this.users === 0) throw new Error('the grammar was released');
    this.users++;
  }

  release(): void {
    if (--this.users === 0 && this.evicted) this.compiledGrammar.dispose();
  }

  /** Matchers and generations holding it. */
  get numUsers(): number {
    return this.users;
  }

  /** @internal */
  evict(): void {
    this.evicted = true;
    if (this.users === 0) this.compiledGrammar.dispose();
  }
}

let sharedChecker: GrammarChecker | null = null;
let nextVocabKey = 1;

export class Grammars {
  readonly vocabSize: number;
  readonly stopTokenIds: readonly number[];
  private readonly vocab: GrammarVocabulary;
  private readonly vocabKey = `vocab-${nextVocabKey++}`;
  private readonly checker: GrammarChecker;
  private readonly cacheSize: number;
  private readonly timeoutMs: number;
  private readonly cache = new Map<string, Grammar>();
  private readonly inFlight = new Map<string, Promise<Grammar>>();
  private compiler: Promise<GrammarCompiler> | null = null;
  private readonly counts = { compiled: 0, cacheHits: 0, refused: 0, matchers: 0 };

  constructor(tokenizer: Tokenizer, vocabSize: number, stopTokenIds: readonly number[], options: GrammarsOptions = {}) {
    const v = tokenizer.grammarVocabulary(vocabSize);
    this.vocab = { pieces: v.pieces, type: v.type, prependSpace: v.prependSpace, stopTokenIds: [...stopTokenIds] };
    this.vocabSize = vocabSize;
    this.stopTokenIds = stopTokenIds;
    this.cacheSize = options.cacheSize ?? 128;
    this.timeoutMs = options.compileTimeoutMs ?? 1000;
    this.checker = options.checker ?? (sharedChecker ??= new GrammarChecker());
    this.checker.addVocabulary(this.vocabKey, this.vocab);
  }

  /** The compiled grammar of a source; throws GrammarError when it cannot be honoured. */
  async compile(source: GrammarSource): Promise<Grammar> {
    const problem = checkSource(source);
    if (problem) {
      this.counts.refused++;
      throw new GrammarError(problem);
    }
    const key = sourceKey(source);
    const hit = this.cache.get(key);
    if (hit) {
      this.counts.cacheHits++;
      this.cache.delete(key);
      this.cache.set(key, hit); // most recently used last
      return hit;
    }
    let p = this.inFlight.get(key);
    if (!p) {
      p = this.compileNew(key, source).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, p);
    }
    return p;
  }

  /**
   * A matcher at the start of `grammar` whose end tokens are `endTokenIds`
   * (default, or when empty: the model's end-of-sequence tokens; a generation
   * that ends on other tokens, or none, asks the matcher for `maskFor` its own).
   */
  async matcher(grammar: Grammar, endTokenIds: readonly number[] = this.stopTokenIds): Promise<Matcher> {
    const xg = await xgrammar();
    const ends = (endTokenIds.length > 0 ? endTokenIds : this.stopTokenIds).filter((t) => Number.isInteger(t) && t >= 0 && t < this.vocabSize);
    const compiled = grammar.use();
    try {
      // The library refuses (aborts on) an empty override: then the tokenizer info's own end tokens apply.
      const m = new Matcher(grammar, await xg.GrammarMatcher.createGrammarMatcher(compiled, ends.length > 0 ? ends : undefined, false), ends);
      this.counts.matchers++;
      return m;
    } catch (err) {
      grammar.release();
      throw err;
    }
  }

  /** Forgets this model's vocabulary in the shared checker (the engine closes). */
  close(): void {
    this.checker.removeVocabulary(this.vocabKey);
  }

  stats(): GrammarStats {
    return { ...this.counts, cached: this.cache.size };
  }

  /** @internal */
  noteReleased(): void {
    this.counts.matchers--;
  }

  private async compileNew(key: string, source: GrammarSource): Promise<Grammar> {
    const checked = await this.checker.check(this.vocabKey, source, this.timeoutMs);
    if (!checked.ok) {
      this.counts.refused++;
      throw new GrammarError(checked.message);
    }
    this.compiler ??= newCompiler(this.vocab);
    const compiled = await compileSource(await this.compiler, source);
    this.counts.compiled++;
    const grammar = new Grammar(compiled, this, checked.ms);
    this.cache.set(key, grammar);
    while (this.cache.size > this.cacheSize) {
      const [oldKey, old] = this.cache.entries().next().value!;
      this.cache.delete(oldKey);
      old.evict();
    }
    return grammar;
  }
}
