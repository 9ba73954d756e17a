/** pie:inferlet/chat: rendered in the worker with the model's template; tool calls in the model's format (model/tool-calls.ts). */
import type { ChatMessage } from '../../model/chat-template.ts';
import { detectToolFormat, genericMessages, parseToolCalls, toolCallTag, type ToolChoice, type ToolSpec } from '../../model/tool-calls.ts';
import { GuestResultError } from './env.ts';
import type { guestGrammar } from './grammar.ts';
import { encodeFor, type GuestModel } from './model.ts';
import { hostWork } from './host-work.ts';

interface WitMessage {
  role: string;
  content: string;
  name?: string;
  toolCalls?: string;
  toolCallId?: string;
}

interface WitTool {
  name: string;
  description: string;
  parameters: string;
}

const ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool']);

type WitToolChoice = { tag: 'auto' } | { tag: 'required' } | { tag: 'function'; val: string };

/**
 * Messages and tools as chat templates take them (Hugging Face's conventions):
 * call arguments as objects, tool results named after the call they answer.
 * A model whose template knows no tools gets them in the generic format.
 */
function toTemplateInput(model: GuestModel, messages: WitMessage[], tools: WitTool[]): { messages: ChatMessage[]; tools: unknown[] | undefined } {
  const names = new Map<string, string>();
  let out = messages.map((m, i) => {
    if (!ROLES.has(m.role)) throw new GuestResultError('invalid-argument', `messages[${i}].role "${m.role}" is not one of ${[...ROLES].join(', ')}`);
    const msg: ChatMessage = { role: m.role, content: m.content };
    if (m.name !== undefined) msg.name = m.name;
    if (m.toolCallId !== undefined) {
      msg.tool_call_id = m.toolCallId;
      if (m.role === 'tool' && msg.name === undefined && names.has(m.toolCallId)) msg.name = names.get(m.toolCallId);
    }
    if (m.toolCalls !== undefined) {
      const calls = parse(m.toolCalls, `messages[${i}].tool-calls`);
      if (!Array.isArray(calls)) throw new GuestResultError('invalid-argument', `messages[${i}].tool-calls is not a JSON array`);
      msg.tool_calls = calls.map((c: { id?: string; function?: { name?: string; arguments?: unknown } }) => {
        if (c?.id && c.function?.name) names.set(c.id, c.function.name);
        const args = c?.function?.arguments;
        return typeof args === 'string' && c.function ? { ...c, function: { ...c.function, arguments: parseOr(args) } } : c;
      });
    }
    return msg;
  });
  const specs = toolSpecs(tools);
  if (detectToolFormat(model.text.chatTemplate) === 'generic') {
    out = genericMessages(out, specs, model.text.chatTemplate.isFallback);
    return { messages: out, tools: undefined };
  }
  const fns = specs.map((t) => ({ type: 'function', function: { name: t.name, description: t.description, parameters: t.parameters } }));
  return { messages: out, tools: fns.length ? fns : undefined };
}

function toolSpecs(tools: WitTool[]): ToolSpec[] {
  return tools.map((t, i) => {
    const parameters = parse(t.parameters, `tools[${i}].parameters`);
    if (typeof parameters !== 'object' || parameters === null || Array.isArray(parameters)) throw new GuestResultError('invalid-argument', `tools[${i}].parameters is not a JSON schema object`);
    return { name: t.name, description: t.description, parameters };
  });
}

/** JSON text as a value, or the text itself if it does not parse. */
function parseOr(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function parse(json: string, what: string): unknown {
  try {
    return JSON.parse(json);
  } catch (err) {
    throw new GuestResultError('invalid-argument', `${what} is not valid JSON: ${(err as Error).message}`);
  }
}

function render(model: GuestModel, messages: WitMessage[], tools: WitTool[], addGenerationPrompt: boolean): string {
  const input = toTemplateInput(model, messages, tools);
  try {
    return model.text.chatTemplate.render(input.messages, { addGenerationPrompt, ...(input.tools ? { tools: input.tools } : {}) });
  } catch (err) {
    throw new GuestResultError('invalid-argument', `the chat template failed: ${(err as Error).message}`);
  }
}

export function guestChat(grammar: ReturnType<typeof guestGrammar>) {
  return {
    render,
    encode: (model: GuestModel, messages: WitMessage[], tools: WitTool[], addGenerationPrompt: boolean) => {
      const text = hostWork(() => render(model, messages, tools, addGenerationPrompt));
      return encodeFor(model.text, text, () => model.text.tokenizer.encodeChat(text));
    },
    stopTokenIds: (model: GuestModel) => Uint32Array.from(model.text.eosTokenIds),
    toolCallFormat: (model: GuestModel) => detectToolFormat(model.text.chatTemplate),
    toolCallMatcher: (model: GuestModel, tools: WitTool[], choice: WitToolChoice, parallel: boolean) => {
      const specs = toolSpecs(tools);
      if (specs.length === 0) throw new GuestResultError('invalid-argument', 'tool calls need at least one tool');
      const seen = new Set<string>();
      specs.forEach((t, i) => {
        if (seen.has(t.name)) throw new GuestResultError('invalid-argument', `tools[${i}].name "${t.name}" is declared twice`);
        seen.add(t.name);
      });
      const mode: ToolChoice = choice.tag === 'function' ? { mode: 'function', name: choice.val } : { mode: choice.tag };
      if (mode.mode === 'function' && !seen.has(mode.name)) throw new GuestResultError('invalid-argument', `the chosen function "${mode.name}" is not one of the tools`);
      const tag = toolCallTag(detectToolFormat(model.text.chatTemplate), specs, mode, parallel);
      return grammar.Matcher.fromStructuralTag(model, JSON.stringify(tag));
    },
    parseToolCalls: (model: GuestModel, text: string, final: boolean) => parseToolCalls(detectToolFormat(model.text.chatTemplate), text, final),
  };
}
