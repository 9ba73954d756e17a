import { beforeEach, describe, expect, it } from 'vitest';
import { headOfRows, maskRow } from '../../drivers/driver.ts';
import { argmax, logSumExp, Sampler, TokenHistory, topK } from './sampler.ts';
import { HEAD_DRAWS, headRow } from './sampling.ts';

const row = (...v: number[]) => Float32Array.from(v);

/** Host processing of full logits, the full distribution the driver returns, or its head (the full row when the head cannot decide). */
type Path = 'logits' | 'row' | 'head';
let path: Path = 'logits';

function sampleOnce(s: Sampler, logits: number[], history?: TokenHistory, mask?: Uint32Array): number {
  if (path === 'logits') return s.sample(Float32Array.from(logits), history, mask).token;
  // What a driver does with a head row: mask, adjustments, temperature, min-p.
  const V = logits.length;
  const l = Float32Array.from(logits);
  if (mask) maskRow(l, mask, -Infinity);
  const adjustments = s.adjustments(V, history);
  const A = Math.max(1, adjustments.size);
  const inputs = { adjustWidth: A, adjustIds: new Int32Array(A), adjustValues: new Float32Array(A), minP: Float32Array.of(s.params.minP ?? 0), uniforms: Float64Array.from(s.nextUniforms(HEAD_DRAWS)), fullRows: Int32Array.of(0) };
  [...adjustments].forEach(([t, v], i) => ((inputs.adjustIds[i] = t), (inputs.adjustValues[i] = v)));
  const { probs, head } = headOfRows(l, V, Float32Array.of(s.invTemperature), inputs);
  if (path === 'row') return s.sampleRow(probs).token;
  return (s.sampleHead(headRow(head, 0, V)) ?? s.sampleRow(probs)).token;
}

function counts(params: ConstructorParameters<typeof Sampler>[0], logits: number[], n = 2000, history?: TokenHistory): Map<number, number> {
  const s = new Sampler({ seed: 7, ...params });
  const out = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const t = sampleOnce(s, logits, history);
    out.set(t, (out.get(t) ?? 0) + 1);
  }
  return out;
}

for (const p of ['logits', 'row', 'head'] as const) {
  describe(`stochastic sampling from ${p}`, () => {
    beforeEach(() => {
      path = p;
    });

    it('repeats exactly with the same seed and differs with another', () => {
      const logits = Array.from({ length: 500 }, (_, i) => Math.sin(i) * 2);
      const draw = (seed: number) => {
        const s = new Sampler({ temperature: 1, seed });
        return Array.from({ length: 50 }, () => sampleOnce(s, logits));
      };
      expect(draw(42)).toEqual(draw(42));
      expect(draw(42)).not.toEqual(draw(43));
    });

    it('samples in proportion to the softmax at the temperature', () => {
      const c = counts({ temperature: 1 }, [Math.log(1), Math.log(3)], 4000);
      const share = (c.get(1) ?? 0) / 4000;
      expect(share).toBeGreaterThan(0.7);
      expect(share).toBeLessThan(0.8);
      const cold = counts({ temperature: 0.5 }, [Math.log(1), Math.log(3)], 4000);
      expect((cold.get(1) ?? 0) / 4000).toBeGreaterThan(0.85);
    });

    it('keeps only the k most likely tokens with top-k, ties to the lower id', () => {
      expect([...counts({ temperature: 1, topK: 2 }, [1, 2, 3, 0]).keys()].sort()).toEqual([1, 2]);
      expect([...counts({ temperature: 1, topK: 2 }, [1, 3, 3, 3]).keys()].sort()).toEqual([1, 2]);
    });

    it('keeps the smallest set reaching p with top-p, also after top-k', () => {
      // probabilities ~ 0.64, 0.24, 0.09, 0.03
      expect([...counts({ temperature: 1, topP: 0.8 }, [3, 2, 1, 0]).keys()].sort()).toEqual([0, 1]);
      expect([...counts({ temperature: 1, topP: 0.5 }, [3, 2, 1, 0]).keys()].sort()).toEqual([0]);
      // top-3 renormalised: ~0.66, 0.25, 0.09
      expect([...counts({ temperature: 1, topK: 3, topP: 0.9 }, [3, 2, 1, 0]).keys()].sort()).toEqual([0, 1]);
      expect([...counts({ temperature: 1, topK: 3, topP: 0.95 }, [3, 2, 1, 0]).keys()].sort()).toEqual([0, 1, 2]);
    });

    it('drops tokens below min-p of the best', () => {
      expect([...counts({ temperature: 1, minP: 0.3 }, [3, 2, 1, 0]).keys()].sort()).toEqual([0, 1]);
    });

    it('applies bias, penalties and a mask', () => {
      expect([...counts({ temperature: 0.1, logitBias: { 0: 10 } }, [0, 5, 1]).keys()]).toEqual([0]);
      const h = new TokenHistory();
      h.addOutput(1);
      expect([...counts({ temperature: 0.1, presencePenalty: 3, frequencyPenalty: 2 }, [0, 5, 1], 500, h).keys()]).toEqual([2]);
      const s = new Sampler({ temperature: 1, seed: 1 });
      for (let i = 0; i < 200; i++) expect(sampleOnce(s, [0, 5, 1], undefined, Uint32Array.of(0b101))).not.toBe(1);
    });

    it('handles a 32k vocabulary with a long flat tail', () => {
      // The peak holds ~80% of the mass, the 32k-token tail the rest.
      const logits = Array.from({ length: 32000 }, (_, i) => (i === 77 ? 12 : Math.sin(i)));
      // (Fewer draws where the test computes the driver's part in JavaScript.)
      const n = path === 'logits' ? 400 : 200;
      expect([...counts({ temperature: 1, topP: 0.5 }, logits, n / 2).keys()]).toEqual([77]);
      const c = counts({ temperature: 1 }, logits, n);
      expect(c.get(77)! / n).toBeGreaterThan(0.7);
      expect(c.get(77)! / n).toBeLessThan(0.9);
      expect(c.size).toBeGreaterThan(15);
    });
  });
}

describe('Sampler', () => {
  it('picks the largest logit when greedy', () => {
    expect(new Sampler({ temperature: 0 }).sample(row(0.1, 3, -1, 2.9)).token).toBe(1);
  });

  it('applies logit bias, and a mask that forbids tokens', () => {
    expect(new Sampler({ temperature: 0, logitBias: { 0: 10 } }).sample(row(0, 5, 1)).token).toBe(0);
    const mask = Uint32Array.of(0b101);
    expect(new Sampler({ temperature: 0 }).sample(row(0, 5, 1), undefined, mask).token).toBe(2);
  });

  it('applies presence and frequency penalties to output tokens and repetition penalty to all seen tokens', () => {
    const h = new TokenHistory();
    h.addPrompt([2]);
    h.addOutput(1);
    h.addOutput(1);
    const l = row(0, 5, 4);
    new Sampler({ temperature: 0, presencePenalty: 1, frequencyPenalty: 1 }).sample(l, h);
    expect(Array.from(l)).toEqual([0, 2, 4]);
    const l2 = row(0, 5, 4);
    new Sampler({ temperature: 0, repetitionPenalty: 2 }).sample(l2, h);
    expect(Array.from(l2)).toEqual([0, 2.5, 2]);
  });

  it('returns log-probabilities of the chosen token and the top alternatives', () => {
    const r = new Sampler({ temperature: 0, logprobs: 2 }).sample(row(Math.log(0.5), Math.log(0.3), Math.log(0.2)));
    expect(r.token).toBe(0);
    expect(r.logprob).toBeCloseTo(Math.log(0.5), 5);
    expect(r.top!.map((t) => t.token)).toEqual([0, 1]);
    expect(r.top![1]!.logprob).toBeCloseTo(Math.log(0.3), 5);
  });

  it('reports a fully masked row instead of sampling garbage', () => {
    expect(() => new Sampler({ temperature: 1 }).sample(row(1, 2), undefined, Uint32Array.of(0))).toThrow(/every token is masked/);
  });
});

describe('sampling helpers', () => {
  it('argmax prefers the first of equal maxima', () => {
    expect(argmax(row(1, 3, 3))).toBe(1);
  });

  it('topK orders by value, ties by lower index', () => {
    expect(topK(row(1, 5, 3, 5, 0), 3)).toEqual([1, 3, 2]);
    expect(topK(row(2, 1), 5)).toEqual([0, 1]);
  });

  it('logSumExp is stable for large logits', () => {
    expect(logSumExp(row(1000, 1000))).toBeCloseTo(1000 + Math.log(2), 4);
  });
});
