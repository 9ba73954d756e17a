/**
 * POST /v1/completions (legacy text completions): one or more prompts (text or
 * token ids), `n` choices each (forked after one prefill), `echo`, legacy
 * `logprobs`, streams filled by the host per token.
 */
import { Model, type Context, type GenerationResult, type TokenLogprob } from '@pie/inferlet';
import type { components } from '../../src/gateway/openapi-types.ts';
import { checkContextLength, DELTA, filling, finishReason, HttpError, interleave, markStreaming, promptLogprobsJson, promptScores, route, type PromptScore, samplingOf, sse, stopList, template, tokenTable, vllmStopOptions } from './common.ts';
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

type Legacy = NonNullable<Choice['logprobs']>;

/**
 * OpenAI's legacy logprobs object for tokens (generated, or the prompt's with
 * `echo`, whose first token has null for its log-probability and
 * alternatives). `text_offset` counts characters from `offset`: a token adds
 * the characters its bytes complete (a character split over byte tokens
 * counts at its last), a special token none unless its text is in the output
 * (`specialText`). `prompt`: the echoed prompt, whose tokens may spell one
 * leading space more than it has (SentencePiece's dummy prefix).
 */
function legacyLogprobs(
  model: Model,
  lps: Array<TokenLogprob | PromptScore>,
  top: number,
  offset: number,
  options: { prompt?: string; specialText?: boolean } = {},
): Legacy {
  const table = tokenTable(model, lps.map((l) => ({ token: l.token, top: l.top ?? [] })));
  const special = new Set(model.specialTokens().values());
  const counted = lps.map((l) => options.specialText === true || !special.has(l.token));
  const lengths = utf16Lengths(lps.map((l, i) => (counted[i] ? table.get(l.token)!.bytes : [])));
  const spelled = lengths.reduce((a, b) => a + b, 0);
  const firstText = lengths.findIndex((n) => n > 0);
  if (options.prompt !== undefined && firstText >= 0 && spelled === options.prompt.length + 1 && table.get(lps[firstText]!.token)!.text.startsWith(' ')) lengths[firstText]!--;
  const text_offset: number[] = [];
  let at = offset;
  for (const n of lengths) {
    text_offset.push(at);
    at += n;
  }
  return {
    tokens: lps.map((l) => table.get(l.token)!.text),
    token_logprobs: lps.map((l) => l.logprob),
    top_logprobs: lps.map((l) => (l.top ? Object.fromEntries(l.top.slice(0, top).map((t) => [table.get(t.token)!.text, t.logprob])) : null)),
    text_offset,
  };
}

/**
 * The length (in UTF-16 units, as JavaScript counts text) of the characters
 * each token's UTF-8 bytes complete: a character split over byte tokens
 * counts at its last byte; a broken sequence counts as one U+FFFD.
 */
function utf16Lengths(tokens: number[][]): number[] {
  let need = 0; // continuation bytes still to come
  let units = 0; // the length of the character they complete
  return tokens.map((bytes) => {
    let n = 0;
    for (const b of bytes) {
      if (need > 0 && (b & 0xc0) === 0x80) {
        if (--need === 0) n += units;
        continue;
      }
      if (need > 0) (n++, (need = 0)); // cut short: a replacement character
      if (b < 0x80) n++;
      else if ((b & 0xe0) === 0xc0) [need, units] = [1, 1];
      else if ((b & 0xf0) === 0xe0) [need, units] = [2, 1];
      else if ((b & 0xf8) === 0xf0) [need, units] = [3, 2];
      else n++; // a stray continuation byte
    }
    return n;
  });
}

/** Two legacy logprobs objects one after the other (an echoed prompt's, then the completion's). */
function concat(a: Legacy, b: Legacy): Legacy {
  return {
    tokens: [...a.tokens!, ...b.tokens!],
    token_logprobs: [...a.token_logprobs!, ...b.token_logprobs!],
    top_logprobs: [...a.top_logprobs!, ...b.top_logprobs!],
    text_offset: [...a.text_offset!, ...b.text_offset!],
  };
}

export const run = route<OpenAIInput<Request>>('prompt', (input) => {
  const body = input.body;
  const model = Model.load(input.model);
  const n = body.n ?? 1;
  const logprobs = body.logprobs ?? null;
  const maxTokens = body.max_tokens ?? 16;
  const echo = body.echo === true;
  // Prompt scores: with echo and logprobs (OpenAI's way, what lm-evaluation-harness asks for), or vLLM's prompt_logprobs.
  const echoScores = echo && logprobs !== null;
  const promptTop = body.prompt_logprobs ?? null;
  const scoring = echoScores || promptTop !== null;
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
  const stopOptions = vllmStopOptions(body, V, maxTokens);
  const promptTokens = roots.reduce((s, c) => s + c.length, 0);
  // Everything that can refuse the request runs before the first event goes out.
  const samplings = Array.from({ length: n }, (_, j) => samplingOf(body, model.info.vocabSize, j));
  const extension = body.structured_outputs as StructuredOutputs | null | undefined;
  const matchers = openMatchers(model, grammarOf(undefined, '', extension), list.length * n);
  // Scoring computes the prompt (before forking, so the forks share its KV); otherwise n > 1 computes it once to fork.
  const scores = roots.map((root) => {
    if (scoring) return promptScores(root, Math.max(echoScores ? logprobs! : 0, promptTop ?? 0));
    if (n > 1) root.prefill();
    return [];
  });
  const echoed = (p: number) => legacyLogprobs(model, scores[p]!, logprobs!, 0, { prompt: promptText[p]! });
  const specialText = body.skip_special_tokens === false;
  const promptLogprobs = (p: number) => (promptTop !== null ? { prompt_logprobs: promptLogprobsJson(model, scores[p]!, promptTop) } : {});
  const forked = roots.map((root) => (n > 1 ? Array.from({ length: n }, () => root.fork()) : [root]));
  const stop = stopList(body.stop);
  // The host fills streamed text in per token, except with logprobs: then each chunk passes through here.
  const templated = stream && logprobs === null;
  const runs = forked.flatMap((contexts, p) =>
    contexts.map((ctx, j) => {
      const index = p * n + j;
      if (stream && (echo || promptTop !== null)) {
        sse(chunk([{ index, text: echo ? promptText[p]! : '', logprobs: echoScores ? echoed(p) : null, finish_reason: null as never, ...promptLogprobs(p) }]));
      }
      const gen = ctx.generate({
        sampling: samplings[j],
        max_tokens: maxTokens,
        stop,
        ...stopOptions,
        ...(matchers[index] ? { grammar: matchers[index] } : {}),
        ...(logprobs !== null ? { logprobs } : {}),
        ...(templated ? { stream: { event: 'message', template: template(chunk([{ index, text: DELTA, logprobs: null, finish_reason: null as never }])) } } : {}),
      });
      return { p, index, gen };
    }),
  );
  if (templated) {
    // A generation the server could not start says so at its first chunk. Until one of them has produced one, nothing
    // has gone out and an error is still a status; after that, the host may have streamed, and it fails the stream.
    for (const { gen } of runs) if (!gen[Symbol.iterator]().next().done) markStreaming();
    markStreaming(); // the host streams from now on
  }
  if (stream && logprobs !== null) {
    const offsets = runs.map(() => 0);
    interleave(
      runs.map((r) => r.gen),
      (i, c) => {
        const lp = legacyLogprobs(model, c.logprobs, logprobs, (echo ? promptText[runs[i]!.p]!.length : 0) + offsets[i]!, { specialText });
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
      const generated = logprobs !== null ? legacyLogprobs(model, r.logprobs, logprobs, prefix.length, { specialText }) : null;
      return {
        index,
        text: prefix + r.text,
        logprobs: generated && echoScores ? concat(echoed(p), generated) : generated,
        finish_reason: finishReason(r),
        ...promptLogprobs(p),
      };
    }),
    usage,
  };
  return completion;
});
