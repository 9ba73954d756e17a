import * as ort from 'onnxruntime-node';
import { DType, GraphBuilder } from '../drivers/portable/onnx-builder.ts';
for (const [S, W] of [[1, 2], [3, 16], [2, 16], [3, 2], [32, 1000], [0, 1000]]) {
const g = new GraphBuilder();
const m = g.input('m', DType.UINT32, ['S', 'W']);
g.output(g.op('ReduceMax', [g.op('Cast', [g.op('BitwiseNot', [m])], { to: DType.FLOAT })], { keepdims: 0 }), 'mx', DType.FLOAT, []);
const s = await ort.InferenceSession.create(g.encode());
for (const pos of [0, S * W - 1, Math.floor(S * W / 2)]) {
const d = new Uint32Array(S * W).fill(0xffffffff); if (S) d[pos] = 0xfffffffe;
const r = await s.run({ m: new ort.Tensor('uint32', d, [S, W]) });
const d2 = new Uint32Array(S * W).fill(0xffffffff);
const r2 = await s.run({ m: new ort.Tensor('uint32', d2, [S, W]) });
console.log(S, W, pos, r.mx.data, r2.mx.data);
}}
