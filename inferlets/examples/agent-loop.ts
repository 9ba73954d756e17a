/**
 * An agent loop with a tool implemented inside the inferlet. Generation stops
 * when the model reaches a tool trigger (here: naming a character the tool
 * knows); the inferlet runs the tool, writes its answer into the same context
 * and resumes generating there, so nothing is re-prefilled. A chat model would
 * use its tool-call markup as the stop string in the same loop.
 *
 *   pie run agent-loop.wasm -- '{"prompt": "Once upon a time, there was a little girl named"}'
 */
import { inferlet, log, Model } from '@pie/inferlet';

interface Input {
  prompt: string;
  max_tokens?: number;
  max_calls?: number;
}

/** The tool: a character sheet lookup. */
const CHARACTERS: Record<string, string> = {
  Lily: 'Lily is four, has a red kite and is afraid of the dark',
  Tom: 'Tom is a tall boy who builds boats out of boxes',
  Ben: 'Ben is a small dog with one white ear',
  Sue: 'Sue is a girl who collects shiny stones',
};

function describe(name: string): string {
  return CHARACTERS[name] ?? `nobody called ${name} is known`;
}

export const run = inferlet<Input>((input) => {
  const ctx = Model.load().newContext().fill(input.prompt);
  const calls: { tool: string; arguments: string; result: string }[] = [];
  let transcript = '';
  let left = input.max_tokens ?? 64;
  while (left > 0) {
    const pendingNames = Object.keys(CHARACTERS).filter((n) => !calls.some((c) => c.arguments === n));
    const canCall = calls.length < (input.max_calls ?? 3);
    const r = ctx.generate({ sampling: { temperature: 0 }, max_tokens: left, stop: canCall ? pendingNames : [] }).result();
    left -= r.usage.completion_tokens;
    transcript += r.text;
    if (r.stop_string === undefined) break; // end of text or of the token budget
    const name = r.stop_string;
    const result = describe(name);
    log(`tool describe(${name}) -> ${result}`);
    calls.push({ tool: 'describe', arguments: name, result });
    // The name's tokens are already in the context; the tool's answer goes after them.
    const note = ` (${result})`;
    ctx.fill(note, { bos: false });
    transcript += name + note;
  }
  return { text: transcript, calls, context_tokens: ctx.length };
});
