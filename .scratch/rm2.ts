import * as ort from 'onnxruntime-node';
import { DType, GraphBuilder } from '../drivers/portable/onnx-builder.ts';
for (const [S, W] of [[1, 2], [3, 16], [2, 16], [3, 2]]) {
const g = new GraphBuilder();
const m = g.input('m', DType.UINT32, ['S', 'W']);
const ci = g.op('Cast', [m], { to: DType.INT64 });
g.output(g.op('ReduceMin', [ci], { keepdims: 0 }), 'min', DType.INT64, []);
g.output(g.op('ReduceMin', [ci, g.constInt64([0, 1])], { keepdims: 0 }), 'min2', DType.INT64, []);
g.output(g.op('ReduceMax', [g.op('Cast', [g.op('BitwiseNot', [m])], { to: DType.INT64 }), g.constInt64([0, 1])], { keepdims: 0 }), 'max3', DType.INT64, []);
const s = await ort.InferenceSession.create(g.encode());
const d = new Uint32Array(S * W).fill(0xffffffff); d[d.length - 1] = 7;
const r = await s.run({ m: new ort.Tensor('uint32', d, [S, W]) });
console.log(S, W, r.min.data, r.min2.data, r.max3.data);
}
