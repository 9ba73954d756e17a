/**
 * POST /v1/responses. A follow-up (previous_response_id) continues the
 * conversation's KV snapshot when it is still kept, else refills the exact
 * tokens the gateway stored, so the answer is the same either way; the new
 * state is saved under `save_as` for the next turn. Streams the Responses
 * event sequence; the text deltas are filled in by the host per token, except
 * with tools, where chunks pass through here to be split into a message item
 * and function_call items, and with logprobs (`include`
 * message.output_text.logprobs), where they pass through here to carry each
 * token's logprob.
 */
import { Context, Model, PieError, type ChatMessage, type Chunk, type TokenLogprob, type ToolDefinition } from '@pie/inferlet';
import type { components } from '../../src/gateway/openapi-types.ts';
import { checkContextLength, filling, HttpError, markStreaming, route, samplingOf, seqTemplate, logprobsJson, DELTA, SEQ, sseNamed } from './common.ts';
import type { HistoryMessage, ResponsesInput, ResponsesResult } from './protocol.ts';
import { itemsToMessages } from './response-items.ts';
import { responseObject } from './response-object.ts';
import { grammarOf, openMatchers, type ResponseFormat } from './structured.ts';
import { callDeltas, checkToolMessages, openToolMatchers, responsesTools, toolsOf, type Tools } from './tools.ts';

type Request = components['schemas']['CreateResponse'];
type LogProb = components['schemas']['LogProb'];
/** Turns a run of tokens' logprobs into an output_text part's. */
type Logprobs = (lps: TokenLogprob[]) => LogProb[];

/** The same logprobs as the text delta and done events carry them (OpenAI's events leave the bytes out). */
function eventLogprobs(lps: LogProb[]): Array<{ token: string; logprob: number; top_logprobs: Array<{ token: string; logprob: number }> }> {
  return lps.map((l) => ({ token: l.token, logprob: l.logprob, top_logprobs: l.top_logprobs.map((t) => ({ token: t.token, logprob: t.logprob })) }));
}

function openConversation(model: Model, input: ResponsesInput<Request>, tools: ToolDefinition[]): { ctx: Context; reused: number } {
  const h = input.history;
  if (h?.snapshot) {
    try {
      const ctx = Context.open(model, h.snapshot);
      return { ctx, reused: Math.max(0, ctx.length - 1) };
    } catch (err) {
      if (!(err instanceof PieError && err.code === 'not-found')) throw err;
    }
  }
  const ctx = model.newContext();
  if (h?.tokens) ctx.fill(h.tokens, { bos: false });
  else if (h && h.messages.length > 0) ctx.fillChat(h.messages as ChatMessage[], { add_generation_prompt: false, tools });
  return { ctx, reused: 0 };
}

export const run = route<ResponsesInput<Request>>('input', (input) => {
  const body = input.body;
  const model = Model.load(input.model);
  const tools = toolsOf(responsesTools(body), (i) => `tools[${i}].name`);
  const { ctx, reused } = openConversation(model, input, tools?.tools ?? []);
  const turn: HistoryMessage[] = [];
  if (body.instructions) turn.push({ role: 'developer', content: body.instructions });
  turn.push(...(typeof body.input === 'string' ? [{ role: 'user' as const, content: body.input }] : itemsToMessages(body.input)));
  // A result of an earlier turn's call is named after it (templates want the name).
  const earlier = input.history?.calls ?? {};
  for (const m of turn) if (m.role === 'tool' && m.tool_call_id && earlier[m.tool_call_id]) m.name = earlier[m.tool_call_id];
  checkToolMessages(turn as ChatMessage[], Object.keys(earlier), () => 'input');
  // Tools go into the prompt where the conversation starts: this turn, or the earlier turns rendered again
  // (a follow-up on the kept context has them from its first turn).
  const fresh = ctx.length === 0;
  filling('input', () => ctx.fillChat(turn as ChatMessage[], { tools: fresh ? (tools?.tools ?? []) : [] }));
  const inputTokens = ctx.length;
  const maxTokens = body.max_output_tokens ?? undefined;
  checkContextLength(model, inputTokens, maxTokens, 'input');
  const format = grammarOf(body.text?.format as ResponseFormat | undefined, 'text.format');
  const calling: Tools | undefined = tools && tools.choice !== 'none' ? tools : undefined;
  if (format && calling) throw new HttpError(400, 'text.format cannot constrain the output while tools may be called: set tool_choice to "none", or leave text.format out', 'text.format');
  const [matcher] = calling ? openToolMatchers(model, { tools: calling.tools, choice: calling.choice as 'auto' | 'required' | { name: string }, parallel: calling.parallel }, 1) : openMatchers(model, format, 1);
  // top_logprobs alone asks for nothing: it is how many alternatives the included logprobs list.
  const topLogprobs = body.top_logprobs ?? 0;
  const logprobs: Logprobs | null = body.include?.includes('message.output_text.logprobs') ? (lps) => logprobsJson(model, lps, topLogprobs) : null;

  const msgId = `msg_${input.id.replace(/^resp_/, '')}`;
  const response = (status: string, output: unknown[], extra: Record<string, unknown> = {}) => responseObject(input, status, output, extra);
  const stream = body.stream === true;
  let seq = 0;
  const event = (type: string, data: Record<string, unknown>) => sseNamed(type, { type, sequence_number: seq++, ...data });
  const where = { item_id: msgId, output_index: 0, content_index: 0 };
  if (stream) {
    event('response.created', { response: response('in_progress', []) });
    event('response.in_progress', { response: response('in_progress', []) });
    if (!calling) {
      event('response.output_item.added', { output_index: 0, item: { id: msgId, type: 'message', status: 'in_progress', role: 'assistant', content: [] } });
      event('response.content_part.added', { ...where, part: { type: 'output_text', text: '', annotations: [], logprobs: [] } });
    }
    markStreaming();
  }
  const deltaEvent = { type: 'response.output_text.delta', sequence_number: SEQ, ...where, delta: DELTA, logprobs: [] };
  const gen = ctx.generate({
    sampling: samplingOf({ temperature: body.temperature, top_p: body.top_p }, model.info.vocabSize),
    max_tokens: maxTokens,
    ...(matcher ? { grammar: matcher } : {}),
    ...(logprobs ? { logprobs: topLogprobs } : {}),
    ...(stream && !calling && !logprobs ? { stream: { event: 'response.output_text.delta', template: seqTemplate(deltaEvent), first_seq: seq } } : {}),
  });
  // Chunks pass through here with tools (streamed, or to split logprobs between items), and to stream logprobs.
  let items: Array<Record<string, unknown>> | null = null;
  if (calling && (stream || logprobs)) items = outputItems(gen, model, msgId, stream ? event : () => {}, logprobs);
  else if (stream && logprobs) {
    // A token that ends inside a character goes out with the delta that completes it.
    let held: TokenLogprob[] = [];
    for (const c of gen) {
      held.push(...c.logprobs);
      if (c.text === '') continue;
      event('response.output_text.delta', { ...where, delta: c.text, logprobs: eventLogprobs(logprobs(held)) });
      held = [];
    }
    if (held.length > 0) event('response.output_text.delta', { ...where, delta: '', logprobs: eventLogprobs(logprobs(held)) });
  }
  const r = gen.result();
  seq += r.streamed;

  const incomplete = r.finish_reason === 'length' && maxTokens !== undefined;
  const status = incomplete ? 'incomplete' : 'completed';
  const message = (text: string) => ({ id: msgId, type: 'message', status, role: 'assistant', content: [{ type: 'output_text', text, annotations: [], logprobs: logprobs ? logprobs(r.logprobs) : [] }] });
  let output: Array<Record<string, unknown>>;
  if (items) output = items;
  else if (calling) output = outputItems([r.text], model, msgId, () => {}, null); // the same items a stream makes
  else output = [message(r.text)];
  const usage = {
    input_tokens: inputTokens,
    input_tokens_details: { cached_tokens: r.usage.cached_tokens + reused },
    output_tokens: r.usage.completion_tokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: inputTokens + r.usage.completion_tokens,
  };
  const final = response(status, output, {
    usage,
    ...(incomplete ? { incomplete_details: { reason: 'max_output_tokens' } } : {}),
  });
  if (input.save_as) ctx.save(input.save_as);
  if (stream) {
    if (!calling) {
      const item = output[0]!;
      const part = (item.content as Array<{ logprobs: LogProb[] }>)[0]!;
      event('response.output_text.done', { ...where, text: r.text, logprobs: eventLogprobs(part.logprobs) });
      event('response.content_part.done', { ...where, part });
      event('response.output_item.done', { output_index: 0, item });
    }
    event(incomplete ? 'response.incomplete' : 'response.completed', { response: final });
  }
  const result: ResponsesResult = { response: final, context_tokens: ctx.tokens() };
  return result;
});

function functionCall(callIdValue: string, name: string, args: string): Record<string, unknown> {
  return { id: `fc_${callIdValue.slice('call_'.length)}`, type: 'function_call', status: 'completed', call_id: callIdValue, name, arguments: args };
}

/**
 * The output items of a generation with tools, streamed as the Responses API
 * does (`event`; a no-op for a whole text): text as a message item's
 * output_text deltas (text after a call: a further message item), each call as
 * a function_call item whose arguments come in deltas. A call cut off by
 * max_output_tokens ends "incomplete". With `logprobs`, each token's logprob
 * goes with the message text it made (text held back while it may start a
 * call goes with the text it turns out to be); a call's tokens carry none.
 */
function outputItems(texts: Iterable<Chunk | string>, model: Model, msgId: string, event: (type: string, data: Record<string, unknown>) => void, logprobs: Logprobs | null): Array<Record<string, unknown>> {
  const output: Array<Record<string, unknown>> = [];
  let message: { id: string; text: string; logprobs: LogProb[] } | null = null; // the open message item
  let call: Record<string, unknown> | null = null; // the open call
  let calls = 0;
  let pending: LogProb[] = []; // of tokens whose text is held back
  const split = callDeltas(model);
  const where = () => ({ item_id: message!.id, output_index: output.length, content_index: 0 });
  const closeMessage = () => {
    if (!message) return;
    const part = { type: 'output_text', text: message.text, annotations: [], logprobs: message.logprobs };
    const item = { id: message.id, type: 'message', status: 'completed', role: 'assistant', content: [part] };
    event('response.output_text.done', { ...where(), text: message.text, logprobs: eventLogprobs(message.logprobs) });
    event('response.content_part.done', { ...where(), part });
    event('response.output_item.done', { output_index: output.length, item });
    output.push(item);
    message = null;
  };
  const closeCall = () => {
    if (!call) return;
    call.status = split.complete(calls - 1) ? 'completed' : 'incomplete';
    event('response.function_call_arguments.done', { item_id: call.id, output_index: output.length, arguments: call.arguments });
    event('response.output_item.done', { output_index: output.length, item: call });
    output.push(call);
    call = null;
  };
  const apply = (delta: ReturnType<typeof split.push>, lps: LogProb[]) => {
    pending.push(...lps);
    if (!delta) return;
    if (delta.content) {
      closeCall();
      if (!message) {
        message = { id: output.some((o) => o.type === 'message') ? `${msgId}_${output.length}` : msgId, text: '', logprobs: [] };
        event('response.output_item.added', { output_index: output.length, item: { id: message.id, type: 'message', status: 'in_progress', role: 'assistant', content: [] } });
        event('response.content_part.added', { ...where(), part: { type: 'output_text', text: '', annotations: [], logprobs: [] } });
      }
      message.text += delta.content;
      message.logprobs.push(...pending);
      event('response.output_text.delta', { ...where(), delta: delta.content, logprobs: eventLogprobs(pending) });
      pending = [];
    }
    for (const d of delta.tool_calls ?? []) {
      if (d.id) {
        closeMessage();
        closeCall();
        calls++;
        call = { ...functionCall(d.id, d.function.name!, ''), status: 'in_progress' };
        event('response.output_item.added', { output_index: output.length, item: { ...call } });
      }
      if (call && d.function.arguments) {
        call.arguments = String(call.arguments) + d.function.arguments;
        event('response.function_call_arguments.delta', { item_id: call.id, output_index: output.length, delta: d.function.arguments });
      }
    }
    if (call) pending = [];
  };
  for (const chunk of texts) {
    if (typeof chunk === 'string') apply(split.push(chunk), []);
    else apply(split.push(chunk.text), logprobs ? logprobs(chunk.logprobs) : []);
  }
  apply(split.end(), []);
  closeMessage();
  closeCall();
  return output;
}
