/**
 * Best-of-n: sample n candidates in parallel from one prefilled prompt and
 * keep the one the model itself finds most likely (mean token log-probability).
 *
 *   pie run best-of-n.wasm -- '{"prompt": "Once upon a time", "n": 4}'
 */
import { inferlet, Model } from '@pie/inferlet';

interface Input {
  prompt: string;
  n?: number;
  max_tokens?: number;
  temperature?: number;
  seed?: number;
}

export const run = inferlet<Input>((input) => {
  const root = Model.load().newContext().fill(input.prompt);
  root.prefill();
  const generations = Array.from({ length: input.n ?? 4 }, (_, i) =>
    root.fork().generate({ sampling: { temperature: input.temperature ?? 1, seed: (input.seed ?? 7) + i }, max_tokens: input.max_tokens ?? 24, logprobs: 0 }),
  );
  const candidates = generations.map((g) => {
    const r = g.result();
    const mean = r.logprobs.reduce((s, l) => s + l.logprob, 0) / Math.max(1, r.logprobs.length);
    return { text: r.text, mean_logprob: mean };
  });
  const best = candidates.reduce((a, b) => (b.mean_logprob > a.mean_logprob ? b : a));
  return { best, candidates };
});
