import { describe, expect, it } from 'vitest';
import { Rng } from '../util/rng.ts';
import { truncate, type Truncation } from './select-probs.ts';

/** The obvious definition: sort, then min-p, top-k, top-p. */
function reference(probs: Float32Array, t: Truncation): number[] {
  const max = Math.max(...probs);
  let order = [...probs.keys()].filter((i) => probs[i]! > 0 && probs[i]! >= t.minP * max).sort((a, b) => probs[b]! - probs[a]! || a - b);
  if (t.topK > 0) order = order.slice(0, t.topK);
  if (t.topP < 1) {
    const goal = t.topP * order.reduce((a, i) => a + probs[i]!, 0);
    let acc = 0;
    const out: number[] = [];
    for (const i of order) {
      out.push(i);
      acc += probs[i]!;
      if (acc >= goal) break;
    }
    order = out;
  }
  return order.sort((a, b) => a - b);
}

function distribution(rng: Rng, V: number, spread: number, ties: boolean): Float32Array {
  const p = new Float32Array(V);
  let z = 0;
  for (let i = 0; i < V; i++) z += p[i] = ties ? Math.floor(rng.next() * 6) + 1 : Math.exp(rng.normal() * spread);
  for (let i = 0; i < V; i++) p[i]! /= z;
  return p;
}

describe('truncate (bucketed top-k / top-p / min-p)', () => {
  it('keeps exactly the tokens a full sort would keep', () => {
    const rng = new Rng(11);
    const cases: Truncation[] = [
      { topK: 1, topP: 1, minP: 0 },
      { topK: 40, topP: 1, minP: 0 },
      { topK: 0, topP: 0.9, minP: 0 },
      { topK: 0, topP: 0.3, minP: 0 },
      { topK: 100, topP: 0.8, minP: 0 },
      { topK: 0, topP: 0.95, minP: 0.05 },
      { topK: 7, topP: 1, minP: 0.5 },
    ];
    for (let trial = 0; trial < 30; trial++) {
      const probs = distribution(rng, 3000, 0.5 + (trial % 5), trial % 7 === 0);
      for (const t of cases) {
        const mine = truncate(probs.slice(), t);
        const kept = mine.tokens ? [...mine.tokens].sort((a, b) => a - b) : null;
        const want = reference(probs, t);
        if (t.topK === 0 && t.topP >= 1) continue;
        // Floating-point sums may differ in the last place at the top-p boundary: allow one token of difference there.
        if (t.topK > 0 && t.topP >= 1) expect(kept).toEqual(want);
        else expect(Math.abs(kept!.length - want.length)).toBeLessThanOrEqual(1);
        expect(kept!.slice(0, Math.min(kept!.length, want.length) - 1)).toEqual(want.slice(0, Math.min(kept!.length, want.length) - 1));
      }
    }
  });

  it('returns every candidate and its mass when nothing truncates', () => {
    const probs = Float32Array.of(0.5, 0.25, 0, 0.25);
    expect(truncate(probs, { topK: 0, topP: 1, minP: 0 })).toEqual({ tokens: null, mass: 1 });
    const r = truncate(probs.slice(), { topK: 0, topP: 1, minP: 0.6 });
    expect(r.tokens).toBeNull();
    expect(r.mass).toBe(0.5);
  });
});
