/**
 * POST /v1/completions (legacy text completions): one or more prompts (text or
 * token ids), `n` choices each (forked after one prefill), `echo`, legacy
 * `logprobs`, streams filled by the host per token.
 */
import { Model, type Context, type GenerationResult, type TokenLogprob } from '@pie/inferlet';
import type { components } from '../../src/gateway/openapi-types.ts';
import { checkContextLength, DELTA, filling, finishReason, HttpError, interleave, markStreaming, route, samplingOf, sse, stopList, template, tokenTable } from './common.ts';
import type { OpenAIInput } from './protocol.ts';
import { grammarOf, openMatchers, type StructuredOutputs } from './structured.ts';

type Request = components['schemas']['CreateCompletionRequest'];
type Completion = components['schemas']['Completion'];
type Choice = Completion['choices'][number];

function prompts(prompt: Request['prompt']): Array<string | number[]> {
  if (typeof prompt === 'string') return [prompt];
  if (prompt.length === 0) throw new HttpError(400, 'prompt must not be empty', 'prompt');
  if (typeof prompt[0] === 'number') return [prompt as number[]];
  return prompt as Array<string | number[]>;
}

/** OpenAI's legacy logprobs object for generated tokens. */
function legacyLogprobs(model: Model, lps: TokenLogprob[], top: number, offset: number): NonNullable<Choice['logprobs']> {
  const table = tokenTable(model, lps);
  const tokens = lps.map((l) => table.get(l.token)!.text);
  const text_offset: number[] = [];
  let at = offset;
  for (const t of tokens) {
    text_offset.push(at);
    at += t.startsWith('bytes:') ? 0 : t.length; // part of a character: it counts where the character ends
  }
  return {
    tokens,
    token_logprobs: lps.map((l) => l.logprob),
    top_logprobs: lps.map((l) => Object.fromEntries(l.top.slice(0, top).map((t) => [table.get(t.token)!.text, t.logprob]))),
    text_offset,
  };
}

export const run = route<OpenAIInput<Request>>('prompt', (input) => {
  const body = input.body;
  const model = Model.load(input.model);
  const n = body.n ?? 1;
  const logprobs = body.logprobs ?? null;
  const maxTokens = body.max_tokens ?? 16;
  const echo = body.echo === true;
  if (echo && logprobs !== null) throw new HttpError(400, 'echo with logprobs (prompt logprobs) is not supported by this server', 'echo', 'unsupported_parameter');
  const list = prompts(body.prompt);
  // Token ids as given (a number past 2³² must not wrap into the vocabulary when it becomes a u32).
  const V = model.info.vocabSize;
  for (const p of list) {
    if (typeof p === 'string') continue;
    const bad = p.find((t) => !Number.isInteger(t) || t < 0 || t >= V);
    if (bad !== undefined) throw new HttpError(400, `prompt: ${bad} is not a token id of this model (0..${V - 1})`, 'prompt');
  }
  const base = { id: input.id, created: input.created, model: input.model };
  const stream = body.stream === true;
  const includeUsage = stream && body.stream_options?.include_usage === true;
  const chunk = (choices: Choice[]) => ({ ...base, object: 'text_completion', choices, ...(includeUsage ? { usage: null } : {}) });

  // Every prompt is filled and checked before anything is generated or streamed.
  const roots: Context[] = list.map((p) => {
    const ctx = model.newContext();
    filling('prompt', () => (typeof p === 'string' ? ctx.fill(p) : ctx.fill(p, { bos: false })));
    checkContextLength(model, ctx.length, maxTokens, 'prompt');
    return ctx;
  });
  const promptText = echo ? list.map((p) => (typeof p === 'string' ? p : model.decode(p))) : [];
  const promptTokens = roots.reduce((s, c) => s + c.length, 0);
  // Everything that can refuse the request runs before the first event goes out.
  const samplings = Array.from({ length: n }, (_, j) => samplingOf(body, model.info.vocabSize, j));
  const extension = body.structured_outputs as StructuredOutputs | null | undefined;
  const matchers = openMatchers(model, grammarOf(undefined, '', extension), list.length * n);
  const forked = roots.map((root) => {
    if (n > 1) root.prefill();
    return n > 1 ? Array.from({ length: n }, () => root.fork()) : [root];
  });
  const stop = stopList(body.stop);
  // The host fills streamed text in per token, except with logprobs: then each chunk passes through here.
  const templated = stream && logprobs === null;
  const runs = forked.flatMap((contexts, p) =>
    contexts.map((ctx, j) => {
      const index = p * n + j;
      if (stream && echo) sse(chunk([{ index, text: promptText[p]!, logprobs: null, finish_reason: null as never }]));
      const gen = ctx.generate({
        sampling: samplings[j],
        max_tokens: maxTokens,
        stop,
        ...(matchers[index] ? { grammar: matchers[index] } : {}),
        ...(logprobs !== null ? { logprobs } : {}),
        ...(templated ? { stream: { event: 'message', template: template(chunk([{ index, text: DELTA, logprobs: null, finish_reason: null as never }])) } } : {}),
      });
      if (templated) markStreaming(); // the host may stream from now on
      return { p, index, gen };
    }),
  );
  if (stream && logprobs !== null) {
    const offsets = runs.map(() => 0);
    interleave(
      runs.map((r) => r.gen),
      (i, c) => {
        const lp = legacyLogprobs(model, c.logprobs, logprobs, offsets[i]!);
        offsets[i] = offsets[i]! + c.text.length;
        sse(chunk([{ index: runs[i]!.index, text: c.text, logprobs: lp, finish_reason: null as never }]));
      },
    );
  }
  const results: Array<{ p: number; index: number; r: GenerationResult }> = runs.map(({ p, index, gen }) => ({ p, index, r: gen.result() }));

  const completionTokens = results.reduce((s, x) => s + x.r.usage.completion_tokens, 0);
  const usage = { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
  if (stream) {
    for (const { index, r } of results) sse(chunk([{ index, text: '', logprobs: null, finish_reason: finishReason(r) }]));
    if (includeUsage) sse({ ...base, object: 'text_completion', choices: [], usage });
    sse('[DONE]');
    return undefined;
  }
  const completion: Completion = {
    ...base,
    object: 'text_completion',
    choices: results.map(({ p, index, r }) => {
      const prefix = echo ? promptText[p]! : '';
      return {
        index,
        text: prefix + r.text,
        logprobs: logprobs !== null ? legacyLogprobs(model, r.logprobs, logprobs, prefix.length) : null,
        finish_reason: finishReason(r),
      };
    }),
    usage,
  };
  return completion;
});
