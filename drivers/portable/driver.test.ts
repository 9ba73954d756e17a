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
