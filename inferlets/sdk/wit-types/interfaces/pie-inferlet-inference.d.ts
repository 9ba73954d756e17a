/// <reference path="./pie-inferlet-context.d.ts" />
/// <reference path="./pie-inferlet-grammar.d.ts" />
/// <reference path="./pie-inferlet-types.d.ts" />
declare module 'pie:inferlet/inference@0.2.0' {
  /**
   * Computes the context's pending tokens in the server's next batch.
   * A sampled token is not appended: fill it in the next call.
   */
  export function forward(ctx: Context, args: ForwardArgs): Array<Output>;
  /**
   * Computes the context's pending tokens and scores them, as evaluation
   * harnesses score text: one entry per pending token, none for the
   * context's first token, which follows nothing (nor for the first pending
   * token after tokens computed under a custom attention mask); `top` (0 to 20)
   * alternatives each. Never served from the prefix cache, so the numbers
   * are the same whatever it holds.
   */
  export function promptLogprobs(ctx: Context, top: number): Array<Scored | undefined>;
  /**
   * Starts generating on the context (its pending tokens are the prompt) and
   * returns at once: start several and they decode in the same batches.
   * With a `constraint`, every token is drawn from what the matcher allows
   * (whatever the sampling settings; logprobs are over the allowed tokens),
   * the matcher advances with them, and the generation ends with `stop` when
   * the grammar is complete. One matcher serves one generation at a time.
   * The host checks the request after returning: a generation that could
   * not start (invalid arguments, a busy context or matcher, no room, a
   * limit) is returned all the same, its `next` returns none and its
   * `finish` the error. (Errors known without the host are returned here.)
   */
  export function generate(ctx: Context, args: GenerateArgs, constraint: Matcher | undefined): Generation;
  export type Error = import('pie:inferlet/types@0.2.0').Error;
  export type Sampling = import('pie:inferlet/types@0.2.0').Sampling;
  export type Runs = import('pie:inferlet/types@0.2.0').Runs;
  export type TokenLogprob = import('pie:inferlet/types@0.2.0').TokenLogprob;
  export type Context = import('pie:inferlet/context@0.2.0').Context;
  export type Matcher = import('pie:inferlet/grammar@0.2.0').Matcher;
  /**
   * ---- the step level: one forward pass, outputs chosen by the guest ----
   */
  export type OutputKind = OutputKindSample | OutputKindDistribution | OutputKindEntropy;
  /**
   * Sample a token (greedy when the temperature is 0).
   */
  export interface OutputKindSample {
    tag: 'sample',
    val: Sampling,
  }
  /**
   * The k most likely tokens with their probabilities (at temperature 1).
   */
  export interface OutputKindDistribution {
    tag: 'distribution',
    val: number,
  }
  /**
   * The entropy of the next-token distribution, in nats.
   */
  export interface OutputKindEntropy {
    tag: 'entropy',
  }
  export interface OutputRequest {
    /**
     * Which of the pending tokens, 0-based (none: the last).
     */
    row?: number,
    kind: OutputKind,
    /**
     * Tokens allowed at this row (sampling and distributions only).
     */
    logitMask?: Runs,
    /**
     * Top alternatives to return with a sampled token.
     */
    topLogprobs: number,
  }
  export interface ForwardArgs {
    /**
     * Tokens appended before the pass (may be empty if the context has pending tokens).
     */
    tokens: Uint32Array,
    /**
     * Their RoPE positions (default: after the last token's). Siblings of a
     * tree share a position; with `attention` they need not see each other.
     */
    positions?: Uint32Array,
    /**
     * Per pending token, the key positions it attends to (default: causal).
     */
    attention?: Array<Runs>,
    outputs: Array<OutputRequest>,
  }
  export interface Sampled {
    token: number,
    logprob: number,
    top: Array<TokenLogprob>,
  }
  export type Output = OutputToken | OutputDistribution | OutputEntropy;
  export interface OutputToken {
    tag: 'token',
    val: Sampled,
  }
  export interface OutputDistribution {
    tag: 'distribution',
    val: Array<TokenLogprob>,
  }
  export interface OutputEntropy {
    tag: 'entropy',
    val: number,
  }
  /**
   * A prompt token's score.
   */
  export interface Scored {
    token: number,
    /**
     * Its log-probability after the tokens before it.
     */
    logprob: number,
    /**
     * Its place among the vocabulary, most likely first (1: the greedy choice).
     */
    rank: number,
    /**
     * The most likely tokens in its place, most likely first.
     */
    top: Array<TokenLogprob>,
  }
  /**
   * A call's first event: `{{index}}` (a number), `{{id}}` and `{{name}}` (JSON strings) filled in;
   * its arguments' events: `{{index}}` and `{{delta}}` (a JSON string); `{{seq}}` (optional) as in
   * `template`. Each slot is filled at its first place. Meant with a tool-call matcher: the host reads
   * the text in the model's call format (without one, text from the format's opening on is held back
   * as a call).
   */
  export interface ToolCallTemplates {
    start: string,
    arguments: string,
  }
  /**
   * ---- the host-run loop: no boundary crossing per token ----
   * How a generation streams to the caller.
   */
  export interface StreamFormat {
    /**
     * The event name ("message" for plain SSE `data:` lines).
     */
    event: string,
    /**
     * The event's data: this text with the first `{{delta}}` replaced by the
     * chunk's text as a JSON string literal (quotes included) and the first
     * `{{seq}}` (if any) by `first-seq` plus the event's index in this stream,
     * so the inferlet shapes each chunk once and the host fills it per token;
     * none: the bare text.
     */
    template?: string,
    firstSeq: number,
    /**
     * With a tool-call matcher: the host splits the text into content (the template above) and calls
     * in the model's format (chat.parse-tool-calls), each streamed with these templates.
     */
    toolCalls?: ToolCallTemplates,
  }
  export interface GenerateArgs {
    sampling: Sampling,
    /**
     * Most tokens to generate (default: until the context is full).
     */
    maxTokens?: number,
    /**
     * Strings that end the generation; they are not part of the text.
     */
    stop: Array<string>,
    /**
     * Token ids that end the generation besides the model's end tokens
     * (its end-of-sequence ids, which the server supplies).
     */
    stopTokenIds?: Uint32Array,
    /**
     * The model's end tokens do not end the generation (the stop token ids
     * given still do).
     */
    ignoreEos: boolean,
    /**
     * Stop tokens are not drawn, and stop strings not looked for, until this
     * many tokens are out (default 0).
     */
    minTokens?: number,
    /**
     * Keep the stop string that ended the generation at the end of its text.
     */
    includeStopString: boolean,
    /**
     * Keep special tokens' text (beginning-of-sequence, chat markers) in the
     * text; by default it is dropped. Stop tokens never add text.
     */
    keepSpecialTokens: boolean,
    /**
     * Top alternatives to return with every token (0: no logprobs).
     */
    logprobs?: number,
    /**
     * Stream the text to the caller as it is produced (whole characters only).
     */
    stream?: StreamFormat,
  }
  export interface Chunk {
    text: string,
    tokens: Uint32Array,
    /**
     * Per token (when logprobs were asked for): its log-probability and the top alternatives.
     */
    logprobs: Array<Sampled>,
  }
  /**
   * # Variants
   * 
   * ## `"stop"`
   * 
   * ## `"length"`
   * 
   * ## `"cancelled"`
   */
  export type FinishReason = 'stop' | 'length' | 'cancelled';
  export interface GenerateResult {
    text: string,
    tokens: Uint32Array,
    finishReason: FinishReason,
    /**
     * The stop string that ended it.
     */
    stopString?: string,
    /**
     * The stop token that ended it.
     */
    stopToken?: number,
    promptTokens: number,
    completionTokens: number,
    /**
     * Prompt tokens served from the prefix cache.
     */
    cachedTokens: number,
    logprobs: Array<Sampled>,
    /**
     * Events streamed to the caller (the next `{{seq}}` is `first-seq` plus this).
     */
    streamed: number,
  }
  
  export class Generation implements Disposable {
    /**
     * This type does not have a public constructor.
     */
    private constructor();
    /**
    * The next chunk, waiting for it; none once the generation has ended.
    */
    next(): Chunk | undefined;
    /**
    * Waits for the end.
    */
    finish(): GenerateResult;
    cancel(): void;
    [Symbol.dispose](): void;
  }
}
