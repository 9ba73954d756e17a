/**
 * Responses items as chat messages: one conversion, shared by the built-in
 * (a request's input) and the gateway (a stored conversation continued on
 * another model). It imports nothing of the SDK, so the gateway can use it.
 */
import type { HistoryMessage } from './protocol.ts';

/** A message's content as text: a string as it is, text parts joined by newlines (Chat Completions' and Responses' alike). */
export function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map((p: { text?: string }) => p.text ?? '').join('\n');
}

/** Input items as chat messages; consecutive function calls become one assistant message. */
export function itemsToMessages(items: readonly object[]): HistoryMessage[] {
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
      out.push({ role: (it.role as HistoryMessage['role'] | undefined) ?? 'user', content: contentText(it.content) });
    }
  }
  return out;
}

