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
 *
 * Virtual rows. Attention pads every row to the longest query run Q, so a
 * step mixing 32 decodes with a 480-token prefill chunk would compute 32×480
 * query rows where 32 are real. Long runs are therefore cut into virtual rows
 * of at most q queries, each with its own key list (the past and the run up to
 * its end); q is chosen per step to minimise an estimate of attention work:
 * rows × (gathered keys per row + scored queries per row). Cutting never
 * changes a query's keys or their order, so it is invisible in the results.
 */
import { KEY_ALIGN, type Batch, type HeadInputs } from '../../drivers/driver.ts';
import type { SlotCopies } from './kv-cache.ts';
import type { TokenMask } from './sampler.ts';

/** How a row's sampled tokens are drawn, as the driver needs to know it. */
export interface RowSampling {
  /** Full logits back to the host, the sampling head, or the greedy token alone. */
  needs: 'best' | 'logits' | 'head';
  /** 1 / temperature of each of its sampled tokens. */
  invTemperature: number;
  /** Tokens it may produce, applied in the graph (undefined: it carries no mask; null: its mask failed, every token allowed). */
  mask?: TokenMask | null;
  /** Its sampling head's inputs (needs 'head'); `full` asks for its whole distribution too. */
  head?: { adjustments: Map<number, number>; minP: number; uniforms: ArrayLike<number>; full: boolean };
}

/** What a batch needs besides its rows: the model's shape, and the copies the schedule asked for. */
export interface BatchShape extends AttentionShape {
  /** Vocabulary size (the width of token masks). */
  vocabSize?: number;
  /** Uniforms per head row. */
  headDraws?: number;
}

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
  /** RoPE position of every token of the sequence, when not its index. */
  positions?: ArrayLike<number>;
  /** How its sampled rows are drawn (none given: full logits back, temperature 1). */
  sample?: RowSampling;
}

/** Scratch reused across steps: page → first row of that page in kv_gather. */
let pageSlotOf = new Int32Array(0);

export interface AttentionShape {
  numHeads: number;
  numKvHeads: number;
}

/** The longest query run per (virtual) row that minimises the attention work estimate. */
export function chooseQueryRun(lengths: readonly number[], shape: AttentionShape): number {
  const longest = Math.max(1, ...lengths);
  let best = longest;
  let bestCost = Infinity;
  for (let q = longest; ; q = q > 1 ? Math.min(q - 1, 2 ** Math.floor(Math.log2(q - 1))) : 0) {
    if (q < 1) break;
    let rows = 0;
    for (const n of lengths) rows += Math.ceil(n / q);
    const cost = rows * (2 * shape.numKvHeads + 2 * q * shape.numHeads);
    if (cost < bestCost) {
      bestCost = cost;
      best = q;
    }
  }
  return best;
}

export function buildBatch(rows: readonly BatchRow[], pageSize: number, numPages: number, shape: BatchShape = { numHeads: 1, numKvHeads: 1 }, copies?: SlotCopies): Batch {
  if (pageSlotOf.length < numPages) pageSlotOf = new Int32Array(numPages).fill(-1);
  let T = 0;
  let maxKeys = 0;
  let S = 0;
  for (const r of rows) {
    T += r.tokens.length;
    maxKeys = Math.max(maxKeys, r.pastLen + r.tokens.length);
    S += r.numSample;
  }
  const Q = chooseQueryRun(rows.map((r) => r.tokens.length), shape);
  let B = 0;
  for (const r of rows) B += Math.ceil(r.tokens.length / Q);
  const L = Math.max(KEY_ALIGN, Math.ceil(maxKeys / KEY_ALIGN) * KEY_ALIGN);

  // Stage 1: the distinct pages the step reads, each contributing all its slots.
  const touched: number[] = [];
  for (const r of rows) {
    const pages = Math.ceil(r.pastLen / pageSize);
    for (let i = 0; i < pages; i++) {
      const page = r.pageTable[i]!;
      if (pageSlotOf[page] === -1) {
        pageSlotOf[page] = touched.length * pageSize;
        touched.push(page);
      }
    }
  }
  const U = Math.max(1, touched.length * pageSize);
  const kvGather = new Int32Array(U);
  touched.forEach((page, i) => {
    for (let s = 0; s < pageSize; s++) kvGather[i * pageSize + s] = page * pageSize + s;
  });

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
  let b = 0;
  for (const r of rows) {
    const n = r.tokens.length;
    const past = r.pastLen;
    for (let j = 0; j < n; j++) {
      const pos = past + j;
      tokenIds[t0 + j] = r.tokens[j]!;
      positions[t0 + j] = r.positions ? r.positions[pos]! : pos;
      writeSlots[t0 + j] = r.pageTable[Math.floor(pos / pageSize)]! * pageSize + (pos % pageSize);
    }
    // One virtual row per run of at most Q new tokens [from, to).
    for (let from = 0; from < n; from += Q, b++) {
      const to = Math.min(n, from + Q);
      // Stage 2: the row's keys: past (from the gathered pages), then new tokens up to `to`.
      const keys = keyIndex.subarray(b * L, (b + 1) * L);
      for (let i = 0, p = 0; p < past; i++) {
        const base = pageSlotOf[r.pageTable[i]!]!;
        for (let s = 0; s < pageSize && p < past; s++, p++) keys[p] = base + s;
      }
      for (let j = 0; j < to; j++) keys[past + j] = U + t0 + j;
      for (let j = from; j < to; j++) {
        const q = j - from;
        const pos = past + j;
        queryIndex[b * Q + q] = t0 + j;
        tokenIndex[t0 + j] = b * Q + q;
        const m = mask.subarray((b * Q + q) * L, (b * Q + q + 1) * L);
        const first = r.window ? Math.max(0, pos - r.window + 1) : 0;
        if (r.attend) {
          for (let k = first; k <= pos; k++) if (k === pos || r.attend(pos, k)) m[k] = 0;
        } else {
          m.fill(0, first, pos + 1);
        }
      }
      // Padding query slots attend to everything (their output is discarded);
      // a row of only -Infinity would make the softmax produce NaN.
      for (let q = to - from; q < Q; q++) mask.fill(0, (b * Q + q) * L, (b * Q + q + 1) * L);
    }
    for (let j = n - r.numSample; j < n; j++) sampleIndex[s++] = t0 + j;
    t0 += n;
  }
  for (const page of touched) pageSlotOf[page] = -1;

  const sampling = sampledRows(rows, S, shape);
  return {
    numTokens: T,
    numRows: B,
    queryLen: Q,
    keyLen: L,
    tokenIds,
    positions,
    writeSlots,
    kvGather,
    keyIndex,
    queryIndex,
    tokenIndex,
    mask,
    sampleIndex,
    ...sampling,
    ...(copies && copies.from.length > 0 ? { copies: { from: Int32Array.from(copies.from), to: Int32Array.from(copies.to) } } : {}),
  };
}

/**
 * The sampled rows' side of the batch, in sampleIndex order: temperatures,
 * whether full logits come back, token masks (only when some row carries one:
 * without any, the driver allows every token) and the sampling head's inputs.
 */
function sampledRows(rows: readonly BatchRow[], S: number, shape: BatchShape): Pick<Batch, 'invTemperature' | 'maskWords' | 'tokenMask' | 'needLogits' | 'head'> {
  const invTemperature = new Float32Array(S).fill(1);
  let needLogits = false;
  const masked = rows.some((r) => r.numSample > 0 && r.sample?.mask !== undefined);
  const maskWords = masked ? Math.ceil((shape.vocabSize ?? 0) / 32) : 0;
  const tokenMask = masked ? new Uint32Array(S * maskWords).fill(0xffffffff) : new Uint32Array(0);
  const heads: Array<NonNullable<RowSampling['head']>> = [];
  let row = 0;
  for (const r of rows) {
    if (r.numSample === 0) continue;
    const s = r.sample;
    needLogits ||= !s || s.needs === 'logits';
    if (s) {
      invTemperature.fill(s.invTemperature, row, row + r.numSample);
      if (s.mask) tokenMask.set(s.mask, row * maskWords);
      if (s.needs === 'head' && s.head) heads[row] = s.head;
    }
    row += r.numSample;
  }
  return { invTemperature, maskWords, tokenMask, needLogits, head: heads.length > 0 ? headInputs(heads, S, shape.headDraws ?? 0) : null };
}

/** The sampling head's inputs as [S, …] arrays from its rows' (sparse, by sampled row). */
function headInputs(rows: Array<NonNullable<RowSampling['head']>>, S: number, draws: number): HeadInputs {
  let A = 1;
  rows.forEach((h) => (A = Math.max(A, h.adjustments.size)));
  const head: HeadInputs = { adjustWidth: A, adjustIds: new Int32Array(S * A), adjustValues: new Float32Array(S * A), minP: new Float32Array(S), uniforms: new Float64Array(S * draws), fullRows: new Int32Array(0) };
  const full: number[] = [];
  rows.forEach((h, r) => {
    let a = r * A;
    for (const [t, v] of h.adjustments) {
      head.adjustIds[a] = t;
      head.adjustValues[a++] = v;
    }
    head.minP[r] = h.minP;
    head.uniforms.set(h.uniforms, r * draws);
    if (h.full) full.push(r);
  });
  head.fullRows = Int32Array.from(full);
  return head;
}
