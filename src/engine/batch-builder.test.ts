import { describe, expect, it } from 'vitest';
import { KEY_ALIGN, type Batch } from '../../drivers/driver.ts';
import { buildBatch, chooseQueryRun, type BatchRow } from './batch-builder.ts';

/** For each new token: the pool slots (or new-token indices) of the keys its query sees, in order. */
function visibleKeys(b: Batch): string[][] {
  const U = b.kvGather.length;
  return Array.from({ length: b.numTokens }, (_, t) => {
    const grid = b.tokenIndex[t]!;
    const row = Math.floor(grid / b.queryLen);
    expect(b.queryIndex[grid]).toBe(t);
    const out: string[] = [];
    for (let k = 0; k < b.keyLen; k++) {
      if (b.mask[grid * b.keyLen + k] !== 0) continue;
      const idx = b.keyIndex[row * b.keyLen + k]!;
      out.push(idx < U ? `slot ${b.kvGather[idx]}` : `new ${b.tokenIds[idx - U]}@${b.positions[idx - U]}`);
    }
    return out;
  });
}

const shape = { numHeads: 8, numKvHeads: 4 };

describe('buildBatch', () => {
  const rows: BatchRow[] = [
    { pageTable: [3, 1], pastLen: 5, tokens: [10], numSample: 1 },
    { pageTable: [7, 0, 2], pastLen: 2, tokens: [20, 21, 22, 23, 24, 25, 26, 27, 28], numSample: 1 },
  ];

  it('gives every query its causal keys in position order, past first', () => {
    const b = buildBatch(rows, 4, 8, shape);
    const keys = visibleKeys(b);
    expect(keys[0]).toEqual(['slot 12', 'slot 13', 'slot 14', 'slot 15', 'slot 4', 'new 10@5']);
    expect(keys[3]).toEqual(['slot 28', 'slot 29', 'new 20@2', 'new 21@3', 'new 22@4']);
    expect(b.writeSlots[1]).toBe(7 * 4 + 2);
    expect(Array.from(b.sampleIndex)).toEqual([0, 9]);
    expect(b.keyLen % KEY_ALIGN).toBe(0);
  });

  it('cuts a long run beside decodes into virtual rows without changing what any query sees', () => {
    const cut = buildBatch(rows, 4, 8, shape);
    const whole = buildBatch(rows, 4, 8, { numHeads: 1, numKvHeads: 1000 });
    expect(whole.queryLen).toBe(9);
    expect(cut.queryLen).toBeLessThan(9);
    expect(cut.numRows).toBeGreaterThan(2);
    expect(visibleKeys(cut)).toEqual(visibleKeys(whole));
  });

  it('masks keys outside a sliding window and applies a custom attention rule', () => {
    const b = buildBatch([{ pageTable: [0, 1], pastLen: 4, tokens: [1, 2], numSample: 2, window: 3, attend: (pos, key) => key % 2 === 0 }], 4, 8);
    expect(visibleKeys(b)).toEqual([['slot 2', 'new 1@4'], ['new 1@4', 'new 2@5']]);
  });

  it('uses one query per row for pure decode steps and the full run for a lone prefill', () => {
    expect(chooseQueryRun([1, 1, 1], shape)).toBe(1);
    expect(chooseQueryRun([300], shape)).toBe(300);
    expect(chooseQueryRun([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 480], shape)).toBeLessThan(64);
  });

  it("finishes the batch's sampled side itself: temperatures, masks only when a row carries one, full logits only when a row needs them, the head's inputs, the copies", () => {
    const shape = { numHeads: 1, numKvHeads: 1, vocabSize: 40, headDraws: 2 };
    const plain = buildBatch(
      [
        { pageTable: [0], pastLen: 0, tokens: [1, 2], numSample: 1, sample: { needs: 'best', invTemperature: 1 } },
        { pageTable: [1], pastLen: 0, tokens: [3], numSample: 1, sample: { needs: 'best', invTemperature: 2 } },
      ],
      4,
      8,
      shape,
    );
    expect(Array.from(plain.invTemperature)).toEqual([1, 2]);
    expect(plain).toMatchObject({ maskWords: 0, needLogits: false, head: null });
    expect(plain.tokenMask).toHaveLength(0);
    expect(plain.copies).toBeUndefined();

    const only5 = new Uint32Array(2);
    only5[0] = 1 << 5;
    const head = { adjustments: new Map([[7, -1.5]]), minP: 0.1, uniforms: [0.25, 0.75], full: true };
    const mixed = buildBatch(
      [
        { pageTable: [0], pastLen: 0, tokens: [1], numSample: 1, sample: { needs: 'head', invTemperature: 0.5, mask: only5, head } },
        { pageTable: [1], pastLen: 0, tokens: [2], numSample: 1, sample: { needs: 'logits', invTemperature: 1, mask: null } },
        { pageTable: [2], pastLen: 0, tokens: [3], numSample: 0 },
      ],
      4,
      8,
      shape,
      { from: [4], to: [8] },
    );
    expect(mixed.maskWords).toBe(2);
    expect(Array.from(mixed.tokenMask)).toEqual([1 << 5, 0, 0xffffffff, 0xffffffff]); // a failed mask (null) allows everything
    expect(mixed.needLogits).toBe(true);
    expect(mixed.head).toMatchObject({ adjustWidth: 1, minP: Float32Array.from([0.1, 0]), uniforms: Float64Array.from([0.25, 0.75, 0, 0]), fullRows: Int32Array.from([0]) });
    expect(Array.from(mixed.head!.adjustIds)).toEqual([7, 0]);
    expect(Array.from(mixed.head!.adjustValues)).toEqual([-1.5, 0]);
    expect(mixed.copies).toEqual({ from: Int32Array.from([4]), to: Int32Array.from([8]) });
  });
});
