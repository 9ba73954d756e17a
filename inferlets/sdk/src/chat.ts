/** Chat messages and tools as the SDK takes them (OpenAI's shapes), and as the ABI takes them. */
import type * as chat from 'pie:inferlet/chat@0.2.0';

/** A chat message, as in the OpenAI API (text content only). */
export interface ChatMessage {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  content: string;
  name?: string;
  /** An assistant message's tool calls (OpenAI's shape). */
  tool_calls?: unknown[];
  /** The call a tool message answers. */
  tool_call_id?: string;
}

/** A function the model may call (OpenAI's `function` tool). */
export interface ToolDefinition {
  name: string;
  description?: string;
  /** JSON schema of the arguments. */
  parameters?: object;
}

/** A tool call read out of generated text. */
export interface ToolCall {
  name: string;
  /** The arguments as JSON text (incomplete while `complete` is false, e.g. cut off by max_tokens). */
  arguments: string;
  complete: boolean;
}

/** Generated text split into what is outside the calls and the calls. */
export interface ParsedToolCalls {
  content: string;
  calls: ToolCall[];
}

export interface ChatOptions {
  tools?: ToolDefinition[];
  /** End with the assistant's turn opening (default true). */
  add_generation_prompt?: boolean;
}

export function toAbiMessages(messages: ChatMessage[]): chat.Message[] {
  return messages.map((m) => ({
    role: m.role,
    content: m.content,
    name: m.name,
    toolCalls: m.tool_calls ? JSON.stringify(m.tool_calls) : undefined,
    toolCallId: m.tool_call_id,
  }));
}

export function toAbiTools(tools: ToolDefinition[] = []): chat.Tool[] {
  return tools.map((t) => ({ name: t.name, description: t.description ?? '', parameters: JSON.stringify(t.parameters ?? { type: 'object', properties: {} }) }));
}

