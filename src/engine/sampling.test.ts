import { describe, expect, it } from 'vitest';
import { headOfProbs, type HeadOutputs } from '../../drivers/driver.ts';
import { Rng } from '../util/rng.ts';
import { drawFromHead, drawFromRow, HEAD_DRAWS, HEAD_SIZE, headRow, likeliest, weightOf, type Truncation } from './sampling.ts';

/** A row of probabilities: log-normal weights of the given spread, optionally with ties and zeros. */
function distribution(rng: Rng, V: number, spread: number, opts: { ties?: boolean; zeros?: number } = {}): Float32Array {
  const p = new Float32Array(V);
  let z = 0;
  for (let i = 0; i < V; i++) {
    if (opts.zeros && rng.next() < opts.zeros) continue;
    z += p[i] = opts.ties ? Math.floor(rng.next() * 4) + 1 : Math.exp(rng.normal() * spread);
  }
  for (let i = 0; i < V; i++) p[i]! /= z;
  return p;
}

/** The head a driver returns for `p` and these uniforms. */
function headFor(p: Float32Array, uniforms: number[]) {
  const H = Math.min(HEAD_SIZE, p.length);
  const out: HeadOutputs = { ids: new Int32Array(H), p: new Float32Array(H), drawToken: new Int32Array(uniforms.length), draws: new Float64Array(1 + 3 * uniforms.length) };
  headOfProbs(p, uniforms, out, 0);
  return headRow(out, 0, p.length);
}

/** The definition read literally: sort, keep top-k, weigh, find the nucleus, draw in its order with rejection. */
function literal(p: Float32Array, t: Truncation, u: (j: number) => number): number {
  const ranked = [...p.keys()].filter((i) => p[i]! > 0).sort((a, b) => p[b]! - p[a]! || a - b);
  const kept = t.topK > 0 ? ranked.slice(0, t.topK) : ranked;
  const w = (i: number) => weightOf(p[i]!);
  const W = kept.reduce((a, i) => a + w(i), 0);
  const inNucleus = new Set<number>();
  let above = 0;
  for (const i of kept) {
    if (!(t.topP >= 1 || above < t.topP * W)) break;
    inNucleus.add(i);
    above += w(i);
  }
  const order = [...kept.slice(0, HEAD_SIZE), ...kept.slice(HEAD_SIZE).sort((a, b) => a - b)];
  for (let j = 0; ; j++) {
    const x = Math.floor(u(j) * W);
    let acc = 0;
    const picked = order.find((i) => (acc += w(i)) > x)!;
    if (inNucleus.has(picked)) return picked;
  }
}

const uniformsOf = (rng: Rng) => {
  const seen: number[] = [];
  return (j: number) => {
    while (seen.length <= j) seen.push(rng.next());
    return seen[j]!;
  };
};

const truncations: Truncation[] = [
  { topK: 0, topP: 1 },
  { topK: 0, topP: 0.95 },
  { topK: 0, topP: 0.5 },
  { topK: 0, topP: 0.1 },
  { topK: 0, topP: 1e-6 },
  { topK: 1, topP: 1 },
  { topK: 40, topP: 0.9 },
  { topK: 64, topP: 1 },
  { topK: 65, topP: 0.95 },
  { topK: 300, topP: 1 },
];

describe('drawing from a row (the definition)', () => {
  it('draws what the definition read literally draws, for every truncation', () => {
    const rng = new Rng(3);
    for (let trial = 0; trial < 12; trial++) {
      const p = distribution(rng, 500, [0.3, 2, 6][trial % 3]!, { ties: trial % 4 === 3, zeros: trial % 5 === 4 ? 0.5 : 0 });
      for (const t of truncations) {
        for (let s = 0; s < 10; s++) {
          const seed = trial * 1000 + s;
          expect(drawFromRow(p, t, uniformsOf(new Rng(seed))).token).toBe(literal(p, t, uniformsOf(new Rng(seed))));
        }
      }
    }
  });

  it('samples each nucleus token in proportion to its probability', () => {
    const p = Float32Array.of(0.5, 0.25, 0.15, 0.1);
    const counts = [0, 0, 0, 0];
    const rng = new Rng(9);
    for (let i = 0; i < 8000; i++) counts[drawFromRow(p, { topK: 0, topP: 0.8 }, () => rng.next()).token]!++;
    // Nucleus {0, 1, 2} (0.75 < 0.8 before token 2), renormalised: 0.555, 0.278, 0.167.
    expect(counts[3]).toBe(0);
    expect(counts[0]! / 8000).toBeCloseTo(0.5 / 0.9, 1);
    expect(counts[2]! / 8000).toBeCloseTo(0.15 / 0.9, 1);
  });

  it('ranks ties by lower id and skips tokens of probability 0', () => {
    expect([...likeliest(Float32Array.of(0.25, 0, 0.5, 0.25), 4)]).toEqual([2, 0, 3]);
    expect([...likeliest(Float32Array.of(0.25, 0, 0.5, 0.25), 2)]).toEqual([2, 0]);
  });

  it('reports a row with nothing to draw', () => {
    expect(() => drawFromRow(new Float32Array(4), { topK: 0, topP: 1 }, () => 0.5)).toThrow(/every token is masked/);
  });
});

describe('drawing from the head', () => {
  const cases = [
    { name: 'flat 32k (a random model)', V: 32000, spread: 0.3 },
    { name: 'peaked 32k (a trained model)', V: 32000, spread: 4 },
    { name: 'very peaked 4k', V: 4000, spread: 9 },
    { name: 'ties and zeros', V: 3000, spread: 1, ties: true, zeros: 0.3 },
    { name: 'few tokens allowed (a grammar)', V: 3000, spread: 1, zeros: 0.995 },
    { name: 'a vocabulary smaller than the head', V: 40, spread: 1 },
  ];
  for (const c of cases) {
    it(`gives the full row's token and uses the same uniforms wherever it decides: ${c.name}`, () => {
      const rng = new Rng(c.V);
      let decided = 0;
      let total = 0;
      for (let trial = 0; trial < 3; trial++) {
        const p = distribution(rng, c.V, c.spread, { ties: c.ties ?? false, zeros: c.zeros ?? 0 });
        for (const t of truncations) {
          for (let s = 0; s < 8; s++) {
            const seed = trial * 100 + s;
            const u = uniformsOf(new Rng(seed));
            const head = headFor(p, Array.from({ length: HEAD_DRAWS }, (_, j) => u(j)));
            const fromHead = drawFromHead(head, t, u);
            // Common settings: top-k within the head, top-p not tiny.
            const common = t.topK <= HEAD_SIZE && t.topP >= 0.5;
            if (common) total++;
            if (!fromHead) continue;
            if (common) decided++;
            expect(fromHead).toEqual(drawFromRow(p, t, uniformsOf(new Rng(seed))));
          }
        }
      }
      // Left to the full row: top-k beyond the head, tiny nuclei of flat rows (picks past the driver's
      // tail draws), and picks at the very edge of a nucleus.
      expect(decided / total).toBeGreaterThan(0.95);
    });
  }

  it('decides almost every row at top-p 0.95 even on a flat 32k row', () => {
    const rng = new Rng(5);
    const p = distribution(rng, 32000, 0.3);
    let decided = 0;
    for (let s = 0; s < 200; s++) {
      const u = uniformsOf(new Rng(s));
      if (drawFromHead(headFor(p, [u(0), u(1)]), { topK: 0, topP: 0.95 }, u)) decided++;
    }
    expect(decided).toBeGreaterThanOrEqual(195);
  });

  it('stays exact when the driver sums the probability ranked above in float32 (errors up to 255·2⁻²⁴)', () => {
    const rng = new Rng(8);
    const p = distribution(rng, 32000, 0.3);
    for (let s = 0; s < 100; s++) {
      const u = uniformsOf(new Rng(s));
      const head = headFor(p, [u(0), u(1)]);
      for (const factor of [1 - 255 * 2 ** -24, 1 + 255 * 2 ** -24]) {
        const skewed = { ...head, draws: head.draws.map((d) => ({ ...d, above: d.above * factor })) };
        const drawn = drawFromHead(skewed, { topK: 0, topP: 0.5 }, u);
        if (drawn) expect(drawn).toEqual(drawFromRow(p, { topK: 0, topP: 0.5 }, uniformsOf(new Rng(s))));
      }
    }
  });

  it('leaves to the full row what it cannot decide: top-k beyond the head, a tail pick past its draws, or inconsistent draws', () => {
    const rng = new Rng(2);
    const p = distribution(rng, 5000, 0.3);
    const u = uniformsOf(new Rng(1));
    const head = headFor(p, [u(0), u(1)]);
    expect(drawFromHead(head, { topK: HEAD_SIZE + 1, topP: 1 }, u)).toBeNull();
    expect(drawFromHead({ ...head, draws: [] }, { topK: 0, topP: 1 }, u)).toBeNull(); // a flat row: the first pick lands in the tail
    const wrong = { ...head, draws: head.draws.map((d) => ({ ...d, before: d.before + d.weight })) };
    expect(drawFromHead(wrong, { topK: 0, topP: 1 }, u)).toBeNull();
  });
});
