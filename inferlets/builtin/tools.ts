/**
 * Tool calling for the built-in chat endpoints: OpenAI's `tools`,
 * `tool_choice` and `parallel_tool_calls` checked and turned into the SDK's
 * tool-call options; calls as OpenAI returns them; and the split of a
 * streamed generation into content deltas and `tool_calls` deltas.
 */
import { PieError, type ChatMessage, type Matcher, type Model, type ToolCall, type ToolCallOptions, type ToolDefinition } from '@pie/inferlet';
import { newCallId, ToolCallStream, type ToolCallDelta } from '../../src/model/tool-call-stream.ts';
import { DELTA, HttpError } from './common.ts';

export interface ToolsRequest {
  tools?: Array<{ type: 'function'; function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean | null } }> | null;
  tool_choice?: 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } } | null;
  parallel_tool_calls?: boolean | null;
}

export interface Tools {
  tools: ToolDefinition[];
  choice: 'none' | 'auto' | 'required' | { name: string };
  parallel: boolean;
}

/** The request's tools (undefined without any), checked: names unique (`nameParam`: where the i-th name is), a named choice among them. */
export function toolsOf(body: ToolsRequest, nameParam: (i: number) => string): Tools | undefined {
  const list = body.tools ?? [];
  const c = body.tool_choice ?? (list.length > 0 ? 'auto' : 'none');
  if (list.length === 0) {
    if (c !== 'none' && c !== 'auto') throw new HttpError(400, `tool_choice ${JSON.stringify(c)} needs tools`, 'tool_choice');
    return undefined;
  }
  const seen = new Set<string>();
  const tools = list.map((t, i) => {
    const name = t.function.name;
    if (seen.has(name)) throw new HttpError(400, `${nameParam(i)}: "${name}" is declared twice`, nameParam(i));
    seen.add(name);
    return { name, ...(t.function.description !== undefined ? { description: t.function.description } : {}), parameters: t.function.parameters ?? { type: 'object', properties: {} } };
  });
  const choice = typeof c === 'string' ? c : { name: c.function.name };
  if (typeof choice === 'object' && !seen.has(choice.name)) throw new HttpError(400, `tool_choice names the function "${choice.name}", which is not one of the tools`, 'tool_choice');
  return { tools, choice, parallel: body.parallel_tool_calls ?? true };
}

/**
 * One tool-call matcher per choice, before anything is streamed: the first
 * compiles the tools' grammar (or refuses a schema with a 400 naming
 * `tools`), the others are forks.
 */
export function openToolMatchers(model: Model, options: ToolCallOptions, n: number): Matcher[] {
  let first: Matcher;
  try {
    first = model.toolCallMatcher(options);
  } catch (err) {
    if (err instanceof PieError && err.code === 'invalid-argument') throw new HttpError(400, `Invalid tools: ${err.message}`, 'tools');
    throw err;
  }
  return Array.from({ length: n }, (_, i) => (i === 0 ? first : first.fork()));
}

/** The Responses API's tool fields in Chat Completions' shape. */
export function responsesTools(body: {
  tools?: Array<{ type: 'function'; name: string; description?: string | null; parameters?: Record<string, unknown> | null; strict?: boolean | null }> | null;
  tool_choice?: 'none' | 'auto' | 'required' | { type: 'function'; name: string } | null;
  parallel_tool_calls?: boolean | null;
}): ToolsRequest {
  const c = body.tool_choice;
  return {
    tools: body.tools?.map((t) => ({ type: 'function', function: { name: t.name, ...(t.description != null ? { description: t.description } : {}), ...(t.parameters != null ? { parameters: t.parameters } : {}) } })) ?? null,
    tool_choice: c && typeof c === 'object' ? { type: 'function', function: { name: c.name } } : (c ?? null),
    parallel_tool_calls: body.parallel_tool_calls ?? null,
  };
}

/** Every tool result answers a call made earlier in the conversation (`known`: calls of earlier turns; `param`: where the i-th message's call id is). */
export function checkToolMessages(messages: ChatMessage[], known: Iterable<string>, param: (i: number) => string): void {
  const calls = new Set<string>(known);
  messages.forEach((m, i) => {
    for (const c of (m.tool_calls ?? []) as Array<{ id?: string }>) if (c.id) calls.add(c.id);
    if (m.role === 'tool' && !calls.has(m.tool_call_id ?? '')) {
      throw new HttpError(400, `${param(i)} "${m.tool_call_id}" answers no tool call made earlier in the conversation`, param(i));
    }
  });
}

export function toolCallsJson(calls: ToolCall[]): Array<{ id: string; type: 'function'; function: { name: string; arguments: string } }> {
  return calls.map((c) => ({ id: newCallId(), type: 'function', function: { name: c.name, arguments: c.arguments } }));
}

export interface CallDelta {
  content?: string;
  tool_calls?: Array<{ index: number; id?: string; type?: 'function'; function: { name?: string; arguments: string } }>;
}

/**
 * Splits a streamed generation into deltas in OpenAI's chat shape: text as
 * `content` (held back while it may be the start of a call), then each call:
 * its index, id, type and name first, then its arguments in fragments.
 */
export function callDeltas(model: Model): { push(text: string): CallDelta | null; end(): CallDelta | null; complete(index: number): boolean } {
  const stream = new ToolCallStream((text, final) => model.parseToolCalls(text, { final }), newCallId);
  const shape = (d: ToolCallDelta | null): CallDelta | null => {
    if (!d) return null;
    const out: CallDelta = d.content !== undefined ? { content: d.content } : {};
    if (d.calls.length > 0) out.tool_calls = d.calls.map((c) => ('id' in c ? { index: c.index, id: c.id, type: 'function', function: { name: c.name, arguments: '' } } : { index: c.index, function: { arguments: c.arguments } }));
    return out;
  };
  return { push: (t) => shape(stream.push(t)), end: () => shape(stream.end()), complete: (i) => stream.complete(i) };
}

/**
 * The host's stream templates of a call's events, as `chunk` wraps a delta:
 * its first (index, id, type, name, empty arguments), then its arguments'
 * fragments (index and arguments).
 */
export function callTemplates(chunk: (delta: CallDelta) => object): { start: string; arguments: string } {
  // String markers (no other JSON string holds a NUL), each replaced, quotes and all, by its slot.
  const index = '\u0000index' as unknown as number;
  const id = '\u0000id';
  const name = '\u0000name';
  const fill = (c: object, marks: Record<string, string>) => {
    let json = JSON.stringify(c);
    for (const [mark, slot] of Object.entries(marks)) json = json.replace(JSON.stringify(mark), slot);
    return json;
  };
  return {
    start: fill(chunk({ tool_calls: [{ index, id, type: 'function', function: { name, arguments: '' } }] }), { [index]: '{{index}}', [id]: '{{id}}', [name]: '{{name}}' }),
    arguments: fill(chunk({ tool_calls: [{ index, function: { arguments: DELTA } }] }), { [index]: '{{index}}', [DELTA]: '{{delta}}' }),
  };
}
