import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
const { onnx } = onnxProto;
const T = onnx.AttributeProto.AttributeType;
const int = (name: string, i: number) => ({ name, type: T.INT, i });
const io = (name: string, t: number, dims: (number|string)[]) => ({ name, type: { tensorType: { elemType: t, shape: { dim: dims.map((d) => typeof d === 'number' ? { dimValue: d } : { dimParam: d }) } } } });
const K = 2048, N = 8192;
async function time(bits: number, block: number, zp: 'none' | 'u8' | 'f32', acc: number) {
  const blocks = K / block;
  const inits: any[] = [{ name: 'B', dims: [N, blocks, block * bits / 8], dataType: 2, rawData: new Uint8Array(N * blocks * block * bits / 8).map(() => Math.random() * 256) }, { name: 'S', dims: [N * blocks], dataType: 1, rawData: new Uint8Array(new Float32Array(N * blocks).fill(0.01).buffer) }];
  const inputs = ['A', 'B', 'S'];
  if (zp === 'u8') { const per = bits === 4 ? Math.ceil(blocks / 2) : blocks; inits.push({ name: 'Z', dims: [N * per], dataType: 2, rawData: new Uint8Array(N * per).fill(bits === 4 ? 0x77 : 120) }); inputs.push('Z'); }
  if (zp === 'f32') { inits.push({ name: 'Z', dims: [N * blocks], dataType: 1, rawData: new Uint8Array(new Float32Array(N * blocks).fill(7.5).buffer) }); inputs.push('Z'); }
  const m = onnx.ModelProto.encode(onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: '', version: 18 }, { domain: 'com.microsoft', version: 1 }], graph: { name: 'g', node: [{ opType: 'MatMulNBits', domain: 'com.microsoft', input: inputs, output: ['Y'], attribute: [int('K', K), int('N', N), int('bits', bits), int('block_size', block), int('accuracy_level', acc)] }], initializer: inits, input: [io('A', 1, ['M', K])], output: [io('Y', 1, ['M', N])] } })).finish();
  const s = await ort.InferenceSession.create(m, { intraOpNumThreads: 2 });
  const out: string[] = [];
  for (const M of [1, 8, 32]) {
    const a = new ort.Tensor('float32', new Float32Array(M * K).map(() => Math.random()), [M, K]);
    for (let i = 0; i < 5; i++) await s.run({ A: a });
    const t: number[] = [];
    for (let i = 0; i < 40; i++) { const t0 = performance.now(); await s.run({ A: a }); t.push(performance.now() - t0); }
    t.sort((a, b) => a - b); out.push((t[20]! * 1000).toFixed(0));
  }
  console.log(bits, block, zp, acc, out.join(' / '));
}
await time(4, 32, 'none', 4);
await time(4, 32, 'u8', 4);
await time(4, 32, 'f32', 4);
await time(8, 32, 'none', 4);
await time(8, 32, 'u8', 4);
await time(8, 16, 'none', 4);
await time(4, 16, 'none', 4);
