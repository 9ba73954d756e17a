import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { quantizeBlockwise, dequantize } from '../src/model/quantize.ts';
const { onnx } = onnxProto;
const T = onnx.AttributeProto.AttributeType;
const int = (name: string, i: number) => ({ name, type: T.INT, i });
function enc(nodes: any[], inits: any[], inputs: any[], outputs: any[]) {
  const m = onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: '', version: 18 }, { domain: 'com.microsoft', version: 1 }], graph: { name: 'g', node: nodes, initializer: inits, input: inputs, output: outputs } });
  return onnx.ModelProto.encode(m).finish();
}
const io = (name: string, t: number, dims: (number|string)[]) => ({ name, type: { tensorType: { elemType: t, shape: { dim: dims.map((d) => typeof d === 'number' ? { dimValue: d } : { dimParam: d }) } } } });
const N = 100, K = 64;
const w = new Float32Array(K * N).map(() => Math.random() - 0.5);
for (const bits of [4, 8] as const) {
  const q = quantizeBlockwise(w, K, N, { bits, block: 32 });
  const deq = dequantize(q); // K x N
  const blocks = K / 32;
  const m = enc([{ opType: 'GatherBlockQuantized', domain: 'com.microsoft', input: ['D', 'I', 'S'], output: ['Y'], attribute: [int('gather_axis', 0), int('quantize_axis', 1), int('block_size', 32), int('bits', bits)] }],
    [{ name: 'D', dims: [N, (K * bits) / 8], dataType: 2, rawData: q.data }, { name: 'S', dims: [N, blocks], dataType: 1, rawData: new Uint8Array(q.scales.buffer) }],
    [io('I', 7, ['M'])], [io('Y', 1, ['M', K])]);
  try {
    const s = await ort.InferenceSession.create(m);
    const r = await s.run({ I: new ort.Tensor('int64', BigInt64Array.from([0n, 5n, 99n]), [3]) });
    const y = r.Y.data as Float32Array;
    let err = 0;
    [0, 5, 99].forEach((n, i) => { for (let k = 0; k < K; k++) err = Math.max(err, Math.abs(y[i * K + k]! - deq[k * N + n]!)); });
    console.log('gbq bits', bits, 'maxerr', err);
  } catch (e) { console.log('gbq bits', bits, 'FAIL', (e as Error).message.slice(0, 300)); }
}
// MatMulNBits with float zero points
{
  const q = quantizeBlockwise(w, K, N, { bits: 4, block: 32 });
  const blocks = K / 32;
  const zp = new Float32Array(N * blocks).fill(7.3);
  for (const acc of [0, 4]) {
    const m = enc([{ opType: 'MatMulNBits', domain: 'com.microsoft', input: ['A', 'B', 'S', 'Z'], output: ['Y'], attribute: [int('K', K), int('N', N), int('bits', 4), int('block_size', 32), int('accuracy_level', acc)] }],
      [{ name: 'B', dims: [N, blocks, 16], dataType: 2, rawData: q.data }, { name: 'S', dims: [N * blocks], dataType: 1, rawData: new Uint8Array(q.scales.buffer) }, { name: 'Z', dims: [N * blocks], dataType: 1, rawData: new Uint8Array(zp.buffer) }],
      [io('A', 1, ['M', K])], [io('Y', 1, ['M', N])]);
    try {
      const s = await ort.InferenceSession.create(m);
      const a = new Float32Array(K).map(() => Math.random());
      const r = await s.run({ A: new ort.Tensor('float32', a, [1, K]) });
      const y = r.Y.data as Float32Array;
      // reference: (q - 7.3)*scale
      let err = 0;
      for (let n = 0; n < N; n++) { let acc2 = 0; for (let k = 0; k < K; k++) { const b = k >> 5, i = k & 31; const byte = q.data[(n * blocks + b) * 16 + (i >> 1)]!; const v = (byte >> ((i & 1) * 4)) & 15; acc2 += a[k]! * (v - 7.3) * q.scales[n * blocks + b]!; } err = Math.max(err, Math.abs(acc2 - y[n]!)); }
      console.log('mnb float zp acc', acc, 'maxerr', err);
    } catch (e) { console.log('mnb float zp acc', acc, 'FAIL', (e as Error).message.slice(0, 300)); }
  }
}
// 8 bit block 16
{
  const q = quantizeBlockwise(w, K, N, { bits: 8, block: 16 });
  const deq = dequantize(q);
  const blocks = K / 16;
  for (const acc of [0, 4]) {
    const m = enc([{ opType: 'MatMulNBits', domain: 'com.microsoft', input: ['A', 'B', 'S'], output: ['Y'], attribute: [int('K', K), int('N', N), int('bits', 8), int('block_size', 16), int('accuracy_level', acc)] }],
      [{ name: 'B', dims: [N, blocks, 16], dataType: 2, rawData: q.data }, { name: 'S', dims: [N * blocks], dataType: 1, rawData: new Uint8Array(q.scales.buffer) }],
      [io('A', 1, ['M', K])], [io('Y', 1, ['M', N])]);
    try {
      const s = await ort.InferenceSession.create(m);
      const a = new Float32Array(K).map(() => Math.random());
      const r = await s.run({ A: new ort.Tensor('float32', a, [1, K]) });
      const y = r.Y.data as Float32Array; let err = 0;
      for (let n = 0; n < N; n++) { let s2 = 0; for (let k = 0; k < K; k++) s2 += a[k]! * deq[k * N + n]!; err = Math.max(err, Math.abs(s2 - y[n]!)); }
      console.log('mnb 8bit b16 acc', acc, 'maxerr', err);
    } catch (e) { console.log('mnb 8bit b16 acc', acc, 'FAIL', (e as Error).message.slice(0, 300)); }
  }
}
