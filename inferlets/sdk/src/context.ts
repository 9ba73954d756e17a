/** A context: tokens and their KV state on the server. */
import * as chat from 'pie:inferlet/chat@0.2.0';
import * as abi from 'pie:inferlet/context@0.2.0';
import * as inference from 'pie:inferlet/inference@0.2.0';
import { call, PieError } from './errors.ts';
import { Generation } from './generation.ts';
import { Grammar, Matcher } from './grammar.ts';
import { toAbiMessages, toAbiTools, type ChatMessage, type ChatOptions, type ToolDefinition } from './chat.ts';
import type { Model } from './model.ts';
import { toSampling, type SamplingOptions } from './sampling.ts';

export interface GenerateOptions {
  /** Default: temperature 1, as in the OpenAI API. */
  sampling?: SamplingOptions;
  max_tokens?: number;
  /** Strings that end the generation (matched across tokens; not part of the text). */
  stop?: string | string[];
  /** Token ids that end it besides the model's end-of-sequence ids. */
  stop_token_ids?: number[];
  /** The model's end-of-sequence ids do not end it (stop_token_ids still do). */
  ignore_eos?: boolean;
  /** Stop tokens are not drawn, and stop strings not looked for, until this many tokens are out. */
  min_tokens?: number;
  /** Keep the stop string that ended the generation at the end of the text. */
  include_stop_string?: boolean;
  /** Keep special tokens' text in the output (dropped by default). */
  keep_special_tokens?: boolean;
  /** Return the log-probability of each token and this many alternatives (0 to 20). */
  logprobs?: number;
  /**
   * Stream the text to the caller while it is produced, without a round trip
   * through the inferlet per token: `true` sends events named "text", a string
   * names them, `{ event, template }` also shapes each event's data: the host
   * puts the chunk's text, as a JSON string literal, in place of `{{delta}}`.
   *
   * @example
   * ctx.generate({ stream: { event: 'message', template: '{"delta":{{delta}}}' } });
   */
  stream?: boolean | string | StreamFormat;
  /**
   * Constrain the output: every token is drawn from what the grammar allows,
   * at any temperature, and the generation ends (finish_reason "stop") when
   * the grammar is complete. A `Matcher` continues from its state and is
   * advanced by the generation.
   *
   * @example
   * const city = ctx.generate({ grammar: Grammar.json({ type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }) }).json();
   */
  grammar?: Grammar | Matcher;
  /**
   * Tool calls in the model's own format (see `Model.toolCallFormat`): with
   * `choice` "auto" (the default) the model writes text and any call it starts
   * is valid; "required" gives one or more calls and nothing else; `{ name }`
   * calls of that function. Calls name declared tools and carry arguments
   * valid against their schemas; the result has them in `tool_calls`, the
   * rest of the text in `content`. Not with `grammar`.
   *
   * @example
   * const ctx = model.newContext().fillChat(messages, { tools });
   * const { tool_calls } = ctx.generate({ tools: { tools, choice: 'required' }, max_tokens: 128 }).result();
   */
  tools?: ToolCallOptions;
}

/** A prompt token's score (Context.promptLogprobs). */
export interface PromptLogprob {
  token: number;
  logprob: number;
  /** Its place in the vocabulary by probability (1: the most likely). */
  rank: number;
  /** The most likely tokens in its place, most likely first. */
  top: Array<{ token: number; logprob: number }>;
}

export interface ToolCallOptions {
  tools: ToolDefinition[];
  /** "auto" (default), "required", or the one function to call. */
  choice?: 'auto' | 'required' | { name: string };
  /** Several calls in one turn (default true; models that write one call a turn write one). */
  parallel?: boolean;
}

export interface StreamFormat {
  /** Event name (default "text"; "message" makes plain SSE `data:` lines). */
  event?: string;
  /** Event data with `{{delta}}` where the chunk's text goes, as a JSON string literal, and optionally `{{seq}}`. */
  template?: string;
  /** What `{{seq}}` is in the first event (then one more per event; default 0). */
  first_seq?: number;
  /**
   * With tool calls (`tools`, or a matcher from `Model.toolCallMatcher`): the
   * host splits the text into content (`template`) and calls, each streamed
   * with these templates: `start` with `{{index}}`, `{{id}}` and `{{name}}`
   * (the call's first event), `arguments` with `{{index}}` and `{{delta}}`.
   */
  tool_calls?: { start: string; arguments: string };
}

function toStreamFormat(stream: GenerateOptions['stream']): inference.StreamFormat | undefined {
  if (!stream) return undefined;
  if (stream === true) return { event: 'text', firstSeq: 0 };
  if (typeof stream === 'string') return { event: stream, firstSeq: 0 };
  return { event: stream.event ?? 'text', template: stream.template, firstSeq: stream.first_seq ?? 0, ...(stream.tool_calls ? { toolCalls: stream.tool_calls } : {}) };
}

/** One output wanted from a forward step. */
export interface StepOutput {
  /** Which pending token (default: the last). */
  row?: number;
  /** Sample a token with these settings. */
  sample?: SamplingOptions;
  /** With `sample`: this many alternatives and their log-probabilities. */
  top_logprobs?: number;
  /** The k most likely next tokens. */
  distribution?: number;
  /** The entropy of the next-token distribution (nats). */
  entropy?: boolean;
  /** Allowed tokens, as runs (see `toRuns`). */
  mask?: Uint32Array;
}

export interface StepOptions {
  /** Tokens appended before the pass. */
  tokens?: ArrayLike<number>;
  /** Their RoPE positions (default: after the last token's); siblings of a tree share one. */
  positions?: ArrayLike<number>;
  /** Per pending token, the key positions it attends to, as runs (default causal). */
  attention?: Uint32Array[];
}

export type StepResult =
  | { kind: 'token'; token: number; logprob: number; top: { token: number; logprob: number }[] }
  | { kind: 'distribution'; tokens: { token: number; logprob: number }[] }
  | { kind: 'entropy'; entropy: number };

/**
 * Tokens and their KV cache. Filling only queues tokens; they are computed by
 * the next `generate` or forward step, in the server's shared batch.
 *
 * @example
 * const ctx = model.newContext();
 * ctx.fillChat([{ role: 'user', content: 'Tell me a story.' }]);
 * const story = ctx.generate({ max_tokens: 100, stream: true }).text();
 */
export class Context {
  readonly model: Model;
  /** @internal */
  readonly raw: abi.Context;
  /** Its length while only fills changed it since it was made (saves asking the host); undefined once unknown. */
  private known: number | undefined;

  private constructor(model: Model, raw: abi.Context, known?: number) {
    this.model = model;
    this.raw = raw;
    this.known = known;
  }

  /** @internal use model.newContext() */
  static create(model: Model): Context {
    return new Context(model, new abi.Context(model.raw), 0);
  }

  /** A context continuing a snapshot saved earlier (by this or another invocation of the tenant). */
  static open(model: Model, name: string): Context {
    return new Context(model, call(() => abi.Context.open(model.raw, name)));
  }

  static deleteSnapshot(model: Model, name: string): boolean {
    return abi.Context.deleteSnapshot(model.raw, name);
  }

  static listSnapshots(model: Model): string[] {
    return abi.Context.listSnapshots(model.raw);
  }

  get length(): number {
    return this.known ?? this.raw.length();
  }

  tokens(): number[] {
    return Array.from(this.raw.tokens());
  }

  /** Appends text (with the beginning-of-sequence token when the context is empty, unless `bos` says otherwise) or token ids. */
  fill(input: string | ArrayLike<number>, options: { bos?: boolean } = {}): this {
    const tokens = typeof input === 'string' ? this.model.encode(input, { bos: options.bos ?? this.length === 0 }) : input;
    const ids = Uint32Array.from(tokens as ArrayLike<number>);
    call(() => this.raw.fill(ids));
    if (this.known !== undefined) this.known += ids.length;
    return this;
  }

  /** Appends chat messages rendered with the model's template (exactly one BOS on an empty context). */
  fillChat(messages: ChatMessage[], options: ChatOptions = {}): this {
    const args = [this.model.raw, toAbiMessages(messages), toAbiTools(options.tools), options.add_generation_prompt ?? true] as const;
    if (this.length === 0) {
      const ids = call(() => chat.encode(...args));
      call(() => this.raw.fill(ids));
      this.known = ids.length;
    } else this.fill(call(() => chat.render(...args)), { bos: false });
    return this;
  }

  /** A copy that shares this context's KV pages; both can then grow apart. */
  fork(): Context {
    return new Context(this.model, call(() => this.raw.fork()), this.known);
  }

  /** Keeps the first `length` tokens. */
  truncate(length: number): void {
    call(() => this.raw.truncate(length));
    if (this.known !== undefined) this.known = Math.min(this.known, length);
  }

  /** Frees its KV pages now (otherwise at the end of the invocation). */
  release(): void {
    this.raw.release();
  }

  /** Keeps its KV state under a name beyond this invocation (per tenant). */
  save(name: string): void {
    call(() => this.raw.save(name));
  }

  /**
   * Starts the server's generate loop on this context and returns at once. A
   * generation the server refuses (a busy context, no room, a limit) throws
   * its error from `result()` and from iterating it.
   */
  generate(options: GenerateOptions = {}): Generation {
    this.known = undefined; // the host appends what it generates
    const stop = options.stop === undefined ? [] : typeof options.stop === 'string' ? [options.stop] : options.stop;
    const g = options.grammar;
    const tools = options.tools;
    if (g && tools) throw new PieError('invalid-argument', 'generate takes a grammar or tools, not both');
    // A grammar (or tools) gets a matcher of its own, released with the generation.
    const owned = tools ? this.model.toolCallMatcher(tools).raw : g instanceof Grammar ? call(() => g.open(this.model)) : undefined;
    const constraint = owned ?? (g instanceof Matcher ? g.raw : undefined);
    const start = () =>
      inference.generate(
        this.raw,
        {
          sampling: toSampling(options.sampling),
          maxTokens: options.max_tokens,
          stop,
          stopTokenIds: options.stop_token_ids ? Uint32Array.from(options.stop_token_ids) : undefined,
          ignoreEos: options.ignore_eos ?? false,
          minTokens: options.min_tokens,
          includeStopString: options.include_stop_string ?? false,
          keepSpecialTokens: options.keep_special_tokens ?? false,
          logprobs: options.logprobs,
          stream: toStreamFormat(options.stream),
        },
        constraint,
      );
    let raw: inference.Generation;
    try {
      raw = call(start);
    } catch (err) {
      owned?.[Symbol.dispose]();
      throw err;
    }
    return new Generation(raw, owned, tools ? (text) => this.model.parseToolCalls(text) : undefined);
  }

  /**
   * One forward pass over the pending tokens (and `tokens`), returning the
   * outputs asked for. A sampled token is not appended: fill it next.
   */
  forward(outputs: StepOutput[], options: StepOptions = {}): StepResult[] {
    this.known = undefined;
    const results = call(() =>
      inference.forward(this.raw, {
        tokens: Uint32Array.from(options.tokens ?? []),
        positions: options.positions ? Uint32Array.from(options.positions) : undefined,
        attention: options.attention,
        outputs: outputs.map((o) => ({
          row: o.row,
          kind: o.sample ? { tag: 'sample', val: toSampling(o.sample) } : o.distribution ? { tag: 'distribution', val: o.distribution } : { tag: 'entropy' },
          logitMask: o.mask,
          topLogprobs: o.top_logprobs ?? 0,
        })),
      }),
    );
    return results.map((r): StepResult =>
      r.tag === 'token' ? { kind: 'token', ...r.val } : r.tag === 'distribution' ? { kind: 'distribution', tokens: r.val } : { kind: 'entropy', entropy: r.val },
    );
  }

  /**
   * Computes the pending tokens and scores them, as evaluation harnesses
   * score text: per token, its log-probability after the tokens before it and
   * the `top` (0 to 20) most likely tokens in its place; null for the
   * context's first token, which follows nothing.
   *
   * @example
   * const ctx = model.newContext().fill('The cat sat on the mat');
   * const total = ctx.promptLogprobs().reduce((s, t) => s + (t?.logprob ?? 0), 0);
   */
  promptLogprobs(top = 0): Array<PromptLogprob | null> {
    return call(() => inference.promptLogprobs(this.raw, top)).map((s) => (s ? { token: s.token, logprob: s.logprob, rank: s.rank, top: s.top } : null));
  }

  /** Computes the pending tokens now (e.g. once, before forking, so the forks share the prompt's KV). */
  prefill(options: StepOptions = {}): void {
    this.forward([], options);
  }

  /** Samples the next token after the pending ones (greedy by default); does not append it. */
  sample(sampling: SamplingOptions = { temperature: 0 }, options: StepOptions & { mask?: Uint32Array; top_logprobs?: number } = {}) {
    const [r] = this.forward([{ sample: sampling, mask: options.mask, top_logprobs: options.top_logprobs }], options);
    if (r!.kind !== 'token') throw new Error('unexpected step output');
    return { token: r!.token, logprob: r!.logprob, top: r!.top };
  }

  /** The k most likely next tokens with their log-probabilities. */
  distribution(k: number, options: StepOptions & { mask?: Uint32Array } = {}) {
    const [r] = this.forward([{ distribution: k, mask: options.mask }], options);
    if (r!.kind !== 'distribution') throw new Error('unexpected step output');
    return r!.tokens;
  }
}
