import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
const { onnx } = onnxProto;
const T = onnx.AttributeProto.AttributeType;
const io = (name: string, t: number, dims: (number|string)[]) => ({ name, type: { tensorType: { elemType: t, shape: { dim: dims.map((d) => typeof d === 'number' ? { dimValue: d } : { dimParam: d }) } } } });
// Per-row dynamic int8 quantization of A, MatMulInteger with int8 per-channel weights, rescale.
async function time(K: number, N: number) {
  const inits: any[] = [
    { name: 'W', dims: [K, N], dataType: 3, rawData: new Uint8Array(K * N).map(() => Math.random() * 255) },
    { name: 'WS', dims: [N], dataType: 1, rawData: new Uint8Array(new Float32Array(N).fill(0.01).buffer) },
    { name: 'ax', dims: [1], dataType: 7, rawData: new Uint8Array(BigInt64Array.of(-1n).buffer) },
    { name: 'c127', dims: [], dataType: 1, rawData: new Uint8Array(Float32Array.of(127).buffer) },
    { name: 'c128', dims: [], dataType: 1, rawData: new Uint8Array(Float32Array.of(128).buffer) },
    { name: 'azp', dims: [], dataType: 2, rawData: Uint8Array.of(128) },
    { name: 'eps', dims: [], dataType: 1, rawData: new Uint8Array(Float32Array.of(1e-12).buffer) },
  ];
  const nodes: any[] = [
    { opType: 'Abs', input: ['A'], output: ['absA'] },
    { opType: 'ReduceMax', input: ['absA', 'ax'], output: ['mx'], attribute: [{ name: 'keepdims', type: T.INT, i: 1 }] },
    { opType: 'Max', input: ['mx', 'eps'], output: ['mx2'] },
    { opType: 'Div', input: ['mx2', 'c127'], output: ['sc'] },
    { opType: 'Div', input: ['A', 'sc'], output: ['as'] },
    { opType: 'Round', input: ['as'], output: ['ar'] },
    { opType: 'Add', input: ['ar', 'c128'], output: ['ar2'] },
    { opType: 'Cast', input: ['ar2'], output: ['ai'], attribute: [{ name: 'to', type: T.INT, i: 2 }] },
    { opType: 'MatMulInteger', input: ['ai', 'W', 'azp'], output: ['Yi'] },
    { opType: 'Cast', input: ['Yi'], output: ['Yf'], attribute: [{ name: 'to', type: T.INT, i: 1 }] },
    { opType: 'Mul', input: ['Yf', 'sc'], output: ['Y1'] },
    { opType: 'Mul', input: ['Y1', 'WS'], output: ['Y'] },
  ];
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
  console.log(`${K}x${N}`.padEnd(10), 'mmi-u8s8', out.join(' '));
}
for (const [K, N] of [[512, 1024], [512, 3072], [1536, 512], [512, 32000]]) await time(K, N);
