/** Greedy generation through the SDK's generate(): the host runs the loop. */
import { inferlet, Model } from '@pie/inferlet';
export const run = inferlet<{ prompt: number[]; max_tokens: number }>(({ prompt, max_tokens }) => {
  const r = Model.load().newContext().fill(prompt).generate({ sampling: { temperature: 0 }, max_tokens, stop_token_ids: [] }).result();
  return { tokens: r.tokens.length };
});
