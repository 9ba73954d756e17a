import { describe, expect, it } from 'vitest';
import { randomModelDir, testEngine } from '../../test/helpers.ts';
import { buildBatch } from '../../src/engine/batch-builder.ts';
import type { PortableDriver } from './driver.ts';

/** A long greedy generation on the tiny model, two steps under way. */
async function generating() {
  const engine = await testEngine(randomModelDir(), { numPages: 64 });
  const ctx = engine.createContext();
  engine.append(ctx, [1, 2, 3]);
  const gen = engine.generate(ctx, { sampling: { temperature: 0 }, maxTokens: 100_000, ignoreEos: true });
  while (engine.numSteps < 2) await new Promise((r) => setTimeout(r, 1));
  return { engine, ctx, gen, driver: engine.driver as PortableDriver };
}

describe('the portable driver', () => {
  it('takes both lanes to the worker: shared memory for greedy steps, messages for full rows', async () => {
    const engine = await testEngine(randomModelDir(), { numPages: 64 });
    const ctx = engine.createContext();
    engine.append(ctx, [1, 2, 3, 4]);
    const greedy = await engine.generate(ctx, { sampling: { temperature: 0 }, maxTokens: 6, ignoreEos: true }).result;
    engine.truncate(ctx, 4);
    const viaLogits = await engine.generate(ctx, { sampling: { temperature: 0, logprobs: 1 }, maxTokens: 6, ignoreEos: true }).result;
    expect(viaLogits.tokens).toEqual(greedy.tokens);
    engine.release(ctx);
  });

  it('applies token masks in the graph on both lanes: best, logits and probs over the allowed tokens only', async () => {
    const engine = await testEngine(randomModelDir(), { numPages: 64 });
    const driver = engine.driver as PortableDriver;
    const V = engine.model.config.vocabSize;
    const batch = (needLogits: boolean) => {
      const b = buildBatch([{ pageTable: [3], pastLen: 0, tokens: [1, 2, 3], numSample: 3 }], 16, 64, { numHeads: 4, numKvHeads: 2 });
      const W = (b.maskWords = Math.ceil(V / 32));
      b.tokenMask = new Uint32Array(3 * W).fill(0xffffffff);
      b.tokenMask.fill(0, W, 2 * W); // row 1: only tokens 40 and 77
      b.tokenMask[W + (40 >>> 5)]! |= 1 << (40 & 31);
      b.tokenMask[W + (77 >>> 5)]! |= 1 << (77 & 31);
      b.tokenMask.fill(0, 2 * W, 3 * W); // row 2: only token 5
      b.tokenMask[2 * W] = 1 << 5;
      return { ...b, needLogits, needProbs: needLogits };
    };
    const fast = await driver.run(batch(false));
    const full = await driver.run(batch(true));
    const plain = await driver.run({ ...buildBatch([{ pageTable: [3], pastLen: 0, tokens: [1, 2, 3], numSample: 3 }], 16, 64), needLogits: true });
    const row = (a: Float32Array, r: number) => a.subarray(r * V, (r + 1) * V);
    // Row 0 is unmasked: bit for bit what a batch without masks gives.
    expect(row(full.logits!, 0)).toEqual(row(plain.logits!, 0));
    expect(fast.best[0]).toBe(plain.best[0]);
    // Row 1: the better of its two tokens, its log-probability among the two, -Infinity elsewhere.
    const l = row(plain.logits!, 1);
    const better = l[40]! >= l[77]! ? 40 : 77;
    expect(fast.best[1]).toBe(better);
    expect(full.best[1]).toBe(better);
    expect(fast.bestLogprob[1]).toBeCloseTo(l[better]! - Math.log(Math.exp(l[40]!) + Math.exp(l[77]!)), 5);
    expect(row(full.logits!, 1).filter((x) => x !== -Infinity).length).toBe(2);
    expect(row(full.probs!, 1)[40]! + row(full.probs!, 1)[77]!).toBeCloseTo(1, 6);
    // Row 2: one token allowed, so it is certain.
    expect(fast.best[2]).toBe(5);
    expect(fast.bestLogprob[2]).toBeCloseTo(0, 6);
  });

  it('fails the work in flight, instead of hanging, when its worker dies', async () => {
    const { engine, ctx, gen, driver } = await generating();
    await driver['worker'].terminate();
    const r = await gen.result;
    expect(r.finishReason).toBe('error');
    expect(r.error!.message).toMatch(/driver worker exited/);
    engine.release(ctx);
    const again = engine.createContext();
    engine.append(again, [1]);
    await expect(engine.forward(again)).rejects.toThrow(/driver worker exited/);
    engine.release(again);
  });
});

describe('closing the portable driver', () => {
  it('lets a step in flight finish, then refuses new work', async () => {
    const { engine, ctx, gen, driver } = await generating();
    const oneToken = () => ({ ...buildBatch([{ pageTable: [63], pastLen: 0, tokens: [1], numSample: 1 }], 16, 64), needLogits: false });
    const inFlight = driver.run(oneToken());
    await engine.close();
    expect((await gen.result).finishReason).toBe('error');
    await expect(inFlight).resolves.toBeDefined();
    await expect(driver.run(oneToken())).rejects.toThrow(/driver closed/);
    engine.release(ctx);
  });
});
