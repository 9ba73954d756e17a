/**
 * The whole engine (scheduler, paged KV, chunked prefill, driver) against the
 * reference forward pass: each greedy token is the argmax of the reference
 * logits over everything before it, for architectures whose attention differs.
 */
import { describe, expect, it } from 'vitest';
import { referenceForward } from '../drivers/reference/forward.ts';
import { argmax } from '../src/engine/sampler.ts';
import type { RandomModelSpec } from '../src/model/random.ts';
import { greedy, randomModelDir, SMALL_SPEC, testEngine } from './helpers.ts';

const base: RandomModelSpec = { ...SMALL_SPEC, vocabSize: 300 };

const specs: [string, RandomModelSpec][] = [
  ['Mistral with a sliding window of 5', { ...base, architecture: 'MistralForCausalLM', slidingWindow: 5 }],
  ['Qwen3 with q/k norm', { ...base, architecture: 'Qwen3ForCausalLM', headDim: 16 }],
  ['Qwen2 with biases and a tied head', { ...base, architecture: 'Qwen2ForCausalLM', tieWordEmbeddings: true }],
];

describe.each(specs)('greedy generation through the engine matches the reference: %s', (_, spec) => {
  it('token by token, with the prompt prefilled in chunks', async () => {
    const dir = randomModelDir(spec, 9);
    const engine = await testEngine(dir, { numPages: 32, pageSize: 4, maxTokensPerStep: 5 });
    const prompt = Array.from({ length: 13 }, (_, i) => (i * 37 + 5) % 300);
    const r = await greedy(engine, prompt, 8);
    const seq = [...prompt];
    for (const token of r.tokens) {
      const logits = referenceForward(engine.model.config, engine.model.weights, seq);
      expect(token).toBe(argmax(logits[logits.length - 1]!));
      seq.push(token);
    }
  });
});
