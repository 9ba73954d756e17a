/**
 * POST /v1/chat/completions. The prompt is rendered with the model's chat
 * template and filled once; `n` choices fork it after one prefill and decode
 * in the same batches. Streams are shaped here once per choice and filled by
 * the host per token (no round trip through this inferlet per token), except
 * with logprobs, where the chunks pass through here to get token texts, and
 * with tools, where they pass through here to be split into content and call
 * deltas (tools.ts).
 */
import { Model, type Context, type Generation, type GenerationResult, type TokenLogprob } from '@pie/inferlet';
import type { components } from '../../src/gateway/openapi-types.ts';
import { chatMessages, checkContextLength, DELTA, logprobsJson, filling, finishReason, HttpError, interleave, promptLogprobsJson, promptScores, route, samplingOf, sse, stopList, template, vllmStopOptions } from './common.ts';
import type { OpenAIInput } from './protocol.ts';
import { grammarOf, openMatchers, type ResponseFormat, type StructuredOutputs } from './structured.ts';
import { callDeltas, callTemplates, checkToolMessages, openToolMatchers, toolCallsJson, toolsOf } from './tools.ts';

type Request = components['schemas']['CreateChatCompletionRequest'];
type ChatCompletion = components['schemas']['ChatCompletion'];
type Chunk = components['schemas']['ChatCompletionChunk'];

export const run = route<OpenAIInput<Request>>('messages', (input) => {
  const body = input.body;
  const model = Model.load(input.model);
  const n = body.n ?? 1;
  const wantLogprobs = body.logprobs === true;
  const topLogprobs = body.top_logprobs ?? 0;
  if (body.top_logprobs != null && !wantLogprobs) throw new HttpError(400, 'top_logprobs requires logprobs to be true', 'top_logprobs');
  const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? undefined;

  const tools = toolsOf(body, (i) => `tools[${i}].function.name`);
  const messages = chatMessages(body.messages);
  checkToolMessages(messages, [], (i) => `messages[${i}].tool_call_id`);
  const ctx = filling('messages', () => model.newContext().fillChat(messages, { tools: tools?.tools ?? [] }));
  const promptTokens = ctx.length;
  checkContextLength(model, promptTokens, maxTokens, 'messages');

  const base = { id: input.id, created: input.created, model: input.model };
  const stream = body.stream === true;
  const includeUsage = stream && body.stream_options?.include_usage === true;
  const chunk = (choices: Chunk['choices']): Chunk => ({ ...base, object: 'chat.completion.chunk', choices, ...(includeUsage ? { usage: null } : {}) });
  // Everything that can refuse the request runs before the first event goes out.
  const samplings = Array.from({ length: n }, (_, i) => samplingOf(body, model.info.vocabSize, i));
  const extension = body.structured_outputs as StructuredOutputs | null | undefined;
  const format = grammarOf(body.response_format as ResponseFormat | undefined, 'response_format', extension);
  const calling = tools && tools.choice !== 'none' ? { tools: tools.tools, choice: tools.choice, parallel: tools.parallel } : undefined;
  if (format && calling) throw new HttpError(400, `${format.param} cannot constrain the output while tools may be called: set tool_choice to "none", or leave ${format.param} out`, format.param);
  const matchers = calling ? openToolMatchers(model, calling, n) : openMatchers(model, format, n);
  const stopOptions = vllmStopOptions(body, model.info.vocabSize, maxTokens);
  // vLLM's prompt_logprobs score the prompt as they compute it; otherwise n > 1 computes it once. Each choice forks it.
  const promptTop = body.prompt_logprobs ?? null;
  const prompt_logprobs = promptTop !== null ? promptLogprobsJson(model, promptScores(ctx, promptTop), promptTop) : undefined;
  if (promptTop === null && n > 1) ctx.prefill();
  const contexts: Context[] = n > 1 ? Array.from({ length: n }, () => ctx.fork()) : [ctx];
  if (stream) {
    for (let i = 0; i < n; i++) {
      const first = chunk([{ index: i, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }]);
      sse(i === 0 && prompt_logprobs ? { ...first, prompt_logprobs } : first);
    }
  }
  const fast = stream && !wantLogprobs;
  const stop = stopList(body.stop);
  const gens: Generation[] = contexts.map((c, i) =>
    c.generate({
      sampling: samplings[i],
      max_tokens: maxTokens,
      stop,
      ...stopOptions,
      ...(matchers[i] ? { grammar: matchers[i] } : {}),
      ...(wantLogprobs ? { logprobs: topLogprobs } : {}),
      ...(fast
        ? {
            stream: {
              event: 'message',
              template: template(chunk([{ index: i, delta: { content: DELTA }, logprobs: null, finish_reason: null }])),
              // With tools the host splits the text into content and calls (tools.ts for the shapes).
              ...(calling ? { tool_calls: callTemplates((delta) => chunk([{ index: i, delta, logprobs: null, finish_reason: null }])) } : {}),
            },
          }
        : {}),
    }),
  );
  // With logprobs the chunks pass through here: each token's text and alternatives go with it
  // (with tools, split into content and call deltas here too).
  if (stream && wantLogprobs) {
    const split = contexts.map(() => callDeltas(model));
    interleave(gens, (i, c) => {
      const delta = calling ? split[i]!.push(c.text) : { content: c.text };
      sse(chunk([{ index: i, delta: delta ?? {}, logprobs: { content: logprobsJson(model, c.logprobs, topLogprobs), refusal: null }, finish_reason: null }]));
    });
    if (calling) split.forEach((sp, i) => {
      const delta = sp.end();
      if (delta) sse(chunk([{ index: i, delta, logprobs: null, finish_reason: null }]));
    });
  }
  const results: GenerationResult[] = gens.map((g) => g.result());
  if (calling) for (const r of results) Object.assign(r, split(model.parseToolCalls(r.text)));

  const completionTokens = results.reduce((s, r) => s + r.usage.completion_tokens, 0);
  const usage = {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: results[0]!.usage.cached_tokens },
  };
  const called = (r: GenerationResult) => calling !== undefined && (r.tool_calls?.length ?? 0) > 0;
  const finish = (r: GenerationResult) => (called(r) && r.finish_reason !== 'length' ? 'tool_calls' : finishReason(r));
  if (stream) {
    results.forEach((r, i) => sse(chunk([{ index: i, delta: {}, logprobs: null, finish_reason: finish(r) }])));
    if (includeUsage) sse({ ...base, object: 'chat.completion.chunk', choices: [], usage });
    sse('[DONE]');
    return undefined;
  }
  const completion: ChatCompletion = {
    ...base,
    object: 'chat.completion',
    choices: results.map((r, i) => ({
      index: i,
      message: called(r)
        ? { role: 'assistant', content: r.content!.trim() || null, refusal: null, annotations: [], tool_calls: toolCallsJson(r.tool_calls!) }
        : { role: 'assistant', content: calling ? r.content! : r.text, refusal: null, annotations: [] }, // a call cut off by max_tokens is left out
      logprobs: wantLogprobs ? { content: logprobsJson(model, r.logprobs, topLogprobs), refusal: null } : null,
      finish_reason: finish(r),
    })),
    usage,
    ...(prompt_logprobs ? { prompt_logprobs } : {}),
  };
  return completion;
});

/** Parsed calls as the SDK's result carries them (content as written); a call max_tokens cut off is not returned (its arguments would not parse). */
function split(p: { content: string; calls: NonNullable<GenerationResult['tool_calls']> }): Pick<GenerationResult, 'content' | 'tool_calls'> {
  return { content: p.content, tool_calls: p.calls.filter((c) => c.complete) };
}
