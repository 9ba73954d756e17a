/**
 * Text completion: fill a prompt, let the server's loop generate, stream the
 * text to the caller as it comes.
 *
 *   pie run text-completion.wasm -- '{"prompt": "Once upon a time", "max_tokens": 32}'
 */
import { inferlet, Model } from '@pie/inferlet';

interface Input {
  prompt: string;
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  seed?: number;
  stop?: string[];
}

export const run = inferlet<Input>((input) => {
  const ctx = Model.load().newContext().fill(input.prompt);
  const { text, finish_reason, usage } = ctx
    .generate({
      sampling: { temperature: input.temperature ?? 0, top_p: input.top_p, seed: input.seed },
      max_tokens: input.max_tokens ?? 64,
      stop: input.stop,
      stream: true,
    })
    .result();
  return { text, finish_reason, usage };
});
