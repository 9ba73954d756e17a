/**
 * The batch builder: the one place that turns scheduled sequences into the
 * typed arrays a driver runs (layout: drivers/driver.ts).
 *
 * Batch invariance. A sequence must get bit-identical logits whether it runs
 * alone or beside others, so that batching never changes a greedy answer. The
 * rounding of a float sum depends on its order and on how a vectorised kernel
 * splits it into lanes, so each row keeps its keys in one fixed order (its past
 * in position order, then its new tokens) with all padding at the end, and the
 * key length is a multiple of KEY_ALIGN: padding then only ever adds whole
 * blocks of exact zeros to a softmax or a weighted sum.
 */
import { KEY_ALIGN, type Batch } from '../../drivers/driver.ts';

export interface BatchRow {
  /** Pages covering positions 0 .. pastLen + tokens.length - 1. */
  pageTable: ArrayLike<number>;
  /** Tokens whose keys and values are already in the pool (positions 0 .. pastLen-1). */
  pastLen: number;
  /** New tokens, at positions pastLen, pastLen+1, ... */
  tokens: ArrayLike<number>;
  /** Logits are returned for the last `numSample` new tokens (0 for none). */
  numSample: number;
  /** Keys further back than this many positions are masked; null for none. */
  window?: number | null;
  /**
   * Optional custom attention: may the new token at `pos` see the key at
   * `keyPos`? Called only for keys the causal rule allows.
   */
  attend?: (pos: number, keyPos: number) => boolean;
}

/** Scratch reused across steps: page → first row of that page in kv_gather. */
let pageSlotOf = new Int32Array(0);

export function buildBatch(rows: readonly BatchRow[], pageSize: number, numPages: number): Batch {
  if (pageSlotOf.length < numPages) pageSlotOf = new Int32Array(numPages).fill(-1);
  const B = rows.length;
  let T = 0;
  let Q = 0;
  let maxKeys = 0;
  let S = 0;
  for (const r of rows) {
    const n = r.tokens.length;
    T += n;
    Q = Math.max(Q, n);
    maxKeys = Math.max(maxKeys, r.pastLen + n);
    S += r.numSample;
  }
  const L = Math.max(KEY_ALIGN, Math.ceil(maxKeys / KEY_ALIGN) * KEY_ALIGN);

  // Stage 1: the distinct pages the step reads, each contributing all its slots.
  const gather: number[] = [];
  const touched: number[] = [];
  for (const r of rows) {
    const pages = Math.ceil(r.pastLen / pageSize);
    for (let i = 0; i < pages; i++) {
      const page = r.pageTable[i]!;
      if (pageSlotOf[page] === -1) {
        pageSlotOf[page] = gather.length;
        touched.push(page);
        for (let s = 0; s < pageSize; s++) gather.push(page * pageSize + s);
      }
    }
  }
  if (gather.length === 0) gather.push(0);
  const U = gather.length;

  const tokenIds = new Int32Array(T);
  const positions = new Int32Array(T);
  const writeSlots = new Int32Array(T);
  const keyIndex = new Int32Array(B * L);
  const queryIndex = new Int32Array(B * Q);
  const tokenIndex = new Int32Array(T);
  const mask = new Float32Array(B * Q * L).fill(-Infinity);
  const sampleIndex = new Int32Array(S);

  let t0 = 0;
  let s = 0;
  rows.forEach((r, b) => {
    const n = r.tokens.length;
    const past = r.pastLen;
    // Stage 2: this row's keys: past (from the gathered pages), then its new tokens.
    const keys = keyIndex.subarray(b * L, (b + 1) * L);
    for (let p = 0; p < past; p++) keys[p] = pageSlotOf[r.pageTable[Math.floor(p / pageSize)]!]! + (p % pageSize);
    for (let j = 0; j < n; j++) keys[past + j] = U + t0 + j;
    for (let j = 0; j < n; j++) {
      const t = t0 + j;
      const pos = past + j;
      tokenIds[t] = r.tokens[j]!;
      positions[t] = pos;
      writeSlots[t] = r.pageTable[Math.floor(pos / pageSize)]! * pageSize + (pos % pageSize);
      queryIndex[b * Q + j] = t;
      tokenIndex[t] = b * Q + j;
      const m = mask.subarray((b * Q + j) * L, (b * Q + j + 1) * L);
      const first = r.window ? Math.max(0, pos - r.window + 1) : 0;
      if (r.attend) {
        for (let k = first; k <= pos; k++) if (k === pos || r.attend(pos, k)) m[k] = 0;
      } else {
        m.fill(0, first, pos + 1);
      }
    }
    // Padding query slots attend to everything (their output is discarded);
    // a row of only -Infinity would make the softmax produce NaN.
    for (let j = n; j < Q; j++) mask.fill(0, (b * Q + j) * L, (b * Q + j + 1) * L);
    for (let j = n - r.numSample; j < n; j++) sampleIndex[s++] = t0 + j;
    t0 += n;
  });
  for (const page of touched) pageSlotOf[page] = -1;

  return {
    numTokens: T,
    numRows: B,
    queryLen: Q,
    keyLen: L,
    tokenIds,
    positions,
    writeSlots,
    kvGather: Int32Array.from(gather),
    keyIndex,
    queryIndex,
    tokenIndex,
    mask,
    sampleIndex,
  };
}
