import onnxProto from 'onnx-proto';
import { buildGraph } from '../drivers/portable/graph.ts';
import { loadModel } from '../src/model/load.ts';
const m = loadModel('/tmp/tiny-scratch');
const bytes = buildGraph({ config: m.config, weights: m.weights, numSlots: 64 * 16 });
const model = onnxProto.onnx.ModelProto.decode(bytes);
const nodes = model.graph!.node!;
for (const n of nodes.filter((n) => ['If', 'Less', 'ReduceMin'].includes(n.opType!))) console.log(n.opType, n.input, n.output, n.attribute?.map((a) => a.name + ':' + (a.g?.node?.map((x) => x.opType).join(','))));
