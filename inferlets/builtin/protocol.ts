/**
 * What the gateway hands an HTTP-bound inferlet, and what the built-in
 * OpenAI inferlets add to it. Types only: shared by the gateway and the
 * inferlets it builds.
 */

/** The input of every route-bound inferlet (custom routes get exactly this). */
export interface RouteInput<B = unknown> {
  method: string;
  /** The request path, without the query. */
  path: string;
  /** Path parameters (`:name` segments of the route). */
  params: Record<string, string>;
  query: Record<string, unknown>;
  /** The request headers the route passes on (lower-case names). */
  headers: Record<string, string>;
  /** The parsed JSON body (null when there is none). */
  body: B;
}

/** Built-in OpenAI endpoints: the gateway has checked the model and names the response. */
export interface OpenAIInput<B> extends RouteInput<B> {
  /** The served model name, checked against the caller's key. */
  model: string;
  /** The id of the object returned ("chatcmpl-…", "cmpl-…", "resp_…"). */
  id: string;
  /** Unix seconds. */
  created: number;
}

/** A message of earlier turns, in OpenAI's chat shape. */
export interface HistoryMessage {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  content: string;
  name?: string;
  tool_calls?: Array<{ id: string; type: 'function'; function: { name: string; arguments: string } }>;
  tool_call_id?: string;
}

/**
 * The conversation before this response (previous_response_id): its KV
 * snapshot if it is still kept, else its exact tokens, else (a different
 * model) its messages to render again.
 */
export interface ConversationHistory {
  snapshot: string | null;
  tokens: number[] | null;
  messages: HistoryMessage[];
  /** The function name of each tool call made so far, by call id. */
  calls: Record<string, string>;
}

export interface ResponsesInput<B> extends OpenAIInput<B> {
  history: ConversationHistory | null;
  /** Snapshot name to keep this conversation's KV state under (store: true). */
  save_as: string | null;
}

/** The result of the responses inferlet, streamed or not: the gateway stores it and answers with `response`. */
export interface ResponsesResult {
  response: Record<string, unknown>;
  /** Token ids of the whole conversation after this response. */
  context_tokens: number[];
}
