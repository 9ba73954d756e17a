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
  /** Full rows the step needs besides each row's greedy token: logits, sampling probabilities, both or neither. */
  needLogits: boolean;
  needProbs: boolean;
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
  /** [S, V] softmax(logits × invTemperature) (null unless `needProbs`). */
  probs: Float32Array | null;
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

/** Sampling probabilities of each row of [S, V] logits (drivers without them in their graph). */
export function probsOfRows(logits: Float32Array, vocab: number, invTemperature: Float32Array): Float32Array {
  const out = new Float32Array(logits.length);
  for (let r = 0; r < logits.length / vocab; r++) {
    const row = logits.subarray(r * vocab, (r + 1) * vocab);
    const k = invTemperature[r]!;
    let max = -Infinity;
    for (const v of row) max = Math.max(max, v * k);
    let sum = 0;
    for (let v = 0; v < vocab; v++) sum += out[r * vocab + v] = Math.exp(row[v]! * k - max);
    for (let v = 0; v < vocab; v++) out[r * vocab + v]! /= sum;
  }
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
  close(): Promise<void>;
}

/** Key rows are padded to a multiple of this; see batch-builder.ts. */
export const KEY_ALIGN = 64;
