/**
 * The interface every driver implements, and the batch it runs.
 *
 * A batch is data only: the batch builder (src/engine/batch-builder.ts) makes
 * it from the scheduled sequences; a driver runs the model over it, writes the
 * new tokens' keys and values into its KV pool, and returns the logits of the
 * rows to sample.
 *
 * Attention layout. Each batch row (sequence) b has up to Q query tokens and L
 * key positions. The keys of a step are gathered in two stages: first the U
 * pool slots the step reads (`kvGather`), then each row's keys by index into
 * [those U rows, then the T new tokens] (`keyIndex`). Rows list their real keys
 * first and padding last, and L is a multiple of `KEY_ALIGN`, so a sequence's
 * numbers do not depend on what else is in the batch (see batch-builder.ts).
 */
import { HEAD_SIZE, likeliest, weightOf } from '../src/engine/sampling.ts';

export interface Batch {
  /** New tokens in this step (T). */
  numTokens: number;
  /** Batch rows (B), one per scheduled sequence. */
  numRows: number;
  /** Query slots per row (Q), padded. */
  queryLen: number;
  /** Key slots per row (L), padded. */
  keyLen: number;
  /** [T] token ids. */
  tokenIds: Int32Array;
  /** [T] positions, for RoPE. */
  positions: Int32Array;
  /** [T] pool slot that receives each new token's key and value. */
  writeSlots: Int32Array;
  /** [U] pool slots read this step (U ≥ 1). */
  kvGather: Int32Array;
  /** [B, L] index into concat(kvGather rows, new tokens). */
  keyIndex: Int32Array;
  /** [B, Q] index into the T new tokens (padding points at 0). */
  queryIndex: Int32Array;
  /** [T] index of each new token into the flattened [B, Q] query grid. */
  tokenIndex: Int32Array;
  /** [B, Q, L] additive attention mask: 0 to attend, -Infinity to mask. */
  mask: Float32Array;
  /** [S] new-token rows whose logits are returned. */
  sampleIndex: Int32Array;
  /** KV slots to copy (all layers) before the step runs: copy-on-write of shared pages. */
  copies?: { from: Int32Array; to: Int32Array };
  /** [S] 1 / temperature of each sampled row, for `probs` (1 where unused). */
  invTemperature: Float32Array;
  /** Words per row of `tokenMask`: ceil(vocabulary / 32); 0 when the batch carries no masks (all allowed). */
  maskWords: number;
  /**
   * [S, maskWords] tokens each sampled row may produce (grammars): bit t & 31
   * of word t >>> 5. Every output (logits, probs, best) is over the allowed
   * tokens only; all ones (the default) allows every token.
   */
  tokenMask: Uint32Array;
  /** Whether the step returns the full logits of every sampled row. */
  needLogits: boolean;
  /** The sampling head's inputs, when a sampled row draws from it (null: the step computes no head). */
  head: HeadInputs | null;
}

/**
 * Inputs of the sampling head: each row's distribution, its candidates and
 * tail draws (src/engine/sampling.ts defines them; sampling-head.ts computes
 * them in the graph, `headOfRows` on the host). Arrays are [S, …] in
 * sampleIndex order; rows that do not sample from the head carry padding.
 */
export interface HeadInputs {
  /** Logit adjustments (bias, penalties) per row: `adjustWidth` token ids and amounts each; padding adds 0 to token 0. */
  adjustWidth: number;
  adjustIds: Int32Array;
  adjustValues: Float32Array;
  /** [S] min-p of each row (0: off). */
  minP: Float32Array;
  /** [S, HEAD_DRAWS] each row's next uniforms. */
  uniforms: Float64Array;
  /** Sampled rows whose whole distribution the step returns (in `probs`). */
  fullRows: Int32Array;
}

/** Outputs of the sampling head. */
export interface HeadOutputs {
  /** [S, H] each row's H likeliest tokens, likeliest first (ties by lower id), and their probabilities. */
  ids: Int32Array;
  p: Float32Array;
  /** [S, HEAD_DRAWS] the tail token of each uniform, and [S, 1 + 3·HEAD_DRAWS] the tail's weight, then each draw's weight before, weight and probability ranked above. */
  drawToken: Int32Array;
  draws: Float64Array;
}

export interface DriverInfo {
  name: string;
  vocabSize: number;
  /** Total KV slots (pages × page size). */
  numSlots: number;
  pageSize: number;
  numPages: number;
  /** Bytes of KV cache per slot (all layers, keys and values). */
  bytesPerSlot: number;
}

export interface StepResult {
  /** [S, V] logits of the sampled rows, in `sampleIndex` order (null unless `needLogits`). */
  logits: Float32Array | null;
  /** [F, V] the distributions of `head.fullRows`, in that order (null without a head). */
  probs: Float32Array | null;
  /** Null unless the batch asked for the head. */
  head: HeadOutputs | null;
  /** [S] the most likely token of each sampled row (lowest id on ties). */
  best: Int32Array;
  /** [S] its log-probability. */
  bestLogprob: Float32Array;
}

/** Sets the entries of `row` outside `mask` (bit t & 31 of word t >>> 5; missing words allow nothing) to `value`. */
export function maskRow(row: Float32Array, mask: ArrayLike<number>, value: number): void {
  const V = row.length;
  for (let w = 0; w * 32 < V; w++) {
    const bits = mask[w] ?? 0;
    if (bits === 0xffffffff || (bits | 0) === -1) continue;
    const end = Math.min(V, w * 32 + 32);
    for (let t = w * 32; t < end; t++) if (!((bits >>> (t & 31)) & 1)) row[t] = value;
  }
}

/** Sets the logits of tokens outside each row's mask to -Infinity (drivers without masks in their graph). */
export function maskRows(logits: Float32Array, vocab: number, tokenMask: Uint32Array, maskWords: number): void {
  if (maskWords === 0) return; // the batch carries no masks
  for (let r = 0; r < logits.length / vocab; r++) maskRow(logits.subarray(r * vocab, (r + 1) * vocab), tokenMask.subarray(r * maskWords, (r + 1) * maskWords), -Infinity);
}

/**
 * The sampling head computed on the host, exactly (drivers without it in
 * their graph): as sampling-head.ts, from [S, V] masked logits.
 */
export function headOfRows(logits: Float32Array, vocab: number, invTemperature: Float32Array, inputs: HeadInputs): { probs: Float32Array; head: HeadOutputs } {
  const S = logits.length / vocab;
  const H = Math.min(HEAD_SIZE, vocab);
  const R = inputs.uniforms.length / Math.max(1, S);
  const D = 1 + 3 * R;
  const head: HeadOutputs = { ids: new Int32Array(S * H), p: new Float32Array(S * H), drawToken: new Int32Array(S * R), draws: new Float64Array(S * D) };
  const probs = new Float32Array(inputs.fullRows.length * vocab);
  for (let r = 0; r < S; r++) {
    const row = logits.slice(r * vocab, (r + 1) * vocab);
    for (let a = 0; a < inputs.adjustWidth; a++) row[inputs.adjustIds[r * inputs.adjustWidth + a]!]! += inputs.adjustValues[r * inputs.adjustWidth + a]!;
    const p = softmax(row, invTemperature[r]!);
    let max = 0;
    for (const v of p) max = Math.max(max, v);
    const floor = Math.fround(inputs.minP[r]! * max);
    for (let v = 0; v < vocab; v++) if (!(p[v]! >= floor)) p[v] = 0;
    inputs.fullRows.forEach((f, i) => f === r && probs.set(p, i * vocab));
    headOfProbs(p, inputs.uniforms.subarray(r * R, (r + 1) * R), head, r);
  }
  return { probs, head };
}

/** Row `r` of the head's outputs, from that row's distribution `p` and its uniforms. */
export function headOfProbs(p: Float32Array, uniforms: ArrayLike<number>, head: HeadOutputs, r: number): void {
  const vocab = p.length;
  const H = Math.min(HEAD_SIZE, vocab);
  const R = uniforms.length;
  // The head: ranked tokens, then tokens of probability 0 by id (as a top-k over the whole row ranks them).
  const ranked = likeliest(p, H);
  const inHead = new Uint8Array(vocab);
  for (let i = 0, zero = 0; i < H; i++) {
    while (i >= ranked.length && p[zero]! > 0) zero++;
    const t = i < ranked.length ? ranked[i]! : zero++;
    inHead[t] = 1;
    head.ids[r * H + i] = t;
    head.p[r * H + i] = p[t]!;
  }
  let headWeight = 0;
  let tailWeight = 0;
  for (let v = 0; v < vocab; v++) {
    if (inHead[v]) headWeight += weightOf(p[v]!);
    else tailWeight += weightOf(p[v]!);
  }
  const d = head.draws.subarray(r * (1 + 3 * R), (r + 1) * (1 + 3 * R));
  d[0] = tailWeight;
  for (let j = 0; j < R; j++) {
    const x = Math.floor(uniforms[j]! * (headWeight + tailWeight)) - headWeight;
    let before = 0;
    let t = 0;
    for (let v = 0; v < vocab; v++) {
      if (inHead[v]) continue;
      t = v;
      if (before + weightOf(p[v]!) > x) break;
      before += weightOf(p[v]!);
    }
    let above = 0;
    for (let v = 0; v < vocab; v++) if (p[v]! > p[t]! || (p[v] === p[t] && v < t)) above += p[v]!;
    head.drawToken[r * R + j] = t;
    d[1 + j] = before;
    d[1 + R + j] = weightOf(p[t]!);
    d[1 + 2 * R + j] = above;
  }
}

/** softmax(row × k) as float32. */
function softmax(row: Float32Array, k: number): Float32Array {
  const out = new Float32Array(row.length);
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v * k);
  let sum = 0;
  for (let v = 0; v < row.length; v++) sum += out[v] = Math.exp(row[v]! * k - max);
  for (let v = 0; v < row.length; v++) out[v]! /= sum;
  return out;
}

/** The greedy token and its log-probability of each row of [S, V] logits (drivers without them in their graph). */
export function bestOfRows(logits: Float32Array, vocab: number): { best: Int32Array; bestLogprob: Float32Array } {
  const S = logits.length / vocab;
  const best = new Int32Array(S);
  const bestLogprob = new Float32Array(S);
  for (let r = 0; r < S; r++) {
    const row = logits.subarray(r * vocab, (r + 1) * vocab);
    let b = 0;
    for (let v = 1; v < vocab; v++) if (row[v]! > row[b]!) b = v;
    let sum = 0;
    for (let v = 0; v < vocab; v++) sum += Math.exp(row[v]! - row[b]!);
    best[r] = b;
    bestLogprob[r] = -Math.log(sum);
  }
  return { best, bestLogprob };
}

export interface Driver {
  readonly info: DriverInfo;
  /** Applies `batch.copies`, runs the model, writes the new keys and values into the pool. */
  run(batch: Batch): Promise<StepResult>;
  /** After a failure that took the driver down (its worker died): start again over the same KV pool; true if it did. */
  recover?(): Promise<boolean>;
  close(): Promise<void>;
}

/** Key rows are padded to a multiple of this; see batch-builder.ts. */
export const KEY_ALIGN = 64;
