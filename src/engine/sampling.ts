/**
 * Drawing a token from a row of probabilities with top-k and top-p, defined
 * so that a short head of candidates decides almost every row, and the full
 * row gives the same token, for the same uniforms, whenever the head cannot.
 *
 * The procedure, on a row p (the driver's softmax at the row's temperature,
 * over the allowed tokens, logit adjustments applied, tokens under min-p
 * already zero):
 *  - Each token weighs w = floor(p · 2⁴⁰): integers, so sums are exact in
 *    float64 (on the host) and in the graph alike; a token below 2⁻⁴⁰ is never drawn.
 *  - Rank: likelier first, ties by lower id. The head is the first HEAD_SIZE ranks.
 *  - Kept: the first k ranks with top-k, else every token; W is their weight.
 *  - Nucleus (top-p): the kept tokens whose kept weight ranked above them is < top_p · W.
 *  - Draw order: the kept head tokens by rank, then the other kept tokens by id.
 *  - For the row's uniforms u₀, u₁, …: x = floor(u · W) picks the token whose
 *    interval in draw order holds x; the first token so picked that lies in the
 *    nucleus is the sample. (Rejection sampling: exactly the nucleus
 *    distribution; each try succeeds with probability ≥ top_p.)
 *
 * From the head alone (`drawFromHead`) a row is decided when the pick lands in
 * the head, or the nucleus provably ends inside the head; a pick in the tail
 * uses the driver's tail draws for the first uniforms (sampling-head.ts), whose
 * token is exact and whose ranked-above probability is known within float32
 * error: a pick too close to the nucleus's edge to call is left to the full row.
 */
import type { HeadOutputs } from '../../drivers/driver.ts';

/** Candidates per row. */
export const HEAD_SIZE = 64;
/** Tail tokens per block of the driver's cumulative sums. */
export const TAIL_BLOCK = 256;
/** Weights are probabilities in units of 2⁻⁴⁰, floored. */
export const WEIGHT_SCALE = 2 ** 40;
/** Uniforms per row the driver draws in the tail ahead of the host. */
export const HEAD_DRAWS = 2;
/** Relative error allowed on a tail draw's ranked-above probability: float32 sums of 256 terms are within 255·2⁻²⁴; this is twice that. */
const ABOVE_SLACK = 2 ** -15;
/** Rejected picks before giving up: each succeeds with probability ≥ max(top_p, 1 / vocabulary). */
const MAX_TRIES = 10_000_000;

export interface Truncation {
  /** Keep the k likeliest tokens (0: off). */
  topK: number;
  /** Keep the likeliest tokens reaching this share of the kept weight (1: off). */
  topP: number;
}

/** The token drawn and how many uniforms it used. */
export interface Drawn {
  token: number;
  used: number;
}

/** A tail draw of the driver: the tail token at the uniform's point, and what the host checks. */
export interface TailDraw {
  token: number;
  /** Tail weight before the token, in token-id order (exact). */
  before: number;
  /** The token's weight (exact). */
  weight: number;
  /** Probability ranked above the token (within ABOVE_SLACK). */
  above: number;
}

/** What the driver returns for one row instead of the row itself. */
export interface HeadRow {
  vocab: number;
  /** The head, likeliest first (ties by lower id). */
  ids: ArrayLike<number>;
  p: ArrayLike<number>;
  /** Weight of every token outside the head. */
  tailWeight: number;
  /** One per uniform the driver was given. */
  draws: TailDraw[];
}

/** Row `row` of a driver's head outputs. */
export function headRow(h: HeadOutputs, row: number, vocab: number): HeadRow {
  const H = Math.min(HEAD_SIZE, vocab);
  const R = HEAD_DRAWS;
  const d = h.draws.subarray(row * (1 + 3 * R), (row + 1) * (1 + 3 * R));
  return {
    vocab,
    ids: h.ids.subarray(row * H, (row + 1) * H),
    p: h.p.subarray(row * H, (row + 1) * H),
    tailWeight: d[0]!,
    draws: Array.from({ length: R }, (_, j) => ({ token: h.drawToken[row * R + j]!, before: d[1 + j]!, weight: d[1 + R + j]!, above: d[1 + 2 * R + j]! })),
  };
}

export function weightOf(p: number): number {
  return Math.floor(p * WEIGHT_SCALE);
}

/** The part of the kept set outside the head: its weight, and the token at a point of it. */
interface Tail {
  weight: number;
  /** The token at tail point x for the j-th uniform, with bounds on the kept weight ranked above it; null if unknown. */
  pick(j: number, x: number): { token: number; aboveLo: number; aboveHi: number } | null;
}

/** Decides from the head and tail draws; null when only the full row can (see `drawFromRow`). */
export function drawFromHead(row: HeadRow, t: Truncation, uniform: (j: number) => number): Drawn | null {
  const H = row.ids.length;
  const vocab = row.vocab;
  const k = t.topK > 0 && t.topK < vocab ? t.topK : 0;
  if (k > H) return null; // the kept set reaches into the tail, which the driver did not cut at k
  const n = k > 0 ? k : H;
  const weights = new Float64Array(n);
  for (let i = 0; i < n; i++) weights[i] = weightOf(row.p[i]!);
  const tail: Tail | null =
    k === 0 && vocab > H
      ? {
          weight: row.tailWeight,
          pick(j, x) {
            const d = row.draws[j];
            if (!d || !(d.before <= x && x < d.before + d.weight)) return null;
            return { token: d.token, aboveLo: d.above * (1 - ABOVE_SLACK) * WEIGHT_SCALE - vocab, aboveHi: d.above * (1 + ABOVE_SLACK) * WEIGHT_SCALE };
          },
        }
      : null;
  return draw(row.ids, weights, tail, t.topP, uniform);
}

/** The definition, on the whole row (also the way for rows the head cannot decide). No sort: selections and passes over the row. */
export function drawFromRow(p: Float32Array, t: Truncation, uniform: (j: number) => number): Drawn {
  const V = p.length;
  const topP = t.topP;
  const keys = rankKeys(p);
  let nonzero = 0;
  for (let v = 0; v < V; v++) if (p[v]! > 0) nonzero++;
  const k = t.topK > 0 && t.topK < nonzero ? t.topK : nonzero;
  // Kept: the first k ranks (a key at most the k-th smallest).
  const kth = k < nonzero ? nthSmallest(keys.slice(), k - 1) : Infinity;
  const headIds = likeliest(keys, Math.min(HEAD_SIZE, k));
  const weights = Float64Array.from(headIds, (v) => weightOf(p[v]!));
  const inHead = new Uint8Array(V);
  for (const v of headIds) inHead[v] = 1;
  // The kept tail in token-id order.
  const tailIds = new Int32Array(V);
  const ends = new Float64Array(V);
  let n = 0;
  let acc = 0;
  for (let v = 0; v < V; v++) {
    if (inHead[v] || !(p[v]! > 0) || keys[v]! > kth) continue;
    tailIds[n] = v;
    ends[n++] = acc += weightOf(p[v]!);
  }
  // Kept weight ranked above a token: a pass over the row for the first tail pick, then (a small
  // top-p on a flat row may take many) the kept keys sorted once, with their running weights.
  let picks = 0;
  let sorted: { keys: Float64Array; before: Float64Array } | null = null;
  const aboveOf = (token: number): number => {
    if (picks++ === 0) {
      let above = 0;
      for (let v = 0; v < V; v++) if (keys[v]! < keys[token]! && keys[v]! <= kth) above += weightOf(p[v]!);
      return above;
    }
    if (!sorted) {
      const kept = keys.filter((key) => key <= kth && key < Infinity).sort();
      const before = new Float64Array(kept.length + 1);
      for (let i = 0; i < kept.length; i++) before[i + 1] = before[i]! + weightOf(p[kept[i]! % 2 ** 21]!);
      sorted = { keys: kept, before };
    }
    return sorted.before[firstAbove(sorted.keys, sorted.keys.length, keys[token]! - 1)]!; // ranks before the token's key
  };
  const tail: Tail | null =
    n > 0
      ? {
          weight: acc,
          pick(_j, x) {
            const token = tailIds[firstAbove(ends, n, x)]!;
            const above = topP < 1 ? aboveOf(token) : 0; // without top-p every kept token is in the nucleus
            return { token, aboveLo: above, aboveHi: above };
          },
        }
      : null;
  const drawn = draw(headIds, weights, tail, t.topP, uniform);
  if (!drawn) throw new Error('sampler: the full row left a draw undecided'); // cannot happen: every pick is exact
  return drawn;
}

/**
 * The draw itself, over the kept head (by rank, with its weights) then the tail.
 * Exact wherever the tail is; null where the tail cannot answer.
 */
function draw(ids: ArrayLike<number>, weights: Float64Array, tail: Tail | null, topP: number, uniform: (j: number) => number): Drawn | null {
  const n = weights.length;
  const headEnd = new Float64Array(n);
  let headWeight = 0;
  for (let i = 0; i < n; i++) headEnd[i] = headWeight += weights[i]!;
  const W = headWeight + (tail?.weight ?? 0);
  if (!(W > 0)) throw new Error('sampler: every token is masked');
  const goal = topP < 1 ? topP * W : Infinity;
  // Where the nucleus ends, if it ends in the head: its last rank (kept weight up to it reaches the goal).
  let last = -1;
  for (let i = 0; i < n; i++) {
    if (headEnd[i]! >= goal) {
      last = i;
      break;
    }
  }
  for (let j = 0; j < MAX_TRIES; j++) {
    const x = Math.floor(uniform(j) * W);
    if (x < headWeight) {
      const i = firstAbove(headEnd, n, x);
      if (last < 0 || i <= last) return { token: ids[i]!, used: j + 1 };
      continue; // ranked past the nucleus
    }
    if (last >= 0) continue; // the nucleus ends in the head: a tail token lies outside it
    const picked = tail!.pick(j, x - headWeight);
    if (!picked) return null;
    if (picked.aboveHi < goal) return { token: picked.token, used: j + 1 };
    if (picked.aboveLo < goal) return null; // too close to the nucleus's edge to call
  }
  throw new Error(`sampler: no token drawn in ${MAX_TRIES} tries`);
}

/** The first i < n with end[i] > x (end non-decreasing, x < end[n - 1]). */
function firstAbove(end: Float64Array, n: number, x: number): number {
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (end[mid]! > x) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/**
 * Rank keys: smaller is likelier, ties by lower id; Infinity for p = 0. For
 * positive floats the bit pattern orders as the value: key = (larger first) · 2²¹ + id.
 */
function rankKeys(p: Float32Array): Float64Array {
  const bits = new Uint32Array(p.buffer, p.byteOffset, p.length);
  const keys = new Float64Array(p.length);
  for (let i = 0; i < p.length; i++) keys[i] = p[i]! > 0 ? (0x7fffffff - bits[i]!) * 2 ** 21 + i : Infinity;
  return keys;
}

/** The n smallest finite keys, smallest first (a selection, then a sort of those n). */
function smallest(keys: Float64Array, n: number): Float64Array {
  if (n <= 0) return new Float64Array(0);
  const nth = n < keys.length ? nthSmallest(keys.slice(), n - 1) : Infinity;
  return keys.filter((key) => key <= nth && key < Infinity).sort();
}

/** The (i+1)-th smallest value (quickselect; reorders `a`). */
function nthSmallest(a: Float64Array, i: number): number {
  let lo = 0;
  let hi = a.length - 1;
  while (lo < hi) {
    const pivot = a[(lo + hi) >>> 1]!;
    let l = lo;
    let r = hi;
    while (l <= r) {
      while (a[l]! < pivot) l++;
      while (a[r]! > pivot) r--;
      if (l <= r) {
        const x = a[l]!;
        a[l++] = a[r]!;
        a[r--] = x;
      }
    }
    if (i <= r) hi = r;
    else if (i >= l) lo = l;
    else return a[i]!;
  }
  return a[i]!;
}

/** The ids of the (at most) n likeliest tokens of p > 0, likeliest first, ties by lower id. */
export function likeliest(keysOrP: Float64Array | Float32Array, n: number): Int32Array {
  const keys = keysOrP instanceof Float32Array ? rankKeys(keysOrP) : keysOrP;
  return Int32Array.from(smallest(keys, n), (key) => key % 2 ** 21);
}
