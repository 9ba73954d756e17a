import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { floatToHalf, halfToFloat, readSafetensors, writeSafetensors } from './safetensors.ts';

const dir = mkdtempSync(join(tmpdir(), 'pie-st-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('safetensors', () => {
  it('converts half floats exactly, including subnormals, infinities and rounding to even', () => {
    expect(halfToFloat(0x3c00)).toBe(1);
    expect(halfToFloat(0xc000)).toBe(-2);
    expect(halfToFloat(0x7bff)).toBe(65504);
    expect(halfToFloat(0x0001)).toBe(2 ** -24);
    expect(halfToFloat(0x7c00)).toBe(Infinity);
    expect(halfToFloat(0x7e00)).toBeNaN();
    expect(floatToHalf(1)).toBe(0x3c00);
    expect(floatToHalf(2 ** -24)).toBe(0x0001);
    expect(floatToHalf(1e6)).toBe(0x7c00);
    expect(floatToHalf(1 + 2 ** -11)).toBe(0x3c00); // a tie rounds to even
    expect(floatToHalf(1 + 3 * 2 ** -11)).toBe(0x3c02);
  });

  for (const dtype of ['F32', 'F16', 'BF16'] as const) {
    it(`writes and reads back ${dtype} tensors`, () => {
      const data = Float32Array.from([0, 1, -1.5, 3.140625, 1e-3, -65504, 0.333251953125]);
      const path = join(dir, `${dtype}.safetensors`);
      writeSafetensors(path, new Map([['w', { data, shape: [7] }], ['m', { data: Float32Array.of(1, 2, 3, 4), shape: [2, 2] }]]), dtype);
      const back = readSafetensors(path);
      expect(back.get('m')!.shape).toEqual([2, 2]);
      const got = back.get('w')!.data;
      const tolerance = dtype === 'F32' ? 0 : dtype === 'F16' ? 1e-3 : 1e-2;
      data.forEach((v, i) => expect(Math.abs(got[i]! - v)).toBeLessThanOrEqual(tolerance * Math.max(1, Math.abs(v))));
      expect(Array.from(back.get('m')!.data)).toEqual([1, 2, 3, 4]);
    });
  }

  it('reads only the tensors asked for', () => {
    const path = join(dir, 'F32.safetensors');
    expect([...readSafetensors(path, (n) => n === 'm').keys()]).toEqual(['m']);
  });
});
