import { describe, expect, it } from 'vitest';
import { quantizeGgml } from '../../../test/gguf-writer.ts';
import { dequantizeRows as nbitsValues } from '../quantize.ts';
import { dequantizeRows, toNBits } from './ggml-blocks.ts';
import { GgmlType } from './ggml-types.ts';

/** One row of 256 values: normal ones, then a sub-block far below zero with a tiny spread (its offset is ~1500 steps). */
function row(): Float32Array {
  let s = 7;
  const rand = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5;
  const x = Float32Array.from({ length: 256 }, rand);
  for (let i = 64; i < 96; i++) x[i] = -10 + 0.1 * (rand() + 0.5);
  return x;
}

describe('Q4_K onto the kernels', () => {
  it('a sub-block whose offset is no zero point is quantized anew over its own range; the others keep their q within 1/32 of a step', () => {
    const { data, values } = quantizeGgml('Q4_K', row());
    expect(Array.from(dequantizeRows(GgmlType.Q4_K, data, 1, 256))).toEqual(Array.from(values));
    for (const bits of [8, 4] as const) {
      const q = toNBits(GgmlType.Q4_K, data, 1, 256, bits);
      const got = nbitsValues(q);
      // Sub-block 2 (values 64..95): 8 or 4 bits over [-10, 0], within half of that step.
      const far = Math.max(...Array.from({ length: 32 }, (_, i) => Math.abs(got[64 + i]! - values[64 + i]!)));
      expect(far).toBeLessThanOrEqual(10 / ((1 << bits) - 1) / 2 + 1e-6);
      expect(Math.abs(q.scales[2]! / (10 / ((1 << bits) - 1)) - 1)).toBeLessThan(0.01); // a step over the range down to -10
      // The rest: the same q, the zero point rounded (8 bits: 1/32 of a step; 4 bits: 1/2).
      for (const j of [0, 1, 3, 4, 5, 6, 7]) {
        const step = Math.max(...Array.from({ length: 31 }, (_, i) => Math.abs(values[j * 32 + i + 1]! - values[j * 32 + i]!)));
        for (let i = 0; i < 32; i++) expect(Math.abs(got[j * 32 + i]! - values[j * 32 + i]!)).toBeLessThanOrEqual((bits === 8 ? step / 32 : step / 2) * 1.01 + 1e-6);
      }
    }
  });
});
