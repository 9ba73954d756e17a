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
});
