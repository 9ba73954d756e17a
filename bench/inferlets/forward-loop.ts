/** Greedy generation as a step-by-step forward() loop: one host round trip per token. */
import { inferlet, Model } from '@pie/inferlet';
export const run = inferlet<{ prompt: number[]; max_tokens: number }>(({ prompt, max_tokens }) => {
  const ctx = Model.load().newContext();
  let pending = prompt;
  const out: number[] = [];
  while (out.length < max_tokens) {
    const t = ctx.sample({ temperature: 0 }, { tokens: pending }).token;
    out.push(t);
    pending = [t];
  }
  return { tokens: out.length };
});
