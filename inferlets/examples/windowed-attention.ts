/**
 * Windowed attention with attention sinks, through per-token attention masks
 * on the step-level forward pass: every token sees the first `sinks` tokens
 * and the last `window` ones, nothing in between (StreamingLLM-style).
 *
 *   pie run windowed-attention.wasm -- '{"prompt": "Once upon a time", "window": 16, "sinks": 4}'
 */
import { inferlet, Model, windowWithSinks } from '@pie/inferlet';

interface Input {
  prompt: string;
  window?: number;
  sinks?: number;
  max_tokens?: number;
}

export const run = inferlet<Input>((input) => {
  const model = Model.load();
  const window = input.window ?? 16;
  const sinks = input.sinks ?? 4;
  const prompt = model.encode(input.prompt, { bos: true });
  const ctx = model.newContext();
  const eos = new Set(model.info.eosTokenIds);
  const masks = (from: number, count: number) => Array.from({ length: count }, (_, i) => windowWithSinks(from + i, window, sinks));
  // The prompt's own tokens are computed under the same mask.
  let next = ctx.sample({ temperature: 0 }, { tokens: prompt, attention: masks(0, prompt.length) }).token;
  let position = prompt.length; // where `next` goes
  const out: number[] = [];
  while (out.length < (input.max_tokens ?? 32) && !eos.has(next)) {
    out.push(next);
    next = ctx.sample({ temperature: 0 }, { tokens: [next], attention: masks(position++, 1) }).token;
  }
  return { text: model.decode(out), tokens: out };
});
