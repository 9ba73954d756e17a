/** pie:inferlet/chat: rendered in the worker with the model's template. */
import type { ChatMessage } from '../../model/chat-template.ts';
import { GuestResultError } from '../guest-env.ts';
import type { GuestModel } from './model.ts';

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

function toTemplateInput(messages: WitMessage[], tools: WitTool[]): { messages: ChatMessage[]; tools: unknown[] | undefined } {
  const out = messages.map((m, i) => {
    if (!ROLES.has(m.role)) throw new GuestResultError('invalid-argument', `messages[${i}].role "${m.role}" is not one of ${[...ROLES].join(', ')}`);
    const msg: ChatMessage = { role: m.role, content: m.content };
    if (m.name !== undefined) msg.name = m.name;
    if (m.toolCallId !== undefined) msg.tool_call_id = m.toolCallId;
    if (m.toolCalls !== undefined) msg.tool_calls = parse(m.toolCalls, `messages[${i}].tool-calls`);
    return msg;
  });
  const fns = tools.map((t, i) => ({ type: 'function', function: { name: t.name, description: t.description, parameters: parse(t.parameters, `tools[${i}].parameters`) } }));
  return { messages: out, tools: fns.length ? fns : undefined };
}

function parse(json: string, what: string): unknown {
  try {
    return JSON.parse(json);
  } catch (err) {
    throw new GuestResultError('invalid-argument', `${what} is not valid JSON: ${(err as Error).message}`);
  }
}

function render(model: GuestModel, messages: WitMessage[], tools: WitTool[], addGenerationPrompt: boolean): string {
  const input = toTemplateInput(messages, tools);
  try {
    return model.text.chatTemplate.render(input.messages, { addGenerationPrompt, ...(input.tools ? { tools: input.tools } : {}) });
  } catch (err) {
    throw new GuestResultError('invalid-argument', `the chat template failed: ${(err as Error).message}`);
  }
}

export function guestChat() {
  return {
    render,
    encode: (model: GuestModel, messages: WitMessage[], tools: WitTool[], addGenerationPrompt: boolean) =>
      Uint32Array.from(model.text.tokenizer.encodeChat(render(model, messages, tools, addGenerationPrompt))),
    stopTokenIds: (model: GuestModel) => Uint32Array.from(model.text.eosTokenIds),
  };
}
