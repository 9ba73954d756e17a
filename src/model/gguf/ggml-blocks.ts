/**
 * ggml's blocks onto the engine's weights (src/model/quantize.ts's
 * MatMulNBits layout), without a round trip through float where the layouts
 * allow:
 *
 *   Q8_0 → 8 bits, blocks of 32: q + 128 and d as the scale            exact
 *   Q4_0 → 4 bits, blocks of 32: the nibbles reordered, d as the scale  exact
 *   Q6_K → 8 bits, blocks of 16: q + 96 and d·scale as the scale        exact
 *   Q5_0 → 8 bits, blocks of 32: q + 112 and d as the scale             exact
 *   Q5_1 → 8 bits, blocks of 32 with zero points: 8·q, scale d/8,
 *          zero point round(−8·m / d)                                   offset within 1/16 of a step
 *   Q4_K → 8 bits, blocks of 32 with zero points: 16·q, scale d·sc/16,
 *          zero point round(16·dmin·m / (d·sc))                        offset within 1/32 of a step
 *        → 4 bits (when asked, `q4`): q, scale d·sc, zero point
 *          round(dmin·m / (d·sc))                                     offset within 1/2 a step
 *   F32, F16, BF16 → float32                                            exact
 *
 * A Q4_K sub-block whose offset does not fit a zero point is quantized anew
 * from its values (with zero points, over its own range). `dequantizeRows`
 * gives any type's values in float (ggml's own dequantization), for weights
 * that stay float and for checking.
 */
import { ModelLoadError } from '../errors.ts';
import { blocksOf, bytesPerBlock, putValue, putZeroPoint, quantizeRows, zeroPointsPerOutput, type Quantized } from '../quantize.ts';
import { halfToFloat } from '../safetensors.ts';
import { GgmlType, ggmlTypeName } from './ggml-types.ts';

/** f16 bits → float32, by table (ggml's scales are f16: one lookup each). */
const HALF = Float32Array.from({ length: 65536 }, (_, h) => halfToFloat(h));

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Q4_K's 6-bit scale and min of sub-block j from its 12 packed bytes (ggml's get_scale_min_k4). */
function scaleMinK4(s: Uint8Array, at: number, j: number): [number, number] {
  if (j < 4) return [s[at + j]! & 63, s[at + j + 4]! & 63];
  return [(s[at + j + 4]! & 0xf) | ((s[at + j - 4]! >> 6) << 4), (s[at + j + 4]! >> 4) | ((s[at + j]! >> 6) << 4)];
}

/** N rows of K values of any supported type, as float32 rows (ggml's dequantization). */
export function dequantizeRows(type: number, bytes: Uint8Array, N: number, K: number): Float32Array {
  const out = new Float32Array(N * K);
  const dv = view(bytes);
  const total = N * K;
  switch (type) {
    case GgmlType.F32:
      new Uint8Array(out.buffer).set(bytes.subarray(0, total * 4));
      return out;
    case GgmlType.F16:
      for (let i = 0; i < total; i++) out[i] = HALF[dv.getUint16(i * 2, true)]!;
      return out;
    case GgmlType.BF16: {
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < total; i++) bits[i] = dv.getUint16(i * 2, true) << 16;
      return out;
    }
    case GgmlType.Q8_0:
      for (let b = 0; b < total / 32; b++) {
        const d = HALF[dv.getUint16(b * 34, true)]!;
        for (let i = 0; i < 32; i++) out[b * 32 + i] = d * dv.getInt8(b * 34 + 2 + i);
      }
      return out;
    case GgmlType.Q4_0:
      for (let b = 0; b < total / 32; b++) {
        const d = HALF[dv.getUint16(b * 18, true)]!;
        for (let j = 0; j < 16; j++) {
          const q = bytes[b * 18 + 2 + j]!;
          out[b * 32 + j] = d * ((q & 0xf) - 8);
          out[b * 32 + j + 16] = d * ((q >> 4) - 8);
        }
      }
      return out;
    case GgmlType.Q5_0:
    case GgmlType.Q5_1: {
      const size = type === GgmlType.Q5_0 ? 22 : 24;
      const q = new Uint8Array(32);
      for (let b = 0; b < total / 32; b++) {
        const d = HALF[dv.getUint16(b * size, true)]!;
        const m = type === GgmlType.Q5_1 ? HALF[dv.getUint16(b * size + 2, true)]! : 0;
        q5Values(bytes, dv, b * size + (type === GgmlType.Q5_0 ? 2 : 4), q);
        for (let i = 0; i < 32; i++) out[b * 32 + i] = type === GgmlType.Q5_0 ? d * (q[i]! - 16) : d * q[i]! + m;
      }
      return out;
    }
    case GgmlType.Q4_K:
      for (let b = 0; b < total / 256; b++) {
        const base = b * 144;
        const d = HALF[dv.getUint16(base, true)]!;
        const dmin = HALF[dv.getUint16(base + 2, true)]!;
        for (let j = 0; j < 8; j++) {
          const [sc, m] = scaleMinK4(bytes, base + 4, j);
          // Sub-blocks 2c and 2c+1 share 32 bytes: the low nibbles, then the high ones.
          const qs = base + 16 + (j >> 1) * 32;
          const shift = (j & 1) * 4;
          for (let i = 0; i < 32; i++) out[b * 256 + j * 32 + i] = d * sc * ((bytes[qs + i]! >> shift) & 0xf) - dmin * m;
        }
      }
      return out;
    case GgmlType.Q6_K:
      for (let b = 0; b < total / 256; b++) q6kBlock(bytes, dv, b, (i, q, scale) => (out[b * 256 + i] = scale * (q - 32)));
      return out;
    default:
      throw new ModelLoadError(`tensor type ${ggmlTypeName(type)} is not supported`);
  }
}

/** Each value of Q6_K block `b` as its 6-bit q and its sub-block's float scale d·scales[i/16] (ggml's dequantize_row_q6_K order). */
function q6kBlock(bytes: Uint8Array, dv: DataView, b: number, each: (i: number, q: number, scale: number) => void): void {
  const base = b * 210;
  const d = HALF[dv.getUint16(base + 208, true)]!;
  for (let half = 0; half < 2; half++) {
    const ql = base + half * 64;
    const qh = base + 128 + half * 32;
    const sc = base + 192 + half * 8;
    for (let l = 0; l < 32; l++) {
      const is = l >> 4;
      const h = bytes[qh + l]!;
      const at = half * 128 + l;
      each(at, (bytes[ql + l]! & 0xf) | ((h & 3) << 4), d * dv.getInt8(sc + is));
      each(at + 32, (bytes[ql + l + 32]! & 0xf) | (((h >> 2) & 3) << 4), d * dv.getInt8(sc + is + 2));
      each(at + 64, (bytes[ql + l]! >> 4) | (((h >> 4) & 3) << 4), d * dv.getInt8(sc + is + 4));
      each(at + 96, (bytes[ql + l + 32]! >> 4) | (((h >> 6) & 3) << 4), d * dv.getInt8(sc + is + 6));
    }
  }
}

/** Whether a type maps onto the quantized kernels (rather than float). */
export function isQuantizedType(type: number): boolean {
  return type === GgmlType.Q8_0 || type === GgmlType.Q4_0 || type === GgmlType.Q5_0 || type === GgmlType.Q5_1 || type === GgmlType.Q4_K || type === GgmlType.Q6_K;
}

/**
 * N rows of K values of a quantized ggml type in the MatMulNBits layout (see
 * the table above). `q4kBits`: what Q4_K becomes.
 */
export function toNBits(type: number, bytes: Uint8Array, N: number, K: number, q4kBits: 4 | 8 = 8): Quantized {
  const dv = view(bytes);
  switch (type) {
    case GgmlType.Q8_0: {
      const blocks = K / 32;
      const data = new Uint8Array(N * K);
      const scales = new Float32Array(N * blocks);
      for (let b = 0; b < N * blocks; b++) {
        scales[b] = HALF[dv.getUint16(b * 34, true)]!;
        for (let i = 0; i < 32; i++) data[b * 32 + i] = (dv.getInt8(b * 34 + 2 + i) + 128) & 0xff;
      }
      return { bits: 8, block: 32, K, N, data, scales, zeroPoints: null };
    }
    case GgmlType.Q4_0: {
      const blocks = K / 32;
      const data = new Uint8Array(N * blocks * 16);
      const scales = new Float32Array(N * blocks);
      for (let b = 0; b < N * blocks; b++) {
        scales[b] = HALF[dv.getUint16(b * 18, true)]!;
        const qs = b * 18 + 2;
        // ggml: value j low nibble of qs[j], value j+16 high nibble. Here: value 2i low nibble of byte i, 2i+1 high.
        for (let i = 0; i < 16; i++) {
          const v0 = 2 * i;
          const v1 = 2 * i + 1;
          const lo = v0 < 16 ? bytes[qs + v0]! & 0xf : bytes[qs + v0 - 16]! >> 4;
          const hi = v1 < 16 ? bytes[qs + v1]! & 0xf : bytes[qs + v1 - 16]! >> 4;
          data[b * 16 + i] = lo | (hi << 4);
        }
      }
      return { bits: 4, block: 32, K, N, data, scales, zeroPoints: null };
    }
    case GgmlType.Q6_K: {
      const data = new Uint8Array(N * K);
      const scales = new Float32Array((N * K) / 16);
      for (let b = 0; b < (N * K) / 256; b++) {
        q6kBlock(bytes, dv, b, (i, q, scale) => {
          data[b * 256 + i] = q + 96; // (q + 96) − 128 = q − 32
          scales[(b * 256 + i) >> 4] = scale;
        });
      }
      return { bits: 8, block: 16, K, N, data, scales, zeroPoints: null };
    }
    case GgmlType.Q5_0: {
      const data = new Uint8Array(N * K);
      const scales = new Float32Array((N * K) / 32);
      const q = new Uint8Array(32);
      for (let b = 0; b < (N * K) / 32; b++) {
        scales[b] = HALF[dv.getUint16(b * 22, true)]!;
        q5Values(bytes, dv, b * 22 + 2, q);
        for (let i = 0; i < 32; i++) data[b * 32 + i] = q[i]! + 112; // (q + 112) − 128 = q − 16
      }
      return { bits: 8, block: 32, K, N, data, scales, zeroPoints: null };
    }
    case GgmlType.Q5_1:
      // value = d·q + m: s = d, o = −m.
      return offsetBlocksToNBits(N, K, 8, 5, (b, q) => {
        q5Values(bytes, dv, b * 24 + 4, q);
        return [HALF[dv.getUint16(b * 24, true)]!, -HALF[dv.getUint16(b * 24 + 2, true)]!];
      });
    case GgmlType.Q4_K:
      return q4kToNBits(bytes, dv, N, K, q4kBits);
    default:
      throw new ModelLoadError(`tensor type ${ggmlTypeName(type)} has no quantized mapping`);
  }
}

/**
 * Blocks of 32 whose values are s·q − o (q unsigned, `qBits` wide) onto
 * `bits` with zero points: q·f, scale s/f and zero point round(o·f/s), where
 * f = 2^(bits − qBits). A block whose zero point does not fit (or whose scale
 * is 0) is quantized anew from its values.
 */
function offsetBlocksToNBits(N: number, K: number, bits: 4 | 8, qBits: number, read: (block: number, q: Uint8Array) => [number, number]): Quantized {
  const shape = { bits, block: 32, K } as const;
  const blocks = blocksOf(shape);
  const perBlock = bytesPerBlock(shape);
  const zpPerOutput = zeroPointsPerOutput(shape);
  const data = new Uint8Array(N * blocks * perBlock);
  const scales = new Float32Array(N * blocks);
  const zeroPoints = new Uint8Array(N * zpPerOutput);
  const factor = 2 ** (bits - qBits);
  const zmax = (1 << bits) - 1;
  const q = new Uint8Array(32);
  const values = new Float32Array(32);
  for (let blockIndex = 0; blockIndex < N * blocks; blockIndex++) {
    const n = Math.floor(blockIndex / blocks);
    const b = blockIndex % blocks;
    const [s, o] = read(blockIndex, q);
    const z = s > 0 ? Math.round((factor * o) / s) : -1;
    let scale: number;
    let zp: number;
    const at = blockIndex * perBlock;
    if (z >= 0 && z <= zmax) {
      scale = s / factor;
      zp = z;
      for (let i = 0; i < 32; i++) putValue(data, at, i, q[i]! * factor, bits);
    } else {
      for (let i = 0; i < 32; i++) values[i] = s * q[i]! - o;
      const one = quantizeRows(values, 1, 32, { bits, block: 32, zeroPoints: true });
      scale = one.scales[0]!;
      zp = bits === 8 ? one.zeroPoints![0]! : one.zeroPoints![0]! & 0xf;
      data.set(one.data, at);
    }
    scales[blockIndex] = scale;
    putZeroPoint(zeroPoints, zpPerOutput, n, b, zp, bits);
  }
  return { bits, block: 32, K, N, data, scales, zeroPoints };
}

/** Q4_K's sub-blocks (8 to a super-block of 256, in row order): q of 4 bits, s = d·sc, o = dmin·m. */
function q4kToNBits(bytes: Uint8Array, dv: DataView, N: number, K: number, bits: 4 | 8): Quantized {
  return offsetBlocksToNBits(N, K, bits, 4, (blockIndex, q) => {
    const base = (blockIndex >> 3) * 144;
    const j = blockIndex & 7;
    const [sc, m] = scaleMinK4(bytes, base + 4, j);
    const qs = base + 16 + (j >> 1) * 32;
    const shift = (j & 1) * 4;
    for (let i = 0; i < 32; i++) q[i] = (bytes[qs + i]! >> shift) & 0xf;
    return [HALF[dv.getUint16(base, true)]! * sc, HALF[dv.getUint16(base + 2, true)]! * m];
  });
}

/** Q5_0's or Q5_1's 5-bit values of block b: the low nibbles from qs, the fifth bits from qh (bit j for value j). */
function q5Values(bytes: Uint8Array, dv: DataView, at: number, q: Uint8Array): void {
  const qh = dv.getUint32(at, true);
  for (let j = 0; j < 16; j++) {
    const byte = bytes[at + 4 + j]!;
    q[j] = (byte & 0xf) | (((qh >> j) & 1) << 4);
    q[j + 16] = (byte >> 4) | (((qh >> (j + 16)) & 1) << 4);
  }
}

/** The same rows, reordered: row r of the result is row `order[r]` of `q`. */
export function permuteQuantizedRows(q: Quantized, order: number[]): Quantized {
  const rowBytes = blocksOf(q) * bytesPerBlock(q);
  const rowScales = blocksOf(q);
  const rowZp = zeroPointsPerOutput(q);
  const data = new Uint8Array(q.data.length);
  const scales = new Float32Array(q.scales.length);
  const zeroPoints = q.zeroPoints ? new Uint8Array(q.zeroPoints.length) : null;
  order.forEach((src, dst) => {
    data.set(q.data.subarray(src * rowBytes, (src + 1) * rowBytes), dst * rowBytes);
    scales.set(q.scales.subarray(src * rowScales, (src + 1) * rowScales), dst * rowScales);
    if (zeroPoints) zeroPoints.set(q.zeroPoints!.subarray(src * rowZp, (src + 1) * rowZp), dst * rowZp);
  });
  return { ...q, data, scales, zeroPoints };
}
