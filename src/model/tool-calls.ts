/**
 * Tool calls in the formats models are trained on, known from their chat
 * templates: how calls are written (a structural tag the grammar engine
 * constrains them to), how they are read back out of the text, and, for a
 * model whose template knows no tools, a documented generic format.
 *
 *   hermes       <tool_call>\n{"name": "f", "arguments": {…}}\n</tool_call>   (Qwen2.5, Qwen3, Hermes)
 *   llama3_json  {"name": "f", "parameters": {…}}                          (Llama 3.1 / 3.2 JSON calls; one per turn)
 *   mistral      [TOOL_CALLS] [{"name": "f", "arguments": {…}, "id": "abcdefghi"}, …]
 *   generic      <tool_call>{"name": "f", "arguments": {…}}</tool_call>      (any other model: the tools are
 *                described in a system message; see `genericMessages`)
 *
 * Arguments are compact JSON valid against the tool's schema (see
 * grammar/source.ts), so a call this server returns always parses.
 */
import type { ChatMessage, ChatTemplate } from './chat-template.ts';

export type ToolFormat = 'hermes' | 'llama3_json' | 'mistral' | 'generic';

export interface ToolSpec {
  name: string;
  description?: string;
  /** JSON Schema of the arguments. */
  parameters: object;
}

export type ToolChoice = { mode: 'auto' } | { mode: 'required' } | { mode: 'function'; name: string };

export interface ParsedCall {
  name: string;
  /** The arguments' JSON text (while streaming, possibly incomplete). */
  arguments: string;
  /** Whether its arguments are complete. */
  complete: boolean;
}

export interface ParsedCalls {
  /** Text outside the calls, as written (while streaming, without a tail that may yet start a call). */
  content: string;
  calls: ParsedCall[];
}

/** The model's format, from what its chat template writes. */
export function detectToolFormat(template: ChatTemplate): ToolFormat {
  const src = template.source;
  if (template.isFallback || !/\btools\b/.test(src)) return 'generic';
  if (src.includes('<tool_call>')) return 'hermes';
  if (src.includes('[TOOL_CALLS]')) return 'mistral';
  if (src.includes('"parameters"') && src.includes('<|start_header_id|>')) return 'llama3_json';
  return 'generic';
}

/** Whether the format writes at most one call a turn. */
export function oneCallPerTurn(format: ToolFormat): boolean {
  return format === 'llama3_json';
}

interface Shape {
  /** Starts a call (or, for mistral, the list of calls). */
  trigger: string;
  /** The text of a call before its arguments, and after them. */
  before: (name: string) => string;
  after: string;
  /** Between calls. */
  separator: string;
}

const ID_PATTERN = '[A-Za-z0-9]{9}';

function shape(format: ToolFormat): Shape {
  switch (format) {
    case 'hermes':
      return { trigger: '<tool_call>', before: (n) => `<tool_call>\n{"name": ${JSON.stringify(n)}, "arguments": `, after: '}\n</tool_call>', separator: '\n' };
    case 'generic':
      return { trigger: '<tool_call>', before: (n) => `<tool_call>{"name": ${JSON.stringify(n)}, "arguments": `, after: '}</tool_call>', separator: '\n' };
    case 'llama3_json':
      return { trigger: '{"name": ', before: (n) => `{"name": ${JSON.stringify(n)}, "parameters": `, after: '}', separator: '; ' };
    case 'mistral':
      // Within "[TOOL_CALLS] [" … "]": each call ends with the id the model gives it.
      return { trigger: '[TOOL_CALLS]', before: (n) => `{"name": ${JSON.stringify(n)}, "arguments": `, after: '"}', separator: ', ' };
  }
}

/**
 * The structural tag (xgrammar's JSON) that constrains output to `choice`:
 * `auto` free text in which any call, once started, is valid; `required` one
 * or more calls and nothing else; `function` calls of that one tool.
 * `parallel` false allows one call.
 */
export function toolCallTag(format: ToolFormat, tools: ToolSpec[], choice: ToolChoice, parallel: boolean): object {
  const s = shape(format);
  const chosen = choice.mode === 'function' ? tools.filter((t) => t.name === choice.name) : tools;
  const single = !parallel || oneCallPerTurn(format);
  const call = (t: ToolSpec) => {
    const args = { type: 'json_schema', json_schema: t.parameters };
    const content = format === 'mistral' ? { type: 'sequence', elements: [args, { type: 'const_string', value: ', "id": "' }, { type: 'regex', pattern: ID_PATTERN }] } : args;
    return { type: 'tag', begin: s.before(t.name), content, end: s.after };
  };
  const calls = { type: 'tags_with_separator', tags: chosen.map(call), separator: s.separator, at_least_one: true, stop_after_first: single };
  if (format === 'mistral') {
    const list = { type: 'tag', begin: '[TOOL_CALLS] [', content: calls, end: ']' };
    if (choice.mode === 'auto') return { type: 'structural_tag', format: { type: 'triggered_tags', triggers: [s.trigger], tags: [list], stop_after_first: true } };
    return { type: 'structural_tag', format: list };
  }
  if (choice.mode === 'auto') return { type: 'structural_tag', format: { type: 'triggered_tags', triggers: [s.trigger], tags: chosen.map(call), stop_after_first: single } };
  return { type: 'structural_tag', format: calls };
}

/**
 * Splits generated text into content and calls. `final` false (streaming):
 * the last call may be incomplete, and a tail of the content that could be
 * the start of a call is held back.
 */
export function parseToolCalls(format: ToolFormat, text: string, final = true): ParsedCalls {
  const s = shape(format);
  const calls: ParsedCall[] = [];
  let content = '';
  let at = 0;
  for (;;) {
    const start = text.indexOf(s.trigger, at);
    if (start < 0) {
      const rest = text.slice(at);
      const visible = final ? rest : rest.slice(0, rest.length - heldBack(rest, s.trigger));
      // Whitespace between and after calls is the format's separator, not content.
      if (calls.length === 0 || visible.trim() !== '') content += visible;
      break;
    }
    const between = text.slice(at, start);
    if (calls.length === 0 || between.trim() !== '') content += between;
    at = format === 'mistral' ? readMistral(text, start, calls) : readCall(text, start, s, format, calls);
    if (at < 0) break; // incomplete (streaming), or not a call after all: stop reading
  }
  return { content, calls };
}

/** Reads one call at `start`; returns where reading goes on, or -1 at the end of what is there. */
function readCall(text: string, start: number, s: Shape, format: ToolFormat, calls: ParsedCall[]): number {
  const key = format === 'llama3_json' ? 'parameters' : 'arguments';
  const tag = format === 'llama3_json' ? '' : `${escapeRegex(s.trigger)}\\s*`; // a Llama call is the object itself
  const head = new RegExp(`^${tag}\\{\\s*"name"\\s*:\\s*("(?:[^"\\\\]|\\\\.)*")\\s*,\\s*"${key}"\\s*:\\s*`);
  const m = head.exec(text.slice(start));
  if (!m) return -1;
  const name = JSON.parse(m[1]!) as string;
  const argsAt = start + m[0].length;
  const end = jsonEnd(text, argsAt);
  calls.push({ name, arguments: text.slice(argsAt, end ?? text.length), complete: end !== null });
  if (end === null) return -1;
  const closer = format === 'llama3_json' ? '}' : '</tool_call>';
  const close = text.indexOf(closer, end);
  return close < 0 ? -1 : close + closer.length;
}

/** Reads a "[TOOL_CALLS] [ … ]" list at `start`. */
function readMistral(text: string, start: number, calls: ParsedCall[]): number {
  let at = text.indexOf('[', start + '[TOOL_CALLS]'.length);
  if (at < 0) return -1;
  at++;
  for (;;) {
    const m = /^\s*\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"arguments"\s*:\s*/.exec(text.slice(at));
    if (!m) return -1;
    const argsAt = at + m[0].length;
    const end = jsonEnd(text, argsAt);
    calls.push({ name: JSON.parse(m[1]!) as string, arguments: text.slice(argsAt, end ?? text.length), complete: end !== null });
    if (end === null) return -1;
    const close = text.indexOf('}', end);
    if (close < 0) return -1;
    const sep = /^\s*(,|\])/.exec(text.slice(close + 1));
    if (!sep) return -1;
    at = close + 1 + sep[0].length;
    if (sep[1] === ']') return at;
  }
}

/** The index just past the JSON value starting at `from`, or null if it is not complete yet. */
export function jsonEnd(text: string, from: number): number | null {
  let depth = 0;
  let inString = false;
  for (let i = from; i < text.length; i++) {
    const c = text[i]!;
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') {
        inString = false;
        if (depth === 0) return i + 1;
      }
    } else if (c === '"') inString = true;
    else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') {
      if (depth === 0) return i > from ? i : null; // what closes the call after a bare number, true, false or null
      depth--;
      if (depth === 0) return i + 1;
    } else if (depth === 0 && /[\s,]/.test(c) && i > from) return i; // a bare number, true, false or null
  }
  return null;
}

/** Characters at the end of `text` that could begin `trigger`. */
function heldBack(text: string, trigger: string): number {
  for (let n = Math.min(trigger.length - 1, text.length); n > 0; n--) if (trigger.startsWith(text.slice(text.length - n))) return n;
  return 0;
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The generic format's prompt: the tools described in a system message (the
 * first, or a new one), assistant calls written as the model is to write them,
 * tool results as `<tool_response>` messages. Roles stay as they are with the
 * plain fallback template; a model's own template gets tool results as user
 * turns, since a template without tool support may not know the role.
 */
export function genericMessages(messages: ChatMessage[], tools: ToolSpec[], fallbackTemplate: boolean): ChatMessage[] {
  const s = shape('generic');
  const described = `Tools:\n${tools.map((t) => `${t.name}(${signature(t.parameters)})${t.description ? `: ${t.description}` : ''}`).join('\n')}\nCall one as ${s.before('<name>')}{…}${s.after}.`;
  const out = messages.map((m): ChatMessage => {
    if (m.role === 'assistant' && Array.isArray(m.tool_calls) && m.tool_calls.length > 0) {
      // As the model is to write them: compact JSON, ", " and ": " between items.
      const calls = (m.tool_calls as Array<{ function: { name: string; arguments: unknown } }>).map((c) => `${s.before(c.function.name)}${typeof c.function.arguments === 'string' ? c.function.arguments : compact(c.function.arguments)}${s.after}`);
      return { role: 'assistant', content: [m.content ?? '', ...calls].filter((x) => x !== '').join('\n') };
    }
    if (m.role === 'tool') return { role: fallbackTemplate ? 'tool' : 'user', content: `<tool_response>${m.content ?? ''}</tool_response>` };
    return m;
  });
  if (tools.length === 0) return out;
  const first = out[0];
  if (first && (first.role === 'system' || first.role === 'developer')) return [{ ...first, content: `${first.content ?? ''}\n\n${described}` }, ...out.slice(1)];
  return [{ role: 'system', content: described }, ...out];
}

function compact(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(compact).join(', ')}]`;
  if (v !== null && typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${compact(x)}`).join(', ')}}`;
  return JSON.stringify(v);
}

/** A terse signature of an arguments schema: `city: string, unit: "c" | "f", days?: integer` (the grammar holds the call to the whole schema). */
export function signature(schema: unknown): string {
  const o = schema as { properties?: Record<string, unknown>; required?: string[] };
  if (!o || typeof o !== 'object' || !o.properties) return '';
  const required = new Set(o.required ?? []);
  return Object.entries(o.properties)
    .map(([k, v]) => `${k}${required.has(k) ? '' : '?'}: ${typeName(v)}`)
    .join(', ');
}

function typeName(schema: unknown): string {
  const s = schema as { type?: string | string[]; enum?: unknown[]; const?: unknown; items?: unknown; anyOf?: unknown[]; oneOf?: unknown[] };
  if (!s || typeof s !== 'object') return 'any';
  if (Array.isArray(s.enum)) return s.enum.map((v) => JSON.stringify(v)).join(' | ');
  if ('const' in s) return JSON.stringify(s.const);
  const union = s.anyOf ?? s.oneOf;
  if (Array.isArray(union)) return union.map(typeName).join(' | ');
  if (Array.isArray(s.type)) return s.type.join(' | ');
  if (s.type === 'array') return `${typeName(s.items)}[]`;
  return s.type ?? 'any';
}
