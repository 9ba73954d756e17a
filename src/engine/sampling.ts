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

/** The definition, on the whole row (also the way for rows the head cannot decide). */
export function drawFromRow(p: Float32Array, t: Truncation, uniform: (j: number) => number): Drawn {
  const rank = rankOrder(p);
  const k = t.topK > 0 && t.topK < rank.length ? t.topK : rank.length;
  const n = Math.min(HEAD_SIZE, k);
  const weights = new Float64Array(k);
  for (let r = 0; r < k; r++) weights[r] = weightOf(p[rank[r]!]!);
  // Kept weight ranked above each kept token, and the kept tail in token-id order.
  const above = new Float64Array(k);
  for (let r = 1; r < k; r++) above[r] = above[r - 1]! + weights[r - 1]!;
  const rankOf = new Int32Array(p.length).fill(-1);
  for (let r = 0; r < k; r++) rankOf[rank[r]!] = r;
  const tailRanks = new Int32Array(k - n);
  const tailEnd = new Float64Array(k - n);
  let acc = 0;
  for (let v = 0, i = 0; v < p.length; v++) {
    const r = rankOf[v]!;
    if (r < n) continue;
    tailRanks[i] = r;
    tailEnd[i++] = acc += weights[r]!;
  }
  const tail: Tail | null =
    tailRanks.length > 0
      ? {
          weight: acc,
          pick(_j, x) {
            const r = tailRanks[firstAbove(tailEnd, tailEnd.length, x)]!;
            return { token: rank[r]!, aboveLo: above[r]!, aboveHi: above[r]! };
          },
        }
      : null;
  const drawn = draw(rank.subarray(0, n), weights.subarray(0, n), tail, t.topP, uniform);
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

/** Token ids with p > 0, likeliest first, ties by lower id (one numeric sort of packed keys). */
export function rankOrder(p: Float32Array): Int32Array {
  const bits = new Uint32Array(p.buffer, p.byteOffset, p.length);
  const keys = new Float64Array(p.length);
  let n = 0;
  // For positive floats the bit pattern orders as the value: key = (larger first) · 2²¹ + id.
  for (let i = 0; i < p.length; i++) if (p[i]! > 0) keys[n++] = (0x7fffffff - bits[i]!) * 2 ** 21 + i;
  const sorted = keys.subarray(0, n).sort();
  const out = new Int32Array(n);
  for (let r = 0; r < n; r++) out[r] = sorted[r]! % 2 ** 21;
  return out;
}
