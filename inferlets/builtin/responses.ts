/**
 * POST /v1/responses. A follow-up (previous_response_id) continues the
 * conversation's KV snapshot when it is still kept, else refills the exact
 * tokens the gateway stored, so the answer is the same either way; the new
 * state is saved under `save_as` for the next turn. Streams the Responses
 * event sequence; the text deltas are filled in by the host per token.
 */
import { Context, Model, PieError, type ChatMessage } from '@pie/inferlet';
import type { components } from '../../src/gateway/openapi-types.ts';
import { checkContextLength, filling, markStreaming, route, samplingOf, seqTemplate, DELTA, SEQ, sseNamed } from './common.ts';
import type { HistoryMessage, ResponsesInput, ResponsesResult } from './protocol.ts';
import { responseObject } from './response-object.ts';
import { grammarOf, openMatchers, type ResponseFormat } from './structured.ts';

type Request = components['schemas']['CreateResponse'];
type InputItem = Extract<Request['input'], unknown[]>[number];

function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map((p: { text?: string }) => p.text ?? '').join('\n');
}

/** Input items as chat messages; consecutive function calls become one assistant message. */
export function itemsToMessages(items: InputItem[]): HistoryMessage[] {
  const out: HistoryMessage[] = [];
  for (const item of items) {
    const it = item as Record<string, unknown>;
    if (it.type === 'function_call') {
      const call = { id: String(it.call_id), type: 'function' as const, function: { name: String(it.name), arguments: String(it.arguments) } };
      const last = out.at(-1);
      if (last?.role === 'assistant' && last.tool_calls && last.content === '') last.tool_calls.push(call);
      else out.push({ role: 'assistant', content: '', tool_calls: [call] });
    } else if (it.type === 'function_call_output') {
      out.push({ role: 'tool', content: String(it.output), tool_call_id: String(it.call_id) });
    } else {
      out.push({ role: it.role as HistoryMessage['role'], content: contentText(it.content) });
    }
  }
  return out;
}

function openConversation(model: Model, input: ResponsesInput<Request>): { ctx: Context; reused: number } {
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
  else if (h && h.messages.length > 0) ctx.fillChat(h.messages as ChatMessage[], { add_generation_prompt: false });
  return { ctx, reused: 0 };
}

export const run = route<ResponsesInput<Request>>('input', (input) => {
  const body = input.body;
  const model = Model.load(input.model);
  const { ctx, reused } = openConversation(model, input);
  const turn: HistoryMessage[] = [];
  if (body.instructions) turn.push({ role: 'developer', content: body.instructions });
  turn.push(...(typeof body.input === 'string' ? [{ role: 'user' as const, content: body.input }] : itemsToMessages(body.input)));
  filling('input', () => ctx.fillChat(turn as ChatMessage[]));
  const inputTokens = ctx.length;
  const maxTokens = body.max_output_tokens ?? undefined;
  checkContextLength(model, inputTokens, maxTokens, 'input');
  const [matcher] = openMatchers(model, grammarOf(body.text?.format as ResponseFormat | undefined, 'text.format'), 1);

  const msgId = `msg_${input.id.replace(/^resp_/, '')}`;
  const response = (status: string, output: unknown[], extra: Record<string, unknown> = {}) => responseObject(input, status, output, extra);
  const stream = body.stream === true;
  let seq = 0;
  const event = (type: string, data: Record<string, unknown>) => sseNamed(type, { type, sequence_number: seq++, ...data });
  const where = { item_id: msgId, output_index: 0, content_index: 0 };
  if (stream) {
    event('response.created', { response: response('in_progress', []) });
    event('response.in_progress', { response: response('in_progress', []) });
    event('response.output_item.added', { output_index: 0, item: { id: msgId, type: 'message', status: 'in_progress', role: 'assistant', content: [] } });
    event('response.content_part.added', { ...where, part: { type: 'output_text', text: '', annotations: [], logprobs: [] } });
    markStreaming();
  }
  const deltaEvent = { type: 'response.output_text.delta', sequence_number: SEQ, ...where, delta: DELTA, logprobs: [] };
  const r = ctx
    .generate({
      sampling: samplingOf({ temperature: body.temperature, top_p: body.top_p }, model.info.vocabSize),
      max_tokens: maxTokens,
      stop_token_ids: model.stopTokenIds,
      ...(matcher ? { grammar: matcher } : {}),
      ...(stream ? { stream: { event: 'response.output_text.delta', template: seqTemplate(deltaEvent), first_seq: seq } } : {}),
    })
    .result();
  seq += r.streamed;

  const incomplete = r.finish_reason === 'length' && maxTokens !== undefined;
  const part = { type: 'output_text', text: r.text, annotations: [], logprobs: [] };
  const item = { id: msgId, type: 'message', status: incomplete ? 'incomplete' : 'completed', role: 'assistant', content: [part] };
  const usage = {
    input_tokens: inputTokens,
    input_tokens_details: { cached_tokens: r.usage.cached_tokens + reused },
    output_tokens: r.usage.completion_tokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: inputTokens + r.usage.completion_tokens,
  };
  const final = response(incomplete ? 'incomplete' : 'completed', [item], {
    usage,
    ...(incomplete ? { incomplete_details: { reason: 'max_output_tokens' } } : {}),
  });
  if (input.save_as) ctx.save(input.save_as);
  if (stream) {
    event('response.output_text.done', { ...where, text: r.text, logprobs: [] });
    event('response.content_part.done', { ...where, part });
    event('response.output_item.done', { output_index: 0, item });
    event(incomplete ? 'response.incomplete' : 'response.completed', { response: final });
  }
  const result: ResponsesResult = { response: final, context_tokens: ctx.tokens() };
  return result;
});
