/**
 * A deterministic driver for fast tests of the engine, runtime and gateway.
 *
 * Its "KV cache" stores the token id at each slot. For every sampled row it
 * collects the tokens the row's query can see — through the same kv_gather,
 * key_index and mask a real driver uses — and asks the behaviour for the next
 * token. So any mistake in page tables, prefix reuse, copy-on-write or masks
 * changes what the mock answers, as it would with a real model.
 */
import { bestOfRows, headOfRows, maskRows, type Batch, type Driver, type DriverInfo, type StepResult } from '../driver.ts';

/** Picks the most likely next token from the visible tokens (in position order). */
export type MockBehaviour = (visible: readonly number[]) => number;

export interface MockDriverOptions {
  vocabSize: number;
  numPages: number;
  pageSize: number;
  behaviour?: MockBehaviour;
  /** Simulated time per step, in milliseconds. */
  stepDelayMs?: number;
}

/** Default behaviour: a hash of every visible token and its order. */
export const hashBehaviour =
  (vocabSize: number): MockBehaviour =>
  (visible) => {
    let h = 0x811c9dc5;
    for (const t of visible) h = Math.imul(h ^ t, 0x01000193) >>> 0;
    return h % vocabSize;
  };

export class MockDriver implements Driver {
  readonly info: DriverInfo;
  /** Every batch run, for tests that inspect the schedule. */
  readonly batches: Batch[] = [];
  recordBatches = false;
  private readonly slots: Int32Array;
  private readonly behaviour: MockBehaviour;
  private readonly delay: number;
  private closed = false;

  constructor(options: MockDriverOptions) {
    const numSlots = options.numPages * options.pageSize;
    this.info = {
      name: 'mock',
      vocabSize: options.vocabSize,
      numSlots,
      pageSize: options.pageSize,
      numPages: options.numPages,
      bytesPerSlot: 4,
    };
    this.slots = new Int32Array(numSlots).fill(-1);
    this.behaviour = options.behaviour ?? hashBehaviour(options.vocabSize);
    this.delay = options.stepDelayMs ?? 0;
  }

  async run(b: Batch): Promise<StepResult> {
    if (this.closed) throw new Error('mock driver closed');
    if (this.recordBatches) this.batches.push(b);
    if (this.delay > 0) await new Promise((r) => setTimeout(r, this.delay));
    else await Promise.resolve();
    if (b.copies) for (let i = 0; i < b.copies.from.length; i++) this.slots[b.copies.to[i]!] = this.slots[b.copies.from[i]!]!;
    const V = this.info.vocabSize;
    const U = b.kvGather.length;
    const logits = new Float32Array(b.sampleIndex.length * V);
    b.sampleIndex.forEach((t, row) => {
      const grid = b.tokenIndex[t]!;
      const r = Math.floor(grid / b.queryLen);
      const visible: number[] = [];
      for (let k = 0; k < b.keyLen; k++) {
        if (b.mask[grid * b.keyLen + k] !== 0) continue;
        const idx = b.keyIndex[r * b.keyLen + k]!;
        visible.push(idx < U ? this.slots[b.kvGather[idx]!]! : b.tokenIds[idx - U]!);
      }
      const next = this.behaviour(visible);
      // A smooth distribution peaked at `next`, so that sampling has choices.
      const out = logits.subarray(row * V, (row + 1) * V);
      for (let v = 0; v < V; v++) out[v] = -0.5 * ((v - next + V) % V);
    });
    for (let t = 0; t < b.numTokens; t++) this.slots[b.writeSlots[t]!] = b.tokenIds[t]!;
    maskRows(logits, V, b.tokenMask, b.maskWords);
    const { probs, head } = b.head ? headOfRows(logits, V, b.invTemperature, b.head) : { probs: null, head: null };
    return { logits: b.needLogits ? logits : null, probs, head, ...bestOfRows(logits, V) };
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
