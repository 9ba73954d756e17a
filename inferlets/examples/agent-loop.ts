/**
 * An agent loop with a tool implemented inside the inferlet, on real tool
 * calls: the model is prompted with the tool through its chat template, its
 * call is constrained to the model's call format with arguments valid against
 * the tool's schema (so it always parses), the inferlet runs the tool and
 * writes the result turn into the same context, and generation resumes there:
 * nothing is re-prefilled. The last turn answers in free text.
 *
 *   pie run agent-loop.wasm -- '{"prompt": "Who is Lily?"}'
 */
import { inferlet, log, Model, type ToolDefinition } from '@pie/inferlet';

interface Input {
  prompt: string;
  max_tokens?: number;
  /** Tool calls before the answer (default 1). */
  max_calls?: number;
}

/** The tool: a character sheet lookup. */
const CHARACTERS: Record<string, string> = {
  Lily: 'Lily is four, has a red kite and is afraid of the dark',
  Tom: 'Tom is a tall boy who builds boats out of boxes',
  Ben: 'Ben is a small dog with one white ear',
  Sue: 'Sue is a girl who collects shiny stones',
};

const DESCRIBE: ToolDefinition = {
  name: 'describe',
  description: 'What is known about a character',
  parameters: { type: 'object', properties: { name: { enum: Object.keys(CHARACTERS) } }, required: ['name'], additionalProperties: false },
};

export const run = inferlet<Input>((input) => {
  const model = Model.load();
  const tools = [DESCRIBE];
  const ctx = model.newContext().fillChat([{ role: 'user', content: input.prompt }], { tools });
  const calls: { tool: string; arguments: string; result: string }[] = [];
  let left = input.max_tokens ?? 160;
  for (let i = 0; i < (input.max_calls ?? 1) && left > 0; i++) {
    const r = ctx.generate({ tools: { tools, choice: 'required', parallel: false }, max_tokens: left }).result();
    left -= r.usage.completion_tokens;
    const call = r.tool_calls?.find((c) => c.complete);
    if (!call) break; // out of tokens mid-call
    const { name } = JSON.parse(call.arguments) as { name: string };
    const result = CHARACTERS[name]!;
    log(`tool describe(${name}) -> ${result}`);
    const id = `call${String(i).padStart(9, '0')}`; // nine characters or more: Mistral's template wants them
    calls.push({ tool: call.name, arguments: call.arguments, result });
    // The call is in the context already (generated there); its result turn goes after it.
    ctx.fillChat([{ role: 'tool', tool_call_id: id, name: call.name, content: result }]);
  }
  const answer = left > 0 ? ctx.generate({ max_tokens: left }).text() : '';
  return { answer, calls, context_tokens: ctx.length };
});
