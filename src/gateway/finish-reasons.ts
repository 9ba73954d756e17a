/**
 * The finish reasons a request's API answer gave, for the metrics
 * (`request_success_total{finished_reason}`): read from the answer the
 * gateway relays, in the API's own fields, so they are what the client saw
 * (`tool_calls` is decided by the inferlet, not the engine).
 *
 *   chat / completions: each choice's `finish_reason` (the body, or a stream's final chunks)
 *   responses:          the response's status and output (incomplete → length, a function call → tool_calls)
 */
import type { InvocationResult, OutputEvent } from '../runtime/host/invocation.ts';

/** vLLM's reasons, and the API's: a request that ended on its own, or was cut off, cancelled or failed. */
export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'abort' | 'error';

export interface FinishReasonReader {
  /** Sees each event the invocation streams. */
  event(e: OutputEvent): void;
  /** The reasons of the answer, one per choice ([] when it gave none). */
  reasons(r: InvocationResult): FinishReason[];
}

const KNOWN = new Set<string>(['stop', 'length', 'tool_calls']);

const parse = (data: string | null): unknown => {
  if (data === null) return null;
  try {
    return JSON.parse(data);
  } catch {
    return null;
  }
};

/** The `finish_reason` of each choice of a chat completion, a completion or one of their chunks. */
function choiceReasons(body: unknown): FinishReason[] {
  const choices = (body as { choices?: unknown } | null)?.choices;
  if (!Array.isArray(choices)) return [];
  return choices.map((c) => (c as { finish_reason?: unknown }).finish_reason).filter((r): r is FinishReason => typeof r === 'string' && KNOWN.has(r));
}

/**
 * Chat completions and completions. Only a stream's last chunk of each choice
 * names a reason; the others carry `"finish_reason":null`. Inside a JSON
 * string a quote is always escaped, so `"finish_reason":"` unescaped occurs
 * only as the field itself with a string value: the chunks worth parsing.
 */
export function choicesFinishReasons(): FinishReasonReader {
  const streamed: FinishReason[] = [];
  return {
    event(e) {
      if (e.event === 'message' && e.data.includes('"finish_reason":"')) streamed.push(...choiceReasons(parse(e.data)));
    },
    reasons(r) {
      return streamed.length > 0 ? streamed : choiceReasons(parse(r.data));
    },
  };
}

/** A Responses API answer: the result holds the final response object, streamed or not. */
export function responseFinishReasons(): FinishReasonReader {
  return {
    event() {},
    reasons(r) {
      const response = (parse(r.data) as { response?: { status?: unknown; output?: unknown } } | null)?.response;
      if (!response) return [];
      if (response.status === 'incomplete') return ['length'];
      const called = Array.isArray(response.output) && response.output.some((item) => (item as { type?: unknown }).type === 'function_call');
      return [called ? 'tool_calls' : 'stop'];
    },
  };
}
