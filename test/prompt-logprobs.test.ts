/**
 * Prompt log-probabilities (Engine.promptLogprobs): what lm-evaluation-harness
 * reads to score text. They must equal the reference forward pass's
 * log-softmax, whatever the prefix cache holds and however the prompt is split
 * into prefill chunks.
 */
import { describe, expect, it } from 'vitest';
import { referenceForward } from '../drivers/reference/forward.ts';
import type { Engine } from '../src/engine/index.ts';
import { haveStories, logSoftmax, SKIP_STORIES, storiesModelDir, testEngine } from './helpers.ts';

const TEXT = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her dog Max.';

async function score(engine: Engine, tokens: number[], top: number) {
  const ctx = engine.createContext();
  try {
    engine.append(ctx, tokens);
    return await engine.promptLogprobs(ctx, top);
  } finally {
    engine.release(ctx);
  }
}

describe.skipIf(!haveStories)(`prompt log-probabilities on stories260K ${SKIP_STORIES}`, () => {
  it('equal the reference log-softmax for every token after the first, with the top alternatives in order', async () => {
    const engine = await testEngine(storiesModelDir(), { numPages: 64 });
    const tokens = [1, ...engine.model.tokenizer.encode(TEXT)];
    const ref = referenceForward(engine.model.config, engine.model.weights, tokens).map(logSoftmax);
    const scores = await score(engine, tokens, 3);
    expect(scores).toHaveLength(tokens.length);
    expect(scores[0]).toBeNull();
    for (let i = 1; i < tokens.length; i++) {
      const s = scores[i]!;
      expect(s.token).toBe(tokens[i]);
      expect(Math.abs(s.logprob - ref[i - 1]![tokens[i]!]!)).toBeLessThanOrEqual(1e-4);
      const want = [...ref[i - 1]!.keys()].sort((a, b) => ref[i - 1]![b]! - ref[i - 1]![a]!).slice(0, 3);
      expect(s.top.map((t) => t.token)).toEqual(want);
      expect(s.rank).toBe(ref[i - 1]!.filter((x) => x >= ref[i - 1]![tokens[i]!]!).length);
      s.top.forEach((t) => expect(Math.abs(t.logprob - ref[i - 1]![t.token]!)).toBeLessThanOrEqual(1e-4));
    }
  });

  it('are the same with the prefix cache on (and warm) or off, and with the prompt split over many prefill chunks', async () => {
    const cached = await testEngine(storiesModelDir(), { numPages: 64, pageSize: 4 });
    const uncached = await testEngine(storiesModelDir(), { numPages: 64, pageSize: 4, prefixCaching: false });
    const chunked = await testEngine(storiesModelDir(), { numPages: 64, pageSize: 4, maxTokensPerStep: 5 });
    const tokens = [1, ...cached.model.tokenizer.encode(TEXT)];
    // Warm the cache with the same prompt, so its pages are there to be found.
    const warm = cached.createContext();
    cached.append(warm, tokens);
    await cached.generate(warm, { sampling: { temperature: 0 }, maxTokens: 1 }).result;
    cached.release(warm);
    const a = await score(cached, tokens, 2);
    const b = await score(uncached, tokens, 2);
    const c = await score(chunked, tokens, 2);
    expect(a).toEqual(b);
    expect(c).toEqual(b);
    expect(chunked.stats().steps).toBeGreaterThanOrEqual(Math.ceil(tokens.length / 5));
  });

  it('score the first pending token from the computed one before it, and leave the context ready to generate', async () => {
    const engine = await testEngine(storiesModelDir(), { numPages: 64 });
    const tokens = [1, ...engine.model.tokenizer.encode(TEXT)];
    const whole = await score(engine, tokens, 0);
    const ctx = engine.createContext();
    try {
      engine.append(ctx, tokens.slice(0, 10));
      await engine.forward(ctx, { numLogits: 0 });
      engine.append(ctx, tokens.slice(10));
      const tail = await engine.promptLogprobs(ctx, 0);
      expect(tail).toEqual(whole.slice(10));
      expect(ctx.numPending).toBe(0);
      expect(await engine.promptLogprobs(ctx, 0)).toEqual([]);
      const r = await engine.generate(ctx, { sampling: { temperature: 0 }, maxTokens: 3, ignoreEos: true }).result;
      expect(r.tokens).toHaveLength(3);
    } finally {
      engine.release(ctx);
    }
  });

  it('run in the same batch as a generation going on beside them', async () => {
    const engine = await testEngine(storiesModelDir(), { numPages: 64 });
    const tokens = [1, ...engine.model.tokenizer.encode(TEXT)];
    const alone = await score(engine, tokens, 1);
    const ctx = engine.createContext();
    engine.append(ctx, [1]);
    const gen = engine.generate(ctx, { sampling: { temperature: 0 }, maxTokens: 20, ignoreEos: true });
    let shared = 0;
    engine.addStepListener((s) => void (shared += s.rows > 1 ? 1 : 0));
    const together = await score(engine, tokens, 1);
    await gen.result;
    engine.release(ctx);
    expect(together).toEqual(alone);
    expect(shared, 'steps that ran the scoring and the generation together').toBeGreaterThan(0);
  });
});
