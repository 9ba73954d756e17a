/**
 * Batching must never change an answer: a greedy generation gives exactly the
 * same tokens alone, beside 15 others, with the prefix cache on or off, and
 * from a forked context.
 */
import { describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/index.ts';
import { quantizationFor, type WeightQuantization } from '../src/model/config.ts';
import { greedy, haveStories, randomModelDir, storiesModelDir, testEngine } from './helpers.ts';

// Quantized weights too: MatMulNBits quantizes each row's activations on its own, so a row's answer must not depend on its neighbours.
const models: [string, () => string, WeightQuantization | null][] = [
  ['tiny random model', () => randomModelDir(), null],
  ['tiny random model, 8-bit weights', () => randomModelDir(), quantizationFor('q8')],
];
if (haveStories) models.push(['stories260K', storiesModelDir, null], ['stories260K, 4-bit weights', storiesModelDir, quantizationFor('q4')]);

/** 16 prompts of different lengths; groups of them share long prefixes, so the prefix cache has work to do. */
function prompts(vocab: number): number[][] {
  const shared = Array.from({ length: 37 }, (_, i) => 1 + ((i * 29) % (vocab - 1)));
  return Array.from({ length: 16 }, (_, i) => {
    const own = Array.from({ length: 2 + i * 3 }, (_, j) => 1 + ((j * 13 + i * 7) % (vocab - 1)));
    return i % 2 === 0 ? [...shared, ...own] : [1, ...own];
  });
}

async function alone(engine: Engine, ps: number[][], maxTokens: (i: number) => number) {
  const out: number[][] = [];
  for (const [i, p] of ps.entries()) out.push((await greedy(engine, p, maxTokens(i))).tokens);
  return out;
}

describe.each(models)('batch invariance on the %s', (_, dir, quantize) => {
  const maxTokens = (i: number) => 8 + i;

  for (const prefixCaching of [true, false]) {
    it(`16 concurrent greedy generations equal each one alone (prefix cache ${prefixCaching ? 'on' : 'off'})`, async () => {
      const engine = await testEngine(dir(), { numPages: 256, pageSize: 16, prefixCaching, maxTokensPerStep: 96, quantize });
      const ps = prompts(engine.model.config.vocabSize);
      const solo = await alone(engine, ps, maxTokens);
      const together = await Promise.all(ps.map((p, i) => greedy(engine, p, maxTokens(i))));
      together.forEach((r, i) => expect(r.tokens, `prompt ${i}`).toEqual(solo[i]));
      if (prefixCaching) expect(engine.kv.prefixCache.numHits).toBeGreaterThan(0);
      else expect(engine.kv.prefixCache.numHits).toBe(0);
    });
  }

  it('forked contexts generate what fresh contexts with the same tokens generate', async () => {
    const engine = await testEngine(dir(), { numPages: 256, pageSize: 16, prefixCaching: false, quantize });
    const ps = prompts(engine.model.config.vocabSize);
    const parent = engine.createContext();
    engine.append(parent, ps[0]!);
    await engine.forward(parent);
    const suffixes = [[5], [9, 4], [17], [3, 3, 3]];
    const kids = suffixes.map((s) => {
      const k = engine.fork(parent);
      engine.append(k, s);
      return k;
    });
    const forked = await Promise.all(kids.map((k) => engine.generate(k, { sampling: { temperature: 0 }, maxTokens: 12, ignoreEos: true }).result));
    for (const k of [parent, ...kids]) engine.release(k);
    const fresh = await alone(engine, suffixes.map((s) => [...ps[0]!, ...s]), () => 12);
    forked.forEach((r, i) => expect(r.tokens).toEqual(fresh[i]));
  });
});

describe('the greedy fast path (no logits fetched)', () => {
  it('picks the same tokens, with the same log-probabilities, as sampling on the host from full logits', async () => {
    const engine = await testEngine(randomModelDir(), { numPages: 64 });
    const p = prompts(engine.model.config.vocabSize)[3]!;
    const fast = await greedy(engine, p, 24, { sampling: { temperature: 0, logprobs: 0 } });
    const host = await greedy(engine, p, 24, { sampling: { temperature: 0, logprobs: 3 } });
    expect(fast.tokens).toEqual(host.tokens);
    fast.logprobs!.forEach((lp, i) => {
      expect(lp.top).toBeUndefined();
      expect(lp.logprob).toBeCloseTo(host.logprobs![i]!.logprob, 4);
      expect(host.logprobs![i]!.top![0]!.token).toBe(lp.token);
    });
  });
});

describe('preemption on the real driver', () => {
  it('recomputes preempted sequences to exactly the tokens they get alone', async () => {
    const engine = await testEngine(randomModelDir(), { numPages: 14, pageSize: 8, prefixCaching: false });
    const ps = prompts(engine.model.config.vocabSize).slice(0, 6).map((p) => p.slice(0, 20));
    const solo = await alone(engine, ps, () => 24);
    const together = await Promise.all(ps.map((p) => greedy(engine, p, 24)));
    together.forEach((r, i) => expect(r.tokens, `prompt ${i}`).toEqual(solo[i]));
    expect(engine.scheduler.numPreemptions).toBeGreaterThan(0);
  });
});
