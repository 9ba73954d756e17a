import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { blocksOf, dequantizeRows, quantizeRows, stackQuantized, type QuantizeOptions, type Quantized } from './quantize.ts';

const { onnx } = onnxProto;

/** Quantizes `w`, a K × N weight stored row-major (the `A · W` layout of a MatMul), through its rows. */
function quantizeBlockwise(w: Float32Array, K: number, N: number, options: QuantizeOptions): Quantized {
  const rows = new Float32Array(K * N);
  for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) rows[n * K + k] = w[k * N + n]!;
  return quantizeRows(rows, N, K, options);
}

/** The weight a quantized one stands for, K × N row-major (what the kernel computes with). */
function dequantize(q: Quantized): Float32Array {
  const rows = dequantizeRows(q);
  const out = new Float32Array(q.K * q.N);
  for (let n = 0; n < q.N; n++) for (let k = 0; k < q.K; k++) out[k * q.N + n] = rows[n * q.K + k]!;
  return out;
}

/** A deterministic weight with a few outliers, as real projections have. */
function weight(K: number, N: number): Float32Array {
  let s = 12345;
  const rand = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5;
  return Float32Array.from({ length: K * N }, (_, i) => rand() * (i % 97 === 0 ? 8 : 1));
}

/** ONNX Runtime's MatMulNBits on `q` applied to `a` [M, K]. */
async function kernel(q: Quantized, a: Float32Array, M: number, accuracy: number): Promise<Float32Array> {
  const int = (name: string, i: number) => ({ name, type: onnx.AttributeProto.AttributeType.INT, i });
  const blocks = blocksOf(q);
  const inits: onnxProto.onnx.ITensorProto[] = [
    { name: 'B', dims: [q.N, blocks, (q.block * q.bits) / 8], dataType: 2, rawData: q.data },
    { name: 'S', dims: [q.N * blocks], dataType: 1, rawData: new Uint8Array(q.scales.buffer) },
  ];
  const inputs = ['A', 'B', 'S'];
  if (q.zeroPoints) {
    inits.push({ name: 'Z', dims: [q.zeroPoints.length], dataType: 2, rawData: q.zeroPoints });
    inputs.push('Z');
  }
  const io = (name: string, last: number) => ({ name, type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: M }, { dimValue: last }] } } } });
  const model = onnx.ModelProto.encode(
    onnx.ModelProto.create({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }, { domain: 'com.microsoft', version: 1 }],
      graph: { name: 'g', initializer: inits, input: [io('A', q.K)], output: [io('Y', q.N)], node: [{ opType: 'MatMulNBits', domain: 'com.microsoft', input: inputs, output: ['Y'], attribute: [int('K', q.K), int('N', q.N), int('bits', q.bits), int('block_size', q.block), int('accuracy_level', accuracy)] }] },
    }),
  ).finish();
  const s = await ort.InferenceSession.create(model);
  const y = (await s.run({ A: new ort.Tensor('float32', a, [M, q.K]) })).Y!.data as Float32Array;
  await s.release();
  return y;
}

function matmul(a: Float32Array, w: Float32Array, M: number, K: number, N: number): Float32Array {
  const y = new Float32Array(M * N);
  for (let m = 0; m < M; m++) for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) y[m * N + n]! += a[m * K + k]! * w[k * N + n]!;
  return y;
}

describe('block-wise quantization for MatMulNBits', () => {
  const K = 128;
  const N = 48;
  const w = weight(K, N);

  it.each([
    [8, false],
    [8, true],
    [4, false],
    [4, true],
  ] as const)('%i bits (zero points: %s): each value within half a step of its block, and ONNX Runtime computes with exactly the weight it stands for', async (bits, zeroPoints) => {
    const q = quantizeBlockwise(w, K, N, { bits, zeroPoints });
    const back = dequantize(q);
    for (let k = 0; k < K; k++) {
      for (let n = 0; n < N; n++) {
        const scale = q.scales[n * (K / 32) + Math.floor(k / 32)]!;
        expect(Math.abs(back[k * N + n]! - w[k * N + n]!)).toBeLessThanOrEqual(scale / 2 + 1e-6);
      }
    }
    // The layout is the kernel's: its product equals the product with the dequantized weight (fp32 activations).
    const M = 3;
    const a = weight(M, K);
    const got = await kernel(q, a, M, 0);
    const want = matmul(a, back, M, K, N);
    for (let i = 0; i < got.length; i++) expect(got[i]!).toBeCloseTo(want[i]!, 3);
  });

  it('pads a K that is not a multiple of the block, and the kernel takes it (stories260K\'s MLP has K = 172)', async () => {
    const K2 = 172;
    const rows = weight(N, K2);
    for (const bits of [4, 8] as const) {
      const q = quantizeRows(rows, N, K2, { bits });
      expect(q.scales.length).toBe(N * 6);
      const back = dequantizeRows(q);
      for (let i = 0; i < rows.length; i++) expect(Math.abs(back[i]! - rows[i]!)).toBeLessThanOrEqual(q.scales[Math.floor(i / K2) * 6 + Math.floor((i % K2) / 32)]! / 2 + 1e-6);
      const a = weight(2, K2);
      const got = await kernel(q, a, 2, 0);
      const want = matmul(a, dequantize(q), 2, K2, N);
      for (let i = 0; i < got.length; i++) expect(got[i]!).toBeCloseTo(want[i]!, 3);
    }
  });

  it('stacks weights along N with a factor per weight: the same as quantizing the scaled, stacked weight', () => {
    const a = weight(16, 64);
    const b = weight(8, 64).map((v) => v * 3);
    const qa = quantizeRows(a, 16, 64, { bits: 4 });
    const qb = quantizeRows(b, 8, 64, { bits: 4 });
    const both = stackQuantized([qa, qb], [0.125, 1]);
    expect(both.N).toBe(24);
    const back = dequantizeRows(both);
    const wantA = dequantizeRows(qa).map((v) => v * 0.125);
    const wantB = dequantizeRows(qb);
    expect(Array.from(back.subarray(0, 16 * 64))).toEqual(Array.from(wantA));
    expect(Array.from(back.subarray(16 * 64))).toEqual(Array.from(wantB));
    expect(() => stackQuantized([qa, quantizeRows(b, 8, 64, { bits: 8 })])).toThrow(/same K, bits, block/);
  });

  it('refuses what the kernel does not take', () => {
    expect(() => quantizeRows(new Float32Array(64), 2, 32, { bits: 4, block: 24 })).toThrow(/must be one of 16, 32, 64, 128, 256/);
    expect(() => quantizeRows(new Float32Array(64), 2, 32, { bits: 4, block: 8 })).toThrow(/must be one of 16, 32, 64, 128, 256/);
    expect(() => quantizeRows(new Float32Array(64), 2, 32, { bits: 3 as 4 })).toThrow(/bits must be 4 or 8/);
    expect(() => quantizeRows(new Float32Array(3), 2, 32, { bits: 8 })).toThrow(/a 2 × 32 weight has 64 values, got 3/);
  });
});
