/**
 * Block-wise weight-only quantization (issue 16's first piece): a K × N
 * weight of a MatMul (`A[M, K] · W[K, N]`, row-major, as the graph builder
 * lays its projections out) into the layout of ONNX Runtime's `MatMulNBits`
 * (com.microsoft):
 *
 *   data        uint8 [N, K / block, block · bits / 8]: column n's K values in
 *               blocks; 4-bit values two to a byte, the first in the low nibble
 *   scales      float [N · K / block]
 *   zeroPoints  uint8, with `zeroPoints: true` only: [N, ceil(K / block / 2)]
 *               packed the same way for 4 bits, [N, K / block] for 8
 *
 * Symmetric (the default): scale = max |w| / (2^(bits-1) - 1) and the
 * kernel's implied zero point (8 or 128). With zero points: scale =
 * (max - min) / (2^bits - 1), the zero point rounding -min / scale.
 */

export interface Quantized {
  bits: 4 | 8;
  block: number;
  K: number;
  N: number;
  data: Uint8Array;
  scales: Float32Array;
  zeroPoints: Uint8Array | null;
}

export function quantizeBlockwise(w: Float32Array, K: number, N: number, options: { bits: 4 | 8; block?: number; zeroPoints?: boolean }): Quantized {
  const bits = options.bits;
  const block = options.block ?? 32;
  if (w.length !== K * N) throw new RangeError(`a ${K} × ${N} weight has ${K * N} values, got ${w.length}`);
  if (K % block !== 0) throw new RangeError(`K (${K}) must be a multiple of the block (${block})`);
  if (bits === 4 && block % 2 !== 0) throw new RangeError('4-bit blocks hold an even number of values');
  const blocks = K / block;
  const perBlock = (block * bits) / 8;
  const qmax = (1 << bits) - 1;
  const data = new Uint8Array(N * blocks * perBlock);
  const scales = new Float32Array(N * blocks);
  const zpPerColumn = bits === 4 ? Math.ceil(blocks / 2) : blocks;
  const zeroPoints = options.zeroPoints ? new Uint8Array(N * zpPerColumn) : null;
  const values = new Float32Array(block);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < blocks; b++) {
      let min = Infinity;
      let max = -Infinity;
      for (let i = 0; i < block; i++) {
        const v = w[(b * block + i) * N + n]!;
        values[i] = v;
        if (v < min) min = v;
        if (v > max) max = v;
      }
      let scale: number;
      let zp: number;
      if (zeroPoints) {
        min = Math.min(min, 0);
        max = Math.max(max, 0);
        scale = (max - min) / qmax || 1;
        zp = Math.min(qmax, Math.max(0, Math.round(-min / scale)));
        const at = n * zpPerColumn + (bits === 4 ? b >> 1 : b);
        zeroPoints[at] = bits === 4 ? zeroPoints[at]! | (zp << ((b & 1) * 4)) : zp;
      } else {
        const absmax = Math.max(Math.abs(min), Math.abs(max));
        scale = absmax / ((1 << (bits - 1)) - 1) || 1;
        zp = 1 << (bits - 1);
      }
      scales[n * blocks + b] = scale;
      const base = (n * blocks + b) * perBlock;
      for (let i = 0; i < block; i++) {
        const q = Math.min(qmax, Math.max(0, Math.round(values[i]! / scale) + zp));
        if (bits === 8) data[base + i] = q;
        else data[base + (i >> 1)] = data[base + (i >> 1)]! | (q << ((i & 1) * 4));
      }
    }
  }
  return { bits, block, K, N, data, scales, zeroPoints };
}

/** The weight a quantized one stands for, K × N row-major (what the kernel computes with). */
export function dequantize(q: Quantized): Float32Array {
  const { bits, block, K, N } = q;
  const blocks = K / block;
  const perBlock = (block * bits) / 8;
  const zpPerColumn = bits === 4 ? Math.ceil(blocks / 2) : blocks;
  const out = new Float32Array(K * N);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < blocks; b++) {
      const scale = q.scales[n * blocks + b]!;
      let zp = 1 << (bits - 1);
      if (q.zeroPoints) {
        const z = q.zeroPoints[n * zpPerColumn + (bits === 4 ? b >> 1 : b)]!;
        zp = bits === 4 ? (z >> ((b & 1) * 4)) & 0xf : z;
      }
      const base = (n * blocks + b) * perBlock;
      for (let i = 0; i < block; i++) {
        const v = bits === 8 ? q.data[base + i]! : (q.data[base + (i >> 1)]! >> ((i & 1) * 4)) & 0xf;
        out[(b * block + i) * N + n] = (v - zp) * scale;
      }
    }
  }
  return out;
}
