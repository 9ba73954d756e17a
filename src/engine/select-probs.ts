/**
 * Truncation and drawing over a probability row (softmax already applied, at
 * the request's temperature, by the driver) without sorting the vocabulary.
 *
 * Tokens are bucketed by the top bits of their float32 pattern (exponent and
 * three mantissa bits: for positive floats the bit order is the value order),
 * so top-k and top-p walk ~2,000 buckets from the top and sort only the one
 * bucket where the cut falls.
 */
import type { Rng } from '../util/rng.ts';

const BUCKET_SHIFT = 20;
const NUM_BUCKETS = 1 << (31 - BUCKET_SHIFT);
const counts = new Int32Array(NUM_BUCKETS);
const sums = new Float64Array(NUM_BUCKETS);
let kept = new Int32Array(0);

export interface Truncation {
  topK: number;
  topP: number;
  minP: number;
}

/** Draws a token from `probs` (non-negative, any total) after min-p, top-k and top-p. */
export function drawFromProbs(probs: Float32Array, t: Truncation, rng: Rng): number {
  const V = probs.length;
  if (kept.length < V) kept = new Int32Array(V);
  const bits = new Uint32Array(probs.buffer, probs.byteOffset, V);
  let max = 0;
  let total = 0;
  for (let i = 0; i < V; i++) {
    const p = probs[i]!;
    total += p;
    if (p > max) max = p;
  }
  if (!(total > 0)) throw new Error('sampler: every token is masked');
  if (t.minP > 0) {
    const floor = t.minP * max;
    total = 0;
    for (let i = 0; i < V; i++) {
      if (probs[i]! < floor) probs[i] = 0;
      else total += probs[i]!;
    }
  }
  const k = t.topK > 0 && t.topK < V ? t.topK : 0;
  if (k === 0 && t.topP >= 1) return drawAll(probs, total, rng);

  counts.fill(0);
  sums.fill(0);
  for (let i = 0; i < V; i++) {
    const b = bits[i]! >>> BUCKET_SHIFT;
    counts[b]!++;
    sums[b]! += probs[i]!;
  }
  // Walk buckets from the top until the kept count reaches k, or the kept mass p·total.
  const massGoal = t.topP < 1 ? t.topP * total : Infinity;
  let n = 0;
  let mass = 0;
  let cut = 0;
  for (let b = NUM_BUCKETS - 1; b > 0; b--) {
    if ((k > 0 && n + counts[b]! >= k) || mass + sums[b]! >= massGoal) {
      cut = b;
      break;
    }
    n += counts[b]!;
    mass += sums[b]!;
  }
  // Tokens above the cut bucket are kept; those in it are sorted and taken in order.
  n = 0;
  const boundary: number[] = [];
  for (let i = 0; i < V; i++) {
    const b = bits[i]! >>> BUCKET_SHIFT;
    if (b > cut) kept[n++] = i;
    else if (b === cut && probs[i]! > 0) boundary.push(i);
  }
  boundary.sort((a, b) => probs[b]! - probs[a]! || a - b);
  let keptMass = 0;
  for (let i = 0; i < n; i++) keptMass += probs[kept[i]!]!;
  for (const i of boundary) {
    if ((k > 0 && n >= k) || keptMass >= massGoal) break;
    kept[n++] = i;
    keptMass += probs[i]!;
  }
  // top-p after top-k applies to the k kept tokens, renormalised.
  if (k > 0 && t.topP < 1) {
    const order = Array.from(kept.subarray(0, n)).sort((a, b) => probs[b]! - probs[a]! || a - b);
    const goal = t.topP * keptMass;
    let acc = 0;
    n = 0;
    for (const i of order) {
      kept[n++] = i;
      acc += probs[i]!;
      if (acc >= goal) break;
    }
    keptMass = acc;
  }
  let u = rng.next() * keptMass;
  for (let i = 0; i < n; i++) {
    u -= probs[kept[i]!]!;
    if (u < 0) return kept[i]!;
  }
  return kept[n - 1]!;
}

function drawAll(probs: Float32Array, total: number, rng: Rng): number {
  let u = rng.next() * total;
  let last = 0;
  for (let i = 0; i < probs.length; i++) {
    const p = probs[i]!;
    if (p > 0) {
      last = i;
      u -= p;
      if (u < 0) return i;
    }
  }
  return last;
}
