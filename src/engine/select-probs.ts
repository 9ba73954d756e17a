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
const subCounts = new Int32Array(256);
const subSums = new Float64Array(256);
let kept = new Int32Array(0);

export interface Truncation {
  topK: number;
  topP: number;
  minP: number;
}

/**
 * Applies min-p (zeroing what falls below it), then top-k, then top-p; returns
 * the kept tokens and their mass (tokens null when no top-k or top-p applies:
 * then every token with a non-zero probability is a candidate).
 */
export function truncate(probs: Float32Array, t: Truncation): { tokens: Int32Array | null; mass: number } {
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
  if (k === 0 && t.topP >= 1) return { tokens: null, mass: total };

  counts.fill(0);
  sums.fill(0);
  for (let i = 0; i < V; i++) {
    const b = bits[i]! >>> BUCKET_SHIFT;
    counts[b]!++;
    sums[b]! += probs[i]!;
  }
  // Walk buckets from the top until the kept count reaches k or, without top-k,
  // the kept mass reaches p·total (with top-k, top-p applies to the k kept, below).
  const massGoal = k === 0 && t.topP < 1 ? t.topP * total : Infinity;
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
  // Tokens above the cut bucket are kept. Those in it are split again by the
  // next 8 bits; sub-buckets above the crossing one are kept whole and only
  // the crossing one is sorted, so a flat distribution costs no big sort.
  n = 0;
  const boundary: number[] = [];
  for (let i = 0; i < V; i++) {
    const b = bits[i]! >>> BUCKET_SHIFT;
    if (b > cut) kept[n++] = i;
    else if (b === cut && probs[i]! > 0) boundary.push(i);
  }
  let keptMass = 0;
  for (let i = 0; i < n; i++) keptMass += probs[kept[i]!]!;
  const sub = (i: number) => (bits[i]! >>> (BUCKET_SHIFT - 8)) & 255;
  subCounts.fill(0);
  subSums.fill(0);
  for (const i of boundary) {
    subCounts[sub(i)]!++;
    subSums[sub(i)]! += probs[i]!;
  }
  let subCut = -1;
  let above = n;
  let aboveMass = keptMass;
  for (let sb = 255; sb >= 0; sb--) {
    if ((k > 0 && above + subCounts[sb]! >= k) || aboveMass + subSums[sb]! >= massGoal) {
      subCut = sb;
      break;
    }
    above += subCounts[sb]!;
    aboveMass += subSums[sb]!;
  }
  const crossing: number[] = [];
  for (const i of boundary) {
    if (sub(i) > subCut) kept[n++] = i;
    else if (sub(i) === subCut) crossing.push(i);
  }
  keptMass = aboveMass;
  crossing.sort((a, b) => probs[b]! - probs[a]! || a - b);
  for (const i of crossing) {
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
  return { tokens: kept.subarray(0, n), mass: keptMass };
}

/** Draws a token from `probs` (non-negative, any total) after min-p, top-k and top-p. */
export function drawFromProbs(probs: Float32Array, t: Truncation, rng: Rng): number {
  const { tokens, mass } = truncate(probs, t);
  let u = rng.next() * mass;
  if (!tokens) return drawAll(probs, u);
  for (const i of tokens) {
    u -= probs[i]!;
    if (u < 0) return i;
  }
  return tokens[tokens.length - 1]!;
}

/** Walks every token, subtracting until `u` (drawn against the total) runs out. */
function drawAll(probs: Float32Array, u: number): number {
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
