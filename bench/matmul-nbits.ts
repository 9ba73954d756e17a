/**
 * The kernels weight-only quantization would use (issue 16), side by side with
 * fp32 on this machine: ONNX Runtime's `MatMulNBits` (com.microsoft; 4 and 8
 * bits, block 32, symmetric) against a plain fp32 `MatMul`, for M = 1, 8 and
 * 32 rows (decode batch sizes), at the bench model's projection shapes and at
 * a 0.5B model's, with `accuracy_level` 0 (fp32 activations) and 4 (int8
 * activations). Random weights: speed only, no accuracy.
 *
 *   node bench/matmul-nbits.ts [--runs 200]
 *
 * Prints a table of p50 µs per call; writes bench/results/matmul-nbits.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { median } from './stats.ts';

const { onnx } = onnxProto;
const { values: args } = parseArgs({ options: { runs: { type: 'string', default: '200' } } });
const RUNS = Number(args.runs);
const BLOCK = 32;
const SHAPES: Array<[string, number, number]> = [
  ['512 × 1536', 512, 1536],
  ['2048 × 8192', 2048, 8192],
];
type Kind = 'fp32' | 'q8' | 'q4';

/** One MatMul of [M, K] by a K × N weight, as an ONNX model. */
function model(kind: Kind, K: number, N: number, accuracy: number): Uint8Array {
  const inits: onnxProto.onnx.ITensorProto[] = [];
  const nodes: onnxProto.onnx.INodeProto[] = [];
  if (kind === 'fp32') {
    const w = new Float32Array(K * N).map(() => Math.random() - 0.5);
    inits.push({ name: 'W', dims: [K, N], dataType: 1, rawData: new Uint8Array(w.buffer) });
    nodes.push({ opType: 'MatMul', input: ['A', 'W'], output: ['Y'], name: 'mm' });
  } else {
    const bits = kind === 'q4' ? 4 : 8;
    const blocks = K / BLOCK;
    const perBlock = (BLOCK * bits) / 8;
    inits.push({ name: 'B', dims: [N, blocks, perBlock], dataType: 2, rawData: new Uint8Array(N * blocks * perBlock).map(() => Math.floor(Math.random() * 256)) });
    inits.push({ name: 'S', dims: [N * blocks], dataType: 1, rawData: new Uint8Array(new Float32Array(N * blocks).fill(0.01).buffer) });
    const int = (name: string, i: number) => ({ name, type: onnx.AttributeProto.AttributeType.INT, i });
    nodes.push({ opType: 'MatMulNBits', domain: 'com.microsoft', input: ['A', 'B', 'S'], output: ['Y'], name: 'mm', attribute: [int('K', K), int('N', N), int('bits', bits), int('block_size', BLOCK), int('accuracy_level', accuracy)] });
  }
  const io = (name: string, last: number) => ({ name, type: { tensorType: { elemType: 1, shape: { dim: [{ dimParam: 'M' }, { dimValue: last }] } } } });
  const m = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }, { domain: 'com.microsoft', version: 1 }],
    graph: { name: 'g', node: nodes, initializer: inits, input: [io('A', K)], output: [io('Y', N)] },
  });
  return onnx.ModelProto.encode(m).finish();
}

async function time(kind: Kind, K: number, N: number, accuracy: number): Promise<Record<string, number>> {
  const s = await ort.InferenceSession.create(model(kind, K, N, accuracy), { intraOpNumThreads: cpus().length, graphOptimizationLevel: 'all' });
  const out: Record<string, number> = {};
  for (const M of [1, 8, 32]) {
    const a = new ort.Tensor('float32', new Float32Array(M * K).map(() => Math.random()), [M, K]);
    for (let i = 0; i < 20; i++) await s.run({ A: a });
    const t: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t0 = performance.now();
      await s.run({ A: a });
      t.push((performance.now() - t0) * 1000);
    }
    out[`M${M}`] = median(t);
  }
  await s.release();
  return out;
}

const rows: Array<{ shape: string; kind: Kind; accuracy: number; us: Record<string, number> }> = [];
for (const [shape, K, N] of SHAPES) {
  rows.push({ shape, kind: 'fp32', accuracy: 0, us: await time('fp32', K, N, 0) });
  for (const accuracy of [0, 4]) for (const kind of ['q8', 'q4'] as const) rows.push({ shape, kind, accuracy, us: await time(kind, K, N, accuracy) });
}
const fp32 = (shape: string) => rows.find((r) => r.shape === shape && r.kind === 'fp32')!.us;
const cell = (r: (typeof rows)[number], m: string) => `${r.us[m]!.toFixed(0)}${r.kind === 'fp32' ? '' : ` (${(fp32(r.shape)[m]! / r.us[m]!).toFixed(1)}×)`}`;
console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}; onnxruntime-node ${ort.env.versions.common}\n`);
console.log('| K × N | weights | accuracy_level | M=1 µs (vs fp32) | M=8 | M=32 |\n|---|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.shape} | ${r.kind} | ${r.kind === 'fp32' ? '–' : r.accuracy} | ${cell(r, 'M1')} | ${cell(r, 'M8')} | ${cell(r, 'M32')} |`);
const dir = join(import.meta.dirname, 'results');
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, 'matmul-nbits.json'), JSON.stringify({ date: new Date().toISOString(), runs: RUNS, rows }, null, 2) + '\n');
