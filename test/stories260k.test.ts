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

  it('holds stop tokens and stop strings back until min_tokens are out, then stops at the next', async () => {
    const engine = await testEngine(storiesModelDir(), { numPages: 64 });
    // Greedy from BOS writes 298 ("little") as its 10th token: held back, the text goes another way.
    const held = await greedy(engine, [1], 40, { ignoreEos: false, stopTokenIds: [298], minTokens: 12 });
    expect(held.tokens.slice(0, 9)).toEqual(FIRST_16.slice(0, 9));
    expect(held.tokens[9]).not.toBe(298);
    expect(held.tokens.length).toBeGreaterThan(12);
    expect(held.tokens.slice(0, 12)).not.toContain(298);
    if (held.finishReason === 'stop') expect(held.tokens.at(-1)).toBe(298);
    // A stop string inside the first min_tokens tokens does not count; the same string later does.
    const text = await greedy(engine, [1], 80, { stop: ['Lily'], minTokens: 16 });
    expect(text.text.startsWith('Once upon a time, there was a little girl named Lily.')).toBe(true);
    expect(text.finishReason).toBe('stop');
    expect(text.tokens.length).toBeGreaterThan(16);
  });

  it('keeps the stop string in the text when asked', async () => {
    const engine = await testEngine(storiesModelDir(), { numPages: 64 });
    const r = await greedy(engine, [1], 60, { stop: ['Lily. She'], includeStopString: true });
    expect(r.finishReason).toBe('stop');
    expect(r.text).toBe('Once upon a time, there was a little girl named Lily. She');
  });

  it("keeps the stop token's own text too when asked, as vLLM does", async () => {
    const engine = await testEngine(storiesModelDir(), { numPages: 64 });
    const without = await greedy(engine, [1], 40, { ignoreEos: false, stopTokenIds: [298] });
    const withIt = await greedy(engine, [1], 40, { ignoreEos: false, stopTokenIds: [298], includeStopString: true });
    expect(withIt.finishReason).toBe('stop');
    expect(withIt.text).toBe(without.text + engine.model.tokenizer.decode([261, 298]).slice(engine.model.tokenizer.decode([261]).length));
    expect(withIt.text.length).toBeGreaterThan(without.text.length);
  });

  it('holds stop tokens back under min_tokens when a grammar constrains the text too', async () => {
    const engine = await testEngine(storiesModelDir(), { numPages: 64 });
    const grammar = await engine.grammars.compile({ type: 'regex', pattern: '[A-Za-z ,.]+' });
    // Token 298 is allowed by the grammar and is greedy's 10th token: held back, the generation goes on without an error.
    const r = await greedy(engine, [1], 20, { ignoreEos: false, stopTokenIds: [298], minTokens: 15, grammar });
    expect(r.error).toBeUndefined();
    expect(r.tokens.slice(0, 15)).not.toContain(298);
    expect(r.tokens.length).toBeGreaterThanOrEqual(15);
  });

  it('holds back stop tokens under min_tokens with sampling and with logprobs too', async () => {
    const engine = await testEngine(storiesModelDir(), { numPages: 64 });
    for (const sampling of [{ temperature: 0.8, seed: 3 }, { temperature: 0, logprobs: 1 }, { temperature: 0.8, seed: 3, logprobs: 0 }]) {
      const r = await greedy(engine, [1], 30, { sampling, ignoreEos: false, stopTokenIds: [298, 261], minTokens: 25 });
      expect(r.tokens.slice(0, 25).filter((t) => t === 298 || t === 261)).toEqual([]);
      expect(r.tokens.length).toBeGreaterThanOrEqual(25);
    }
  });
});
