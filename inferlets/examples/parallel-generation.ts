/**
 * Parallel generation: the prompt is prefilled once, then N forks share its
 * KV pages and decode at the same time, in the same engine batches.
 *
 *   pie run parallel-generation.wasm -- '{"prompt": "Once upon a time", "n": 4}'
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
  const n = input.n ?? 4;
  // Start every generation before waiting on any: they decode together.
  const generations = Array.from({ length: n }, (_, i) =>
    root.fork().generate({
      sampling: { temperature: input.temperature ?? 0.8, seed: (input.seed ?? 1) + i },
      max_tokens: input.max_tokens ?? 32,
    }),
  );
  return { choices: generations.map((g, index) => ({ index, text: g.text() })) };
});
