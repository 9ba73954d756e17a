import onnxProto from 'onnx-proto';
import { buildGraph } from '../drivers/portable/graph.ts';
import { loadModel } from '../src/model/load.ts';
const m = loadModel('/tmp/tiny-scratch');
const model = onnxProto.onnx.ModelProto.decode(buildGraph({ config: m.config, weights: m.weights, numSlots: 64 * 16 }));
for (const i of model.graph!.initializer!.filter((i) => i.name === 'const_17')) console.log(i.dataType, i.dims, i.rawData);
