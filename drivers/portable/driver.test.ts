import { describe, expect, it } from 'vitest';
import { randomModelDir, testEngine } from '../../test/helpers.ts';
import { buildBatch } from '../../src/engine/batch-builder.ts';
import type { PortableDriver } from './driver.ts';
import type { Context } from '../../src/engine/index.ts';
import { headOfProbs, type HeadInputs, type HeadOutputs } from '../driver.ts';
import { HEAD_DRAWS, HEAD_SIZE } from '../../src/engine/sampling.ts';
import { Rng } from '../../src/util/rng.ts';

/** Head inputs with no adjustments and no min-p, random uniforms, and these rows' full distributions. */
function plainHead(S: number, fullRows: number[], seed = 1): HeadInputs {
  const rng = new Rng(seed);
  return { adjustWidth: 1, adjustIds: new Int32Array(S), adjustValues: new Float32Array(S), minP: new Float32Array(S), uniforms: Float64Array.from({ length: S * HEAD_DRAWS }, () => rng.next()), fullRows: Int32Array.from(fullRows) };
}

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
      return { ...b, needLogits, head: needLogits ? plainHead(3, [0, 1, 2]) : null };
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

  it('computes the sampling head in the graph as the definition does on the distribution it returns', async () => {
    const engine = await testEngine(randomModelDir(), { numPages: 64 });
    const driver = engine.driver as PortableDriver;
    const V = engine.model.config.vocabSize;
    const H = Math.min(HEAD_SIZE, V);
    const S = 6;
    const b = buildBatch([{ pageTable: [3], pastLen: 0, tokens: [1, 2, 3, 4, 5, 6], numSample: S }], 16, 64, { numHeads: 4, numKvHeads: 2 });
    b.invTemperature.set([1.25, 1, 0.5, 2, 1.25, 1.25]);
    const head = plainHead(S, [0, 1, 2, 3, 4, 5], 7);
    // Row 1: +100 on token 9 (certain, not an overflow) and -3 on token 2; row 2: min-p 0.2; row 3: a mask of 40 tokens.
    head.adjustWidth = 2;
    head.adjustIds = new Int32Array(2 * S);
    head.adjustValues = new Float32Array(2 * S);
    head.adjustIds.set([9, 2], 2);
    head.adjustValues.set([100, -3], 2);
    head.minP[2] = 0.2;
    const W = (b.maskWords = Math.ceil(V / 32));
    b.tokenMask = new Uint32Array(S * W).fill(0xffffffff);
    b.tokenMask.fill(0, 3 * W, 4 * W);
    b.tokenMask.fill(0xff, 3 * W, 3 * W + 5);
    const plain = await driver.run({ ...b, needLogits: true, maskWords: 0, tokenMask: new Uint32Array(0) });
    const out = await driver.run({ ...b, needLogits: false, head });
    const probs = (r: number) => out.probs!.subarray(r * V, (r + 1) * V);
    expect(probs(1)[9]).toBeCloseTo(1, 6);
    expect(probs(2).filter((x) => x > 0).length).toBeLessThan(V);
    expect(probs(3).filter((x) => x > 0).length).toBe(40);
    let tailDraws = 0;
    for (let r = 0; r < S; r++) {
      // The distribution itself: a softmax of the logits at the row's temperature (row 0 exactly so, up to float32).
      if (r === 0 || r === 4 || r === 5) {
        const l = plain.logits!.subarray(r * V, (r + 1) * V);
        const m = Math.max(...l);
        const z = l.reduce((a, x) => a + Math.exp((x - m) * 1.25), 0);
        expect(probs(r)[7]).toBeCloseTo(Math.exp((l[7]! - m) * 1.25) / z, 6);
      }
      const want: HeadOutputs = { ids: new Int32Array(H), p: new Float32Array(H), drawToken: new Int32Array(HEAD_DRAWS), draws: new Float64Array(1 + 3 * HEAD_DRAWS) };
      headOfProbs(probs(r), head.uniforms.subarray(r * HEAD_DRAWS, (r + 1) * HEAD_DRAWS), want, 0);
      expect(out.head!.ids.subarray(r * H, (r + 1) * H)).toEqual(want.ids);
      expect(out.head!.p.subarray(r * H, (r + 1) * H)).toEqual(want.p);
      const D = 1 + 3 * HEAD_DRAWS;
      const got = out.head!.draws.subarray(r * D, (r + 1) * D);
      expect(got[0]).toBe(want.draws[0]); // the tail's weight, exactly
      for (let j = 0; j < HEAD_DRAWS; j++) {
        const pick = Math.floor(head.uniforms[r * HEAD_DRAWS + j]! * (want.draws[0]! + want.p.reduce((a, x) => a + Math.floor(x * 2 ** 40), 0)));
        if (pick < want.p.reduce((a, x) => a + Math.floor(x * 2 ** 40), 0)) continue; // landed in the head: the draw is not used
        tailDraws++;
        expect(out.head!.drawToken[r * HEAD_DRAWS + j]).toBe(want.drawToken[j]);
        expect(got[1 + j]).toBe(want.draws[1 + j]); // weight before it, exactly
        expect(got[1 + HEAD_DRAWS + j]).toBe(want.draws[1 + HEAD_DRAWS + j]); // its weight
        expect(Math.abs(got[1 + 2 * HEAD_DRAWS + j]! - want.draws[1 + 2 * HEAD_DRAWS + j]!)).toBeLessThanOrEqual(255 * 2 ** -24 * want.draws[1 + 2 * HEAD_DRAWS + j]! + 1e-12);
      }
    }
    expect(tailDraws).toBeGreaterThan(3);
    await engine.close();
  });

  it('starts a new worker over the same KV pool when its worker dies: the work in flight runs again, other contexts keep their state', async () => {
    const engine = await testEngine(randomModelDir(), { numPages: 64 });
    const driver = engine.driver as PortableDriver;
    // A context computed before the crash, idle through it.
    const kept = engine.createContext();
    engine.append(kept, [1, 5, 9, 13, 17, 21]);
    await engine.forward(kept, { numLogits: 0 });
    const greedy = (ctx: Context, maxTokens: number) => engine.generate(ctx, { sampling: { temperature: 0 }, maxTokens, ignoreEos: true });
    const ctx = engine.createContext();
    engine.append(ctx, [1, 2, 3]);
    const gen = greedy(ctx, 40);
    while (engine.numSteps < 3) await new Promise((r) => setTimeout(r, 1));
    driver.crashAfterNextRun();
    const r = await gen.result;
    expect(engine.numDriverRestarts).toBe(1); // it failed in its step, and ran again
    // It went on from where it was: the same tokens as a run that never crashed.
    const again = engine.createContext();
    engine.append(again, [1, 2, 3]);
    const reference = await greedy(again, 40).result;
    expect(r.finishReason).toBe('length');
    expect(r.tokens).toEqual(reference.tokens);
    engine.release(ctx);
    engine.release(again);
    // The kept context goes on from its KV, not recomputed: the same tokens as a fresh context computing it all.
    const computed = kept.numComputed;
    const going = await greedy(kept, 5).result;
    expect(computed).toBe(6);
    const fresh = engine.createContext();
    engine.append(fresh, [1, 5, 9, 13, 17, 21]);
    const expected = await greedy(fresh, 5).result;
    expect(going.tokens).toEqual(expected.tokens);
    expect(going.cachedTokens).toBe(0); // nothing came from the prefix cache: the kept KV was used as it was
    engine.release(kept);
    engine.release(fresh);
  });

  it('fails work whose step loses the driver twice in a row (a batch that kills its worker is not run for ever)', async () => {
    const engine = await testEngine(randomModelDir(), { numPages: 64 });
    const driver = engine.driver as PortableDriver;
    const ctx = engine.createContext();
    engine.append(ctx, [1, 2, 3]);
    const gen = engine.generate(ctx, { sampling: { temperature: 0 }, maxTokens: 100_000, ignoreEos: true });
    while (engine.numSteps < 2) await new Promise((r) => setTimeout(r, 1));
    driver.crashAfterNextRun();
    while (driver['failure'] === null) await new Promise((r) => setTimeout(r, 1));
    driver.crashAfterNextRun(); // its successor dies after its first run: the step run again
    const r = await gen.result;
    expect(engine.numDriverRestarts).toBe(2);
    expect(r.finishReason).toBe('error');
    expect(r.error!.message).toMatch(/driver worker exited/);
    engine.release(ctx);
    expect(engine.kv.pool.numInUse).toBe(0);
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
