/**
 * Shared by the built-in OpenAI inferlets: errors as OpenAI's JSON, sampling
 * options from request fields, logprobs with token text, stream templates.
 */
import type { components } from '../../src/gateway/openapi-types.ts';
import { contentText } from './response-items.ts';
import { emit, inferlet, PieError, setHeader, type ChatMessage, type Context, setResult, setStatus, type Chunk, type Generation, type GenerationResult, type Model, type PromptLogprob, type SamplingOptions, type TokenLogprob } from '@pie/inferlet';

/** An error answered as OpenAI's error JSON (before any stream event went out). */
export class HttpError extends Error {
  readonly status: number;
  readonly type: string;
  readonly param: string | null;
  readonly code: string | null;
  constructor(status: number, message: string, param: string | null = null, code: string | null = null, type = 'invalid_request_error') {
    super(message);
    this.status = status;
    this.param = param;
    this.code = code;
    this.type = type;
  }
}

let streaming = false;

/** Sends one SSE `data:` line (the first one commits the response to a stream). */
export function sse(data: string | object): void {
  streaming = true;
  emit('message', typeof data === 'string' ? data : JSON.stringify(data));
}

/** Sends a named SSE event. */
export function sseNamed(event: string, data: object): void {
  streaming = true;
  emit(event, JSON.stringify(data));
}

/** Marks the response as a stream whose events the host sends (templates). */
export function markStreaming(): void {
  streaming = true;
}

/**
 * The entry point of a built-in route: errors before the stream starts
 * become status + error JSON; after it, they fail the invocation (the gateway
 * ends the stream with an error event).
 */
export function route<I>(promptParam: string, main: (input: I) => unknown): () => void {
  return inferlet<I>((input) => {
    streaming = false; // the gateway reuses built-in instances: module state starts over each run
    try {
      return main(input);
    } catch (err) {
      if (streaming) throw err;
      const e = toHttpError(err, promptParam);
      if (!e) throw err;
      setStatus(e.status);
      if (e.status === 503) setHeader('retry-after', '1');
      setResult({ error: { message: e.message, type: e.type, param: e.param, code: e.code } });
      return undefined;
    }
  });
}

/** Expected failures of the server as client errors: none of them goes away by retrying the same request. */
function toHttpError(err: unknown, promptParam: string): HttpError | null {
  if (err instanceof HttpError) return err;
  if (err instanceof PieError) {
    if (err.code === 'invalid-argument') return new HttpError(400, err.message);
    if (err.code === 'context-length-exceeded') return new HttpError(400, err.message, promptParam, 'context_length_exceeded');
    if (err.code === 'limit-exceeded') return new HttpError(400, err.message, null, 'limit_exceeded');
    // Even an empty KV cache (kept snapshots given back) cannot hold the request.
    if (err.code === 'kv-cache-exhausted') return new HttpError(400, err.message, promptParam, 'context_length_exceeded');
    // No room now (the cache stayed full with other work): a transient lack of capacity, worth retrying.
    if (err.code === 'overloaded') return new HttpError(503, err.message, null, 'overloaded', 'server_error');
  }
  return null;
}

export interface SamplingFields {
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number;
  min_p?: number;
  repetition_penalty?: number;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  logit_bias?: Record<string, number> | null;
  seed?: number | null;
}

/** OpenAI's sampling fields for choice `index` (seeds differ per choice); a field left out or null takes the SDK's default (SAMPLING_DEFAULTS). */
export function samplingOf(body: SamplingFields, vocabSize: number, index = 0): SamplingOptions {
  const bias: Record<number, number> = {};
  for (const [k, v] of Object.entries(body.logit_bias ?? {})) {
    const id = Number(k);
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new HttpError(400, `logit_bias: ${JSON.stringify(k)} is not a token id of this model (0..${vocabSize - 1})`, 'logit_bias');
    bias[id] = v;
  }
  const given = <T>(v: T | null | undefined): T | undefined => v ?? undefined;
  return {
    temperature: given(body.temperature),
    top_p: given(body.top_p),
    top_k: body.top_k,
    min_p: body.min_p,
    repetition_penalty: body.repetition_penalty,
    presence_penalty: given(body.presence_penalty),
    frequency_penalty: given(body.frequency_penalty),
    logit_bias: bias,
    ...(body.seed != null ? { seed: (body.seed + index) >>> 0 } : {}),
  };
}

type RequestMessage = components['schemas']['ChatCompletionRequestMessage'];

/** Chat request messages as the SDK takes them (text parts joined by newlines). */
export function chatMessages(messages: RequestMessage[]): ChatMessage[] {
  return messages.map((m) => ({
    role: m.role,
    content: contentText(m.content),
    ...('name' in m && m.name ? { name: m.name } : {}),
    ...('tool_calls' in m && m.tool_calls ? { tool_calls: m.tool_calls } : {}),
    ...('tool_call_id' in m ? { tool_call_id: m.tool_call_id } : {}),
  }));
}

/** Tokens' logprobs as chat completions and Responses' output_text parts write them: text, bytes and `top` alternatives each. */
export function logprobsJson(model: Model, lps: TokenLogprob[], top: number) {
  const table = tokenTable(model, lps);
  const entry = (token: number, logprob: number) => ({ token: table.get(token)!.text, logprob, bytes: table.get(token)!.bytes });
  return lps.map((l) => ({ ...entry(l.token, l.logprob), top_logprobs: l.top.slice(0, top).map((t) => entry(t.token, t.logprob)) }));
}

/** A prompt token's score, or the token alone where it has none (a context's first). */
export type PromptScore = PromptLogprob | { token: number; logprob: null; top: null };

/** Computes the context's pending tokens and scores them (Context.promptLogprobs), each unscored one by its token id. */
export function promptScores(ctx: Context, top: number): PromptScore[] {
  const tokens = ctx.tokens();
  const scores = ctx.promptLogprobs(top);
  const from = tokens.length - scores.length;
  return scores.map((s, i) => s ?? { token: tokens[from + i]!, logprob: null, top: null });
}

/** vLLM's prompt_logprobs: per prompt token null (the first) or {token id: {logprob, rank, decoded_token}}, the token itself and its `top` alternatives. */
export function promptLogprobsJson(model: Model, scores: readonly PromptScore[], top: number) {
  const table = tokenTable(model, scores.map((s) => ({ token: s.token, top: s.top ?? [] })));
  return scores.map((s) => {
    if (s.logprob === null) return null;
    const out: Record<string, { logprob: number; rank: number; decoded_token: string }> = {};
    s.top!.slice(0, top).forEach((t, i) => (out[t.token] = { logprob: t.logprob, rank: i + 1, decoded_token: table.get(t.token)!.text }));
    out[s.token] = { logprob: s.logprob, rank: (s as PromptLogprob).rank, decoded_token: table.get(s.token)!.text };
    return out;
  });
}

/** The request fields of vLLM's generation extensions. */
export interface VllmStopFields {
  ignore_eos?: boolean | null;
  stop_token_ids?: number[] | null;
  min_tokens?: number | null;
  include_stop_str_in_output?: boolean | null;
  skip_special_tokens?: boolean | null;
}

/**
 * vLLM's stop extensions as generate options: `stop_token_ids` end the
 * generation besides the model's end tokens (the server's to know), which
 * `ignore_eos` takes away; `min_tokens`, `include_stop_str_in_output` and
 * `skip_special_tokens` as vLLM means them.
 */
export function vllmStopOptions(body: VllmStopFields, vocabSize: number, maxTokens: number | undefined) {
  if (body.min_tokens != null && maxTokens !== undefined && body.min_tokens > maxTokens) {
    throw new HttpError(400, `min_tokens (${body.min_tokens}) must be at most max_tokens (${maxTokens})`, 'min_tokens');
  }
  const extra = body.stop_token_ids ?? [];
  const bad = extra.find((t) => t >= vocabSize);
  if (bad !== undefined) throw new HttpError(400, `stop_token_ids: ${bad} is not a token id of this model (0..${vocabSize - 1})`, 'stop_token_ids');
  return {
    stop_token_ids: extra,
    ignore_eos: body.ignore_eos === true,
    ...(body.min_tokens ? { min_tokens: body.min_tokens } : {}),
    include_stop_string: body.include_stop_str_in_output === true,
    keep_special_tokens: body.skip_special_tokens === false,
  };
}

export function stopList(stop: string | string[] | null | undefined): string[] {
  const list = stop == null ? [] : typeof stop === 'string' ? [stop] : stop;
  return list.filter((s) => s !== '');
}

/** Runs a fill; a prompt longer than the model's context becomes OpenAI's context_length_exceeded. */
export function filling<T>(param: string, fill: () => T): T {
  try {
    return fill();
  } catch (err) {
    if (err instanceof PieError && err.code === 'context-length-exceeded') {
      throw new HttpError(400, `This model's maximum context length was exceeded (${err.message}). Please reduce the length of the ${param}.`, param, 'context_length_exceeded');
    }
    throw err;
  }
}

/** Refuses a prompt that leaves no room (or not the room asked for) in the model's context. */
export function checkContextLength(model: Model, promptTokens: number, maxTokens: number | undefined, param: string): void {
  const limit = model.info.contextLength;
  if (promptTokens + (maxTokens ?? 1) > limit) {
    throw new HttpError(
      400,
      `This model's maximum context length is ${limit} tokens. However, you requested ${promptTokens + (maxTokens ?? 0)} tokens ` +
        `(${promptTokens} in the ${param}, ${maxTokens ?? 0} in the completion). Please reduce the length of the ${param} or completion.`,
      param,
      'context_length_exceeded',
    );
  }
}

export function finishReason(r: GenerationResult): 'stop' | 'length' {
  return r.finish_reason === 'length' ? 'length' : 'stop';
}

/** A token's text for logprobs: its bytes as UTF-8, or `bytes:\xNN…` when they are part of a character (as OpenAI writes it). */
export function tokenText(bytes: Uint8Array): string {
  let encoded = '';
  for (const b of bytes) encoded += '%' + (b < 16 ? '0' : '') + b.toString(16);
  try {
    return decodeURIComponent(encoded);
  } catch {
    let s = 'bytes:';
    for (const b of bytes) s += '\\x' + (b < 16 ? '0' : '') + b.toString(16);
    return s;
  }
}

/** Token texts and bytes for every token and alternative in `lps`, in one call. */
export function tokenTable(model: Model, lps: ReadonlyArray<{ token: number; top: ReadonlyArray<{ token: number }> }>): Map<number, { text: string; bytes: number[] }> {
  const ids = new Set<number>();
  for (const l of lps) {
    ids.add(l.token);
    for (const t of l.top) ids.add(t.token);
  }
  const list = [...ids];
  const bytes = model.tokenBytes(list);
  return new Map(list.map((id, i) => [id, { text: tokenText(bytes[i]!), bytes: Array.from(bytes[i]!) }]));
}

/**
 * A stream template from a chunk object: `marker` (a string field's value)
 * becomes `{{delta}}`, so the host fills in each chunk's text.
 */
export function template(chunk: object, marker = '\u0000delta'): string {
  const json = JSON.stringify(chunk);
  const quoted = JSON.stringify(marker);
  if (!json.includes(quoted)) throw new Error('stream template: the marker is missing');
  return json.replace(quoted, '{{delta}}');
}

export const DELTA = '\u0000delta';
export const SEQ = 987654321;

/** Like `template`, with the number SEQ standing for `{{seq}}`. */
export function seqTemplate(chunk: object): string {
  return template(chunk).replace(String(SEQ), '{{seq}}');
}

/**
 * Pulls the chunks of several generations in turn (they decode in the same
 * batches, so each pull finds the next step's chunk), handing each one that
 * holds tokens to `each` with its generation's index.
 */
export function interleave(gens: Generation[], each: (index: number, chunk: Chunk) => void): void {
  const iterators = gens.map((g) => g[Symbol.iterator]());
  const live = new Set(iterators.keys());
  while (live.size > 0) {
    for (const i of [...live]) {
      const next = iterators[i]!.next();
      if (next.done) live.delete(i);
      else if (next.value.tokens.length > 0) each(i, next.value);
    }
  }
}
