/** The real pretrained stories260K model, end to end through the portable driver. */
import { describe, expect, it } from 'vitest';
import { greedy, haveStories, SKIP_STORIES, storiesModelDir, testEngine } from './helpers.ts';

const PUBLISHED =
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.';
const FIRST_16 = [403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338];

describe.skipIf(!haveStories)(`stories260K ${SKIP_STORIES}`, () => {
  it('reproduces the published greedy text and reference token ids from BOS', async () => {
    const engine = await testEngine(storiesModelDir(), { numPages: 64 });
    const r = await greedy(engine, [1], 80);
    expect(r.tokens.slice(0, 16)).toEqual(FIRST_16);
    expect(r.text.startsWith(PUBLISHED)).toBe(true);
  });

  it('stops at a stop string that spans tokens, without emitting it', async () => {
    const engine = await testEngine(storiesModelDir(), { numPages: 64 });
    const r = await greedy(engine, [1], 60, { stop: ['Lily. She'] });
    expect(r.finishReason).toBe('stop');
    expect(r.stopReason).toBe('Lily. She');
    expect(r.text).toBe('Once upon a time, there was a little girl named ');
  });

  it('stops at a stop token id and reports it', async () => {
    const engine = await testEngine(storiesModelDir(), { numPages: 64 });
    const r = await greedy(engine, [1], 80, { ignoreEos: false, stopTokenIds: [298] });
    expect(r.finishReason).toBe('stop');
    expect(r.stopReason).toBe(298);
    expect(r.tokens).toEqual(FIRST_16.slice(0, 10));
    expect(r.text).toBe('Once upon a time, there was a little');
  });

  it('repeats a seeded sampled generation exactly', async () => {
    const engine = await testEngine(storiesModelDir(), { numPages: 64 });
    const run = async (seed: number) => {
      const ctx = engine.createContext();
      engine.append(ctx, engine.model.tokenizer.encode('Tom had a dog'));
      const r = await engine.generate(ctx, { sampling: { temperature: 1, topP: 0.9, seed }, maxTokens: 40, ignoreEos: true }).result;
      engine.release(ctx);
      return r.text;
    };
    const [a, b, c] = await Promise.all([run(7), run(7), run(8)]);
    expect(a).toBe(b);
    expect(a).not.toBe(c);
  });
});
