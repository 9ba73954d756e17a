import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { dequantize, quantizeBlockwise, type Quantized } from './quantize.ts';

const { onnx } = onnxProto;

/** A deterministic weight with a few outliers, as real projections have. */
function weight(K: number, N: number): Float32Array {
  let s = 12345;
  const rand = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5;
  return Float32Array.from({ length: K * N }, (_, i) => rand() * (i % 97 === 0 ? 8 : 1));
}

/** ONNX Runtime's MatMulNBits on `q` applied to `a` [M, K]. */
async function kernel(q: Quantized, a: Float32Array, M: number, accuracy: number): Promise<Float32Array> {
  const int = (name: string, i: number) => ({ name, type: onnx.AttributeProto.AttributeType.INT, i });
  const blocks = q.K / q.block;
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

  it('refuses shapes the kernel does not take', () => {
    expect(() => quantizeBlockwise(new Float32Array(40 * 2), 40, 2, { bits: 4 })).toThrow(/multiple of the block/);
    expect(() => quantizeBlockwise(new Float32Array(3), 32, 2, { bits: 8 })).toThrow(/has 64 values/);
  });
});
