import * as ort from 'onnxruntime-node';
import { DType, GraphBuilder } from '../drivers/portable/onnx-builder.ts';
const g = new GraphBuilder();
const m = g.input('m', DType.UINT32, ['S', 2]);
const x = g.input('x', DType.FLOAT, ['S', 2]);
const c = g.op('Less', [g.op('ReduceMin', [g.op('Cast', [m], { to: DType.INT64 })], { keepdims: 0 }), g.constInt64([0xffffffff])]);
const [y] = g.valuesIf(c, [DType.FLOAT], (b) => [b.op('Neg', [x])], () => [x]);
g.output(y!, 'y', DType.FLOAT, ['S', 2]);
g.output(c, 'c', DType.BOOL, [1]);
const s = await ort.InferenceSession.create(g.encode());
for (const w of [0xffff, 0xffffffff]) {
const r = await s.run({ m: new ort.Tensor('uint32', Uint32Array.of(0xffffffff, w), [1, 2]), x: new ort.Tensor('float32', Float32Array.of(1, 2), [1, 2]) });
console.log(r.c.data, r.y.data);
}
