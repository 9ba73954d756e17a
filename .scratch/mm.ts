import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { quantizeRows } from '../src/model/quantize.ts';
const { onnx } = onnxProto;
const T = onnx.AttributeProto.AttributeType;
const int = (name: string, i: number) => ({ name, type: T.INT, i });
const io = (name: string, t: number, dims: (number|string)[]) => ({ name, type: { tensorType: { elemType: t, shape: { dim: dims.map((d) => typeof d === 'number' ? { dimValue: d } : { dimParam: d }) } } } });
async function time(kind: string, K: number, N: number, block = 32, acc = 4) {
  const inits: any[] = []; const nodes: any[] = [];
  const w = new Float32Array(K * N).map(() => Math.random() - 0.5);
  if (kind === 'fp32') { inits.push({ name: 'W', dims: [K, N], dataType: 1, rawData: new Uint8Array(w.buffer) }); nodes.push({ opType: 'MatMul', input: ['A', 'W'], output: ['Y'] }); }
  else { const bits = kind === 'q4' ? 4 : 8; const q = quantizeRows(w, N, K, { bits, block }); inits.push({ name: 'B', dims: [N, K / block, block * bits / 8], dataType: 2, rawData: q.data }, { name: 'S', dims: [N * K / block], dataType: 1, rawData: new Uint8Array(q.scales.buffer) }); nodes.push({ opType: 'MatMulNBits', domain: 'com.microsoft', input: ['A', 'B', 'S'], output: ['Y'], attribute: [int('K', K), int('N', N), int('bits', bits), int('block_size', block), int('accuracy_level', acc)] }); }
  const m = onnx.ModelProto.encode(onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: '', version: 18 }, { domain: 'com.microsoft', version: 1 }], graph: { name: 'g', node: nodes, initializer: inits, input: [io('A', 1, ['M', K])], output: [io('Y', 1, ['M', N])] } })).finish();
  const s = await ort.InferenceSession.create(m, { intraOpNumThreads: 2, graphOptimizationLevel: 'all' });
  const out: string[] = [];
  for (const M of [1, 8, 32, 128]) {
    const a = new ort.Tensor('float32', new Float32Array(M * K).map(() => Math.random()), [M, K]);
    for (let i = 0; i < 10; i++) await s.run({ A: a });
    const t: number[] = [];
    for (let i = 0; i < 60; i++) { const t0 = performance.now(); await s.run({ A: a }); t.push(performance.now() - t0); }
    t.sort((a, b) => a - b); out.push((t[30]! * 1000).toFixed(0).padStart(6));
  }
  console.log(`${K}x${N}`.padEnd(10), kind, block, acc, out.join(' '));
}
for (const [K, N] of [[512, 1024], [512, 3072], [1536, 512], [512, 32000]]) {
  await time('fp32', K, N);
  await time('q8', K, N);
  await time('q4', K, N);
  await time('q4', K, N, 32, 0);
  await time('q4', K, N, 128);
}
