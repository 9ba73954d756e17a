/**
 * Block-wise weight-only quantization into the layout of ONNX Runtime's
 * `MatMulNBits` (com.microsoft), which computes `A[M, K] · W[K, N]`:
 *
 *   data        uint8 [N, blocks, block · bits / 8] with blocks = ceil(K / block):
 *               output n's K input weights in blocks, the last one padded with
 *               zeros; 4-bit values two to a byte, the first in the low nibble
 *   scales      float [N · blocks]
 *   zeroPoints  uint8, with `zeroPoints: true` only: [N, ceil(blocks / 2)]
 *               packed the same way for 4 bits, [N, blocks] for 8
 *
 * Output n's weights are row n of a Hugging Face linear weight ([out, in]), so
 * quantizing one reads its rows as they are (`quantizeRows`).
 *
 * Symmetric (the default): scale = max |w| / (2^(bits-1) - 1) and the
 * kernel's implied zero point (8 or 128). With zero points: scale =
 * (max - min) / (2^bits - 1) over a range that includes 0, the zero point
 * rounding -min / scale.
 */

export type Bits = 4 | 8;

export interface Quantized {
  bits: Bits;
  block: number;
  /** Inputs (the reduced dimension) and outputs. */
  K: number;
  N: number;
  data: Uint8Array;
  scales: Float32Array;
  zeroPoints: Uint8Array | null;
}

export interface QuantizeOptions {
  bits: Bits;
  /** Values per block along K (default 32): 16, 32, 64, 128 or 256. */
  block?: number;
  zeroPoints?: boolean;
}

export const DEFAULT_BLOCK = 32;

export function blocksOf(q: { K: number; block: number }): number {
  return Math.ceil(q.K / q.block);
}

export function bytesPerBlock(q: { block: number; bits: Bits }): number {
  return (q.block * q.bits) / 8;
}

/** Zero-point bytes per output: two 4-bit ones to a byte. */
export function zeroPointsPerOutput(q: { K: number; block: number; bits: Bits }): number {
  return q.bits === 4 ? Math.ceil(blocksOf(q) / 2) : blocksOf(q);
}

/** Bytes a quantized weight takes (data, scales, zero points). */
export function quantizedBytes(q: Quantized): number {
  return q.data.byteLength + q.scales.byteLength + (q.zeroPoints?.byteLength ?? 0);
}

/** The block sizes a weight may use: powers of two from 16 to 256. */
export const BLOCKS = [16, 32, 64, 128, 256] as const;

function checkBlock(block: number): void {
  if (!(BLOCKS as readonly number[]).includes(block)) throw new RangeError(`the block must be one of ${BLOCKS.join(', ')}, got ${block}`);
}

/** Puts quantized value `i` of the block at byte `base` (4-bit values two to a byte, the first in the low nibble). */
export function putValue(data: Uint8Array, base: number, i: number, v: number, bits: Bits): void {
  if (bits === 8) data[base + i] = v;
  else data[base + (i >> 1)] = data[base + (i >> 1)]! | (v << ((i & 1) * 4));
}

/** Puts block `b`'s zero point for output `n` (4-bit ones two to a byte, packed like the values). */
export function putZeroPoint(zeroPoints: Uint8Array, perOutput: number, n: number, b: number, zp: number, bits: Bits): void {
  const at = n * perOutput + (bits === 4 ? b >> 1 : b);
  zeroPoints[at] = bits === 4 ? zeroPoints[at]! | (zp << ((b & 1) * 4)) : zp;
}

/** Quantizes `rows`, N rows of K values (a Hugging Face [out, in] weight), each row one output. */
export function quantizeRows(rows: Float32Array, N: number, K: number, options: QuantizeOptions): Quantized {
  const bits = options.bits;
  const block = options.block ?? DEFAULT_BLOCK;
  checkBlock(block);
  if (bits !== 4 && bits !== 8) throw new RangeError(`bits must be 4 or 8, got ${bits}`);
  if (rows.length !== K * N) throw new RangeError(`a ${N} × ${K} weight has ${K * N} values, got ${rows.length}`);
  const shape = { bits, block, K };
  const blocks = blocksOf(shape);
  const perBlock = bytesPerBlock(shape);
  const qmax = (1 << bits) - 1;
  const data = new Uint8Array(N * blocks * perBlock);
  const scales = new Float32Array(N * blocks);
  const zpPerOutput = zeroPointsPerOutput(shape);
  const zeroPoints = options.zeroPoints ? new Uint8Array(N * zpPerOutput) : null;
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < blocks; b++) {
      const from = n * K + b * block;
      const count = Math.min(block, K - b * block);
      let min = Infinity;
      let max = -Infinity;
      for (let i = 0; i < count; i++) {
        const v = rows[from + i]!;
        if (v < min) min = v;
        if (v > max) max = v;
      }
      let scale: number;
      let zp: number;
      if (zeroPoints) {
        min = Math.min(min, 0);
        max = Math.max(max, 0);
        scale = Math.fround((max - min) / qmax) || 1;
        zp = Math.min(qmax, Math.max(0, Math.round(-min / scale)));
        putZeroPoint(zeroPoints, zpPerOutput, n, b, zp, bits);
      } else {
        const absmax = Math.max(Math.abs(min), Math.abs(max));
        scale = Math.fround(absmax / ((1 << (bits - 1)) - 1)) || 1;
        zp = 1 << (bits - 1);
      }
      scales[n * blocks + b] = scale;
      const base = (n * blocks + b) * perBlock;
      // Padding past K quantizes 0 (the zero point), which adds nothing.
      for (let i = 0; i < block; i++) {
        const v = i < count ? rows[from + i]! : 0;
        putValue(data, base, i, Math.min(qmax, Math.max(0, Math.round(v / scale) + zp)), bits);
      }
    }
  }
  return { bits, block, K, N, data, scales, zeroPoints };
}

/** The weight a quantized one stands for, as N rows of K values ([out, in]). */
export function dequantizeRows(q: Quantized): Float32Array {
  const { bits, block, K, N } = q;
  const blocks = blocksOf(q);
  const perBlock = bytesPerBlock(q);
  const zpPerOutput = zeroPointsPerOutput(q);
  const out = new Float32Array(K * N);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < blocks; b++) {
      const scale = q.scales[n * blocks + b]!;
      let zp = 1 << (bits - 1);
      if (q.zeroPoints) {
        const z = q.zeroPoints[n * zpPerOutput + (bits === 4 ? b >> 1 : b)]!;
        zp = bits === 4 ? (z >> ((b & 1) * 4)) & 0xf : z;
      }
      const base = (n * blocks + b) * perBlock;
      const count = Math.min(block, K - b * block);
      for (let i = 0; i < count; i++) {
        const v = bits === 8 ? q.data[base + i]! : (q.data[base + (i >> 1)]! >> ((i & 1) * 4)) & 0xf;
        out[n * K + b * block + i] = (v - zp) * scale;
      }
    }
  }
  return out;
}

/** Whether quantized weights can be stacked along N into one (same K, bits, block, and zero points or not). */
export function stackable(qs: Quantized[]): boolean {
  const a = qs[0]!;
  return qs.every((q) => q.K === a.K && q.bits === a.bits && q.block === a.block && (q.zeroPoints === null) === (a.zeroPoints === null));
}

/**
 * Several quantized weights with the same inputs stacked along N into one
 * (their outputs side by side), each output scaled by its weight's factor:
 * a factor multiplies the block scales, the quantized values stay.
 */
export function stackQuantized(qs: Quantized[], factors: number[] = qs.map(() => 1)): Quantized {
  if (!stackable(qs)) throw new RangeError('stacked quantized weights need the same K, bits, block and zero-point form');
  const a = qs[0]!;
  const N = qs.reduce((s, q) => s + q.N, 0);
  const data = new Uint8Array(qs.reduce((s, q) => s + q.data.length, 0));
  const scales = new Float32Array(qs.reduce((s, q) => s + q.scales.length, 0));
  const zeroPoints = a.zeroPoints ? new Uint8Array(qs.reduce((s, q) => s + q.zeroPoints!.length, 0)) : null;
  let d = 0;
  let s = 0;
  let z = 0;
  qs.forEach((q, i) => {
    data.set(q.data, d);
    d += q.data.length;
    const f = factors[i]!;
    if (f === 1) scales.set(q.scales, s);
    else for (let j = 0; j < q.scales.length; j++) scales[s + j] = q.scales[j]! * f;
    s += q.scales.length;
    if (zeroPoints) {
      zeroPoints.set(q.zeroPoints!, z);
      z += q.zeroPoints!.length;
    }
  });
  return { bits: a.bits, block: a.block, K: a.K, N, data, scales, zeroPoints };
}
