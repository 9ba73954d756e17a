/**
 * A long system prompt prefilled once and kept as a named KV snapshot: later
 * invocations open the snapshot and only compute their own question.
 *
 *   pie run cached-system-prompt.wasm -- '{"system": "...", "question": "..."}'
 */
import { Context, inferlet, Model, PieError } from '@pie/inferlet';

interface Input {
  system: string;
  question: string;
  max_tokens?: number;
}

/** A short, stable name for the snapshot of a system prompt (FNV-1a). */
function snapshotName(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return `system-${h.toString(16)}-${text.length}`;
}

export const run = inferlet<Input>((input) => {
  const model = Model.load();
  const name = snapshotName(input.system);
  let system: Context;
  let cached = true;
  try {
    system = Context.open(model, name);
  } catch (err) {
    if (!(err instanceof PieError && err.code === 'not-found')) throw err;
    cached = false;
    system = model.newContext().fill(input.system);
    system.prefill();
    system.save(name);
  }
  const ctx = system.fork().fill(input.question, { bos: false });
  system.release();
  const r = ctx.generate({ sampling: { temperature: 0 }, max_tokens: input.max_tokens ?? 32 }).result();
  return { cached, snapshot: name, text: r.text, usage: r.usage };
});
