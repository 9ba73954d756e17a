/**
 * A host-run generate loop. After each forward step the engine hands it the
 * logits of its last token; it samples, appends the token to its context,
 * detokenizes, checks stop conditions and streams the text — all inside the
 * step, so a generation costs no round trip per token to whoever started it.
 */
import type { Context } from './context.ts';
import { IncrementalDecoder } from './detokenizer.ts';
import { Grammar } from './grammar/grammars.ts';
import { clear as clearToken, isEmptyMask, type Matcher } from './grammar/matcher.ts';
import { Sampler, TokenHistory, type SampleResult, type SamplingParams, type TokenMask, type TopLogprob } from './sampler.ts';
import type { SampledRow, Work } from './scheduler.ts';
import { StopMatcher } from './stop-matcher.ts';
import type { Tokenizer } from '../model/tokenizer.ts';

export type FinishReason = 'stop' | 'length' | 'cancelled' | 'error';

export interface GenerateOptions {
  sampling?: SamplingParams;
  /** Most tokens to generate (default: until the context is full). */
  maxTokens?: number;
  /** Token ids that end the generation (default: the model's EOS ids; given, they replace them). */
  stopTokenIds?: readonly number[];
  /** The model's EOS ids do not end it (benchmarks); stop token ids given still do. */
  ignoreEos?: boolean;
  /** Strings that end the generation; they are not part of the text (unless includeStopString). */
  stop?: readonly string[];
  /**
   * Stop tokens are not drawn, and stop strings not looked for, until this
   * many tokens are out (vLLM's `min_tokens`: the token after them may stop).
   * Default 0.
   */
  minTokens?: number;
  /** Keep the stop string (or the stop token's text) that ended the generation at the end of its text. */
  includeStopString?: boolean;
  /** Drop special tokens' text (the default, true); false keeps it in the output. Stop tokens never add text. */
  skipSpecialTokens?: boolean;
  /**
   * Constrains the output to a grammar: a compiled grammar (the generation
   * makes its own matcher), or a matcher the caller owns, which the generation
   * continues from and advances. Either way the generation's stop tokens are
   * what the grammar may end on; without any, it ends when the grammar is
   * complete (nothing else may follow).
   */
  grammar?: Grammar | Matcher;
  /** Cancels the generation. */
  signal?: AbortSignal;
  /** Receives each chunk as it is produced, inside the engine's step (then the generation is not iterable). */
  onChunk?: (chunk: GenerationChunk) => void;
}

export interface TokenLogprob {
  token: number;
  logprob: number;
  top?: TopLogprob[];
}

export interface GenerationChunk {
  /** Text completed by these tokens (may be '' while a character or stop string is pending). */
  text: string;
  tokens: number[];
  logprobs?: TokenLogprob[];
}

export interface GenerationResult {
  text: string;
  tokens: number[];
  finishReason: FinishReason;
  /** The stop string or stop token id that ended it, if any. */
  stopReason: string | number | null;
  promptTokens: number;
  completionTokens: number;
  /** Prompt tokens served from the prefix cache. */
  cachedTokens: number;
  logprobs?: TokenLogprob[];
  error?: Error;
}

export class Generation implements Work, AsyncIterable<GenerationChunk> {
  readonly ctx: Context;
  readonly numSample = 1;
  readonly window: number | null;
  admittedAt = -1;
  numCachedTokens = 0;
  /** When it was submitted, and when a step first ran it (performance.now(); 0: not yet): its queue and prefill times, for metrics. */
  queuedAt = 0;
  scheduledAt = 0;
  readonly needs: 'best' | 'logits' | 'head';
  readonly invTemperature: number;
  /** The head could not decide the last row: the engine recomputes it and returns its full distribution. */
  wantsFullRow = false;
  readonly result: Promise<GenerationResult>;
  finished = false;
  private readonly options: GenerateOptions;
  private readonly sampler: Sampler;
  /** Counts for the penalties; none when no penalty is set. */
  private readonly history: TokenHistory | undefined;
  private readonly decoder: IncrementalDecoder;
  private readonly stopMatcher: StopMatcher;
  private readonly stopIds: ReadonlySet<number>;
  private readonly maxTokens: number;
  private readonly promptTokens: number;
  private readonly generated: number[] = [];
  private readonly logprobs: TokenLogprob[] | undefined;
  private text = '';
  private resolve!: (r: GenerationResult) => void;
  private readonly queue: GenerationChunk[] = [];
  private wakeReader: (() => void) | null = null;
  private readonly onFinish: (g: Generation) => void;
  /** The grammar's matcher (made at the first step when the generation owns it). */
  private matcher: Matcher | null;
  private readonly ownsMatcher: boolean;
  /**
   * Whether its mask is applied by the driver (computed before the step, so
   * the step returns the best allowed token and a softmax over the allowed
   * tokens only) rather than on the host after the step (computed while the
   * forward pass runs, for rows whose full logits the host processes).
   */
  readonly maskInGraph: boolean;
  /** The next row's allowed tokens. */
  private nextMask: TokenMask | null = null;
  private maskError: Error | null = null;
  /** The grammar is complete and no end token may follow: nothing to sample. */
  grammarComplete = false;
  private readonly minTokens: number;
  private readonly vocabSize: number;

  constructor(
    ctx: Context,
    tokenizer: Tokenizer,
    vocabSize: number,
    defaultStopIds: readonly number[],
    maxTokens: number,
    window: number | null,
    options: GenerateOptions,
    onFinish: (g: Generation) => void,
  ) {
    this.ctx = ctx;
    this.options = options;
    this.window = window;
    this.onFinish = onFinish;
    this.sampler = new Sampler(options.sampling);
    if (this.sampler.usesHistory) {
      this.history = new TokenHistory();
      this.history.addPrompt(ctx.tokens);
    }
    this.decoder = new IncrementalDecoder(tokenizer, ctx.tokens, options.skipSpecialTokens ?? true);
    this.stopMatcher = new StopMatcher(options.stop ?? [], options.includeStopString ?? false);
    this.stopIds = new Set(options.stopTokenIds ?? (options.ignoreEos ? [] : defaultStopIds));
    this.vocabSize = vocabSize;
    // Holding back stop tokens only matters if there are any.
    this.minTokens = this.stopIds.size > 0 || (options.stop ?? []).length > 0 ? Math.min(options.minTokens ?? 0, maxTokens) : 0;
    this.maxTokens = maxTokens;
    this.promptTokens = ctx.length;
    this.logprobs = options.sampling?.logprobs !== undefined ? [] : undefined;
    const g = options.grammar;
    this.ownsMatcher = g instanceof Grammar;
    this.matcher = g === undefined || g instanceof Grammar ? null : g;
    // Held until the end, so that the cache cannot free it before the first step makes the matcher.
    if (g instanceof Grammar) g.retain();
    this.needs = this.sampler.isPlainGreedy ? 'best' : this.sampler.usesHead ? 'head' : 'logits';
    // Greedy keeps its fast path (the best allowed token comes from the graph), and a softmax must see
    // the mask (allowed tokens far below the best would round to probability 0): both mask in the graph.
    this.maskInGraph = (g !== undefined || this.minTokens > 0) && this.needs !== 'logits';
    this.invTemperature = this.sampler.invTemperature;
    this.result = new Promise((r) => (this.resolve = r));
  }

  /** Whether its next row is drawn under a mask: a grammar's, or one keeping stop tokens out until min_tokens. */
  get isConstrained(): boolean {
    return this.options.grammar !== undefined || this.holdsStopTokens;
  }

  /** Stop strings count from the token after min_tokens (as the stop tokens do). */
  private get matchesStopStrings(): boolean {
    return this.generated.length > this.minTokens;
  }

  /** Stop tokens may not come yet (min_tokens). */
  private get holdsStopTokens(): boolean {
    return this.generated.length < this.minTokens;
  }

  /** The mask `prepareMask` computed, for the driver (null if it failed: the row then runs unmasked and fails on delivery). */
  get preparedMask(): TokenMask | null {
    return this.nextMask;
  }

  /**
   * Computes the allowed tokens of the row this step samples: before the
   * step when the driver applies them, else while the forward pass runs.
   * Never rejects: a failure fails this generation when its row arrives.
   */
  async prepareMask(): Promise<void> {
    const g = this.options.grammar;
    if (this.finished) return;
    if (!g) {
      if (this.holdsStopTokens) this.nextMask = this.withoutStopTokens();
      return;
    }
    try {
      if (!this.matcher) {
        const own = g as Grammar;
        this.matcher = await own.owner.matcher(own);
        if (this.finished) return this.disposeMatcher();
      }
      // While stop tokens are held back (min_tokens), none is allowed: the grammar may end only where nothing else may follow.
      const holding = this.holdsStopTokens;
      const { mask, mayEnd } = await this.matcher.maskFor(holding ? new Set() : this.stopIds);
      if (holding) for (const t of this.stopIds) if (t >>> 5 < mask.length) clearToken(mask, t);
      this.nextMask = mask;
      if (isEmptyMask(mask)) {
        // Complete (it may end, and no end token is wanted), or a dead end: everything it allows next is a stop token.
        if (!mayEnd) throw new Error('the grammar cannot go on: every token it allows next is one of the stop tokens');
        this.grammarComplete = true;
      }
    } catch (err) {
      this.maskError = err as Error;
    }
  }

  /** Every token but the stop tokens. */
  private withoutStopTokens(): TokenMask {
    const mask = new Uint32Array(Math.ceil(this.vocabSize / 32)).fill(0xffffffff);
    for (const t of this.stopIds) if (t < this.vocabSize) clearToken(mask, t);
    return mask;
  }

  /** What the driver needs for this generation's next head row (see Sampler), and whether the row must come in full. */
  headInputs(vocab: number, draws: number): { adjustments: Map<number, number>; minP: number; uniforms: number[]; full: boolean } {
    return {
      adjustments: this.sampler.adjustments(vocab, this.history),
      minP: this.sampler.params.minP ?? 0,
      uniforms: this.sampler.nextUniforms(draws),
      full: this.wantsFullRow || this.sampler.keepsBeyondHead(vocab),
    };
  }

  /** How the last delivered row's token was drawn: by the sampling head, from the full distribution, or neither (greedy, logits, no token). */
  drawnFrom: 'head' | 'full' | null = null;

  /**
   * Called by the engine with the last token's row; returns whether generation
   * goes on, or 'again' when the head could not decide the token: the engine
   * then runs the row again and returns its full distribution.
   */
  deliver(row: SampledRow): boolean | 'again' {
    this.drawnFrom = null;
    if (this.finished) return false;
    let mask: TokenMask | undefined;
    if (this.isConstrained) {
      if (this.maskError || !this.nextMask) throw this.maskError ?? new Error('the token mask was not computed');
      mask = this.nextMask;
      if (this.grammarComplete) {
        // Nothing may follow and no end token is wanted: what is held back is released.
        this.emit(this.stopMatcher.push(this.decoder.flush(), this.matchesStopStrings) + this.stopMatcher.flush(), [], undefined);
        this.finish('stop', null);
        return false;
      }
    }
    // The driver has applied the mask and adjustments to head rows and to `best`.
    if (this.needs === 'head' && !row.head && !row.probs) throw new Error('the driver returned no sampling head for a sampled row');
    const s: SampleResult | null = row.probs
      ? this.sampler.sampleRow(row.probs)
      : row.head
        ? this.sampler.sampleHead(row.head)
        : row.logits
          ? this.sampler.sample(row.logits, this.history, mask)
          : { token: row.best, ...(this.logprobs ? { logprob: row.bestLogprob } : {}) };
    this.wantsFullRow = s === null;
    if (s === null) return 'again'; // the mask is computed again for the same grammar state
    this.drawnFrom = row.probs ? 'full' : row.head ? 'head' : null;
    this.nextMask = null;
    // A stop token only ever ends the grammar (the mask allows it only where the grammar may end).
    if (this.matcher && !(this.stopIds.has(s.token) ? this.matcher.acceptEnd() : this.matcher.accept(s.token))) {
      throw new Error(`the grammar did not accept token ${s.token} drawn from its own mask`);
    }
    this.ctx.push(s.token);
    this.generated.push(s.token);
    this.history?.addOutput(s.token);
    const lp = s.logprob !== undefined ? { token: s.token, logprob: s.logprob, ...(s.top ? { top: s.top } : {}) } : undefined;
    if (lp) this.logprobs!.push(lp);
    if (this.stopIds.has(s.token)) {
      // A stop token adds no text, unless asked (vLLM's include_stop_str_in_output; a special token's text stays out unless kept).
      const own = this.options.includeStopString ? this.decoder.push(s.token) : '';
      this.emit(this.stopMatcher.push(own + this.decoder.flush()) + this.stopMatcher.flush(), [s.token], lp);
      this.finish('stop', s.token);
      return false;
    }
    const delta = this.stopMatcher.push(this.decoder.push(s.token), this.matchesStopStrings);
    if (this.stopMatcher.stopped) {
      this.emit(delta, [s.token], lp);
      this.finish('stop', this.stopMatcher.matched);
      return false;
    }
    if (this.generated.length >= this.maxTokens) {
      this.emit(delta + this.stopMatcher.push(this.decoder.flush(), this.matchesStopStrings) + this.stopMatcher.flush(), [s.token], lp);
      this.finish('length', null);
      return false;
    }
    this.emit(delta, [s.token], lp);
    return true;
  }

  /** Ends the generation early (cancel, error, engine shutdown). */
  finish(reason: FinishReason, stopReason: string | number | null = null, error?: Error): void {
    if (this.finished) return;
    this.finished = true;
    this.disposeMatcher();
    if (this.ownsMatcher) (this.options.grammar as Grammar).release(); // retained since the constructor
    this.onFinish(this);
    this.resolve({
      text: this.text,
      tokens: [...this.generated],
      finishReason: reason,
      stopReason,
      promptTokens: this.promptTokens,
      completionTokens: this.generated.length,
      cachedTokens: this.numCachedTokens,
      ...(this.logprobs ? { logprobs: this.logprobs } : {}),
      ...(error ? { error } : {}),
    });
    this.wakeReader?.();
  }

  cancel(): void {
    this.finish('cancelled');
  }

  /** Text deltas as they are produced; consumed once. */
  async *[Symbol.asyncIterator](): AsyncIterator<GenerationChunk> {
    for (;;) {
      while (this.queue.length > 0) yield this.queue.shift()!;
      if (this.finished) return;
      await new Promise<void>((r) => (this.wakeReader = r));
      this.wakeReader = null;
    }
  }

  private disposeMatcher(): void {
    if (!this.ownsMatcher) return;
    this.matcher?.dispose();
    this.matcher = null;
  }

  private emit(text: string, tokens: number[], lp: TokenLogprob | undefined): void {
    this.text += text;
    const chunk = { text, tokens, ...(lp ? { logprobs: [lp] } : {}) };
    if (this.options.onChunk) return this.options.onChunk(chunk);
    this.queue.push(chunk);
    this.wakeReader?.();
  }
}
