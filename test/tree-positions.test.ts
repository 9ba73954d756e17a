/**
 * Tree-shaped decoding on the real driver: siblings share a RoPE position and
 * do not see each other, so one context computes several branches at once
 * and each branch's logits are those of a context holding that branch alone.
 */
import { describe, expect, it } from 'vitest';
import { randomModelDir, SMALL_SPEC, testEngine } from './helpers.ts';

describe('chosen RoPE positions', () => {
  it('computes sibling branches in one context as if each were alone', async () => {
    const engine = await testEngine(randomModelDir(SMALL_SPEC, 4), { numPages: 32, pageSize: 4 });
    const prompt = [11, 22, 33, 44, 55];
    const alone = async (branch: number[]) => {
      const ctx = engine.createContext();
      engine.append(ctx, [...prompt, ...branch]);
      const { logits } = await engine.forward(ctx, { numLogits: branch.length });
      engine.release(ctx);
      return logits;
    };
    const [refD] = await alone([66]);
    const [refE, refEF] = await alone([77, 88]);

    const tree = engine.createContext();
    engine.append(tree, prompt);
    // index 5: D at position 5; index 6: E at position 5; index 7: F at position 6, after E.
    engine.append(tree, [66, 77, 88], [5, 5, 6]);
    const sees = (pos: number, key: number) => key < 5 || (pos === 7 && key === 6);
    const { logits } = await engine.forward(tree, { numLogits: 3, attend: sees });
    for (const [got, want] of [
      [logits[0]!, refD!],
      [logits[1]!, refE!],
      [logits[2]!, refEF!],
    ] as const) {
      let maxDiff = 0;
      for (let i = 0; i < want.length; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i]! - want[i]!));
      expect(maxDiff).toBeLessThan(1e-4);
    }
    // A generation after a chosen position continues from it.
    engine.truncate(tree, 7); // keep D, E
    const gen = await engine.generate(tree, { sampling: { temperature: 0 }, maxTokens: 2, ignoreEos: true }).result;
    expect(tree.ropePositions).toEqual([0, 1, 2, 3, 4, 5, 5, 6, 7]);
    expect(gen.tokens).toHaveLength(2);
    engine.release(tree);
  });

  it('refuses positions that do not match the tokens or the model', async () => {
    const engine = await testEngine(randomModelDir(SMALL_SPEC, 4), { numPages: 8, pageSize: 4 });
    const ctx = engine.createContext();
    expect(() => engine.append(ctx, [1, 2], [0])).toThrow(/1 positions for 2 tokens/);
    expect(() => engine.append(ctx, [1], [100000])).toThrow(/outside/);
    expect(ctx.length).toBe(0);
    engine.release(ctx);
  });
});
