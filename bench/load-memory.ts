/**
 * Memory while a model loads and after, per weight format, each in a process
 * of its own (a process's resident memory does not shrink back reliably, so
 * one process per format is the only fair way):
 *
 *   node --expose-gc bench/load-memory.ts [--model DIR]
 *
 * Formats: the tiny model first (the cost of any model: the driver's worker,
 * ONNX Runtime, its buffers); fp32 from the float directory; q8 and q4 from directories `pie
 * model quantize` wrote (made beside the model on first use); q8 and q4
 * quantized as the float model loads (`--quantize`); and GGUF files of it
 * in Q8_0, Q4_0 and a Q4_K_M-like mix (written beside it on first use by the
 * tests' GGUF writer). For each: the weights'
 * bytes, resident memory above the process's baseline after the engine's
 * driver is up (the weights on the main thread for a restart, ONNX Runtime's
 * session in the driver's worker), the peak above baseline while loading, and
 * both per parameter. Prints a table; writes bench/results/load-memory.json.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PortableDriver } from '../drivers/portable/driver.ts';
import { quantizationFor } from '../src/model/config.ts';
import { loadModel } from '../src/model/load.ts';
import { quantizeModelDir } from '../src/model/quantize-dir.ts';
import { createRandomModel, PRESETS } from '../src/model/random.ts';
import { benchModelDir } from './bench-model.ts';
import { writeGgufFromDir, type GgufType } from '../test/gguf-writer.ts';
import { weightBytes } from './weight-bytes.ts';

const { values: args } = parseArgs({ options: { model: { type: 'string' }, child: { type: 'string' }, quantize: { type: 'string' } } });
const MB = 2 ** 20;

/** This process's peak resident memory (VmHWM: unlike getrusage's maxRSS, not inherited from the parent it was forked from). */
function peakRss(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : process.resourceUsage().maxRSS * 1024;
}

function rss(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().rss;
}

if (args.child) {
  // One format in this process: baseline, load, driver up, report.
  const base = rss();
  const quantize = args.quantize === 'q4' || args.quantize === 'q8' ? quantizationFor(args.quantize) : null;
  const model = loadModel(args.child, { quantize });
  const driver = await PortableDriver.create(model, { numPages: 16, pageSize: 16, threads: 1 });
  await new Promise((r) => setTimeout(r, 200));
  const after = rss();
  const peak = peakRss();
  await driver.close();
  const { params, bytes } = weightBytes(model.weights);
  process.stdout.write(JSON.stringify({ params, weightBytes: bytes, residentBytes: after - base, peakBytes: peak - base }) + '\n');
  process.exit(0);
}

const fp32Dir = benchModelDir(args.model);
const quantizedDir = (q: 'q4' | 'q8') => {
  const dir = `${fp32Dir}-${q}`;
  if (!existsSync(dir)) quantizeModelDir(fp32Dir, dir, quantizationFor(q));
  return dir;
};
/** The bench model as a GGUF file, written on first use (test/gguf-writer.ts: ggml's block layouts). */
function ggufFile(label: string, typeOf: (name: string) => GgufType): string {
  const path = `${fp32Dir}-${label}.gguf`;
  if (!existsSync(path)) writeGgufFromDir(fp32Dir, path, `bench-${label}`, typeOf);
  return path;
}
const tinyDir = join(fp32Dir, '..', 'load-memory-tiny');
if (!existsSync(tinyDir)) createRandomModel(tinyDir, PRESETS.tiny, 0);
const formats: { name: string; dir: string; quantize?: string }[] = [
  { name: 'the tiny model (what any model costs: a worker, ONNX Runtime, buffers)', dir: tinyDir },
  { name: 'fp32', dir: fp32Dir },
  { name: 'q8 (quantized directory)', dir: quantizedDir('q8') },
  { name: 'q4 (quantized directory)', dir: quantizedDir('q4') },
  { name: 'q8 (--quantize, from fp32)', dir: fp32Dir, quantize: 'q8' },
  { name: 'q4 (--quantize, from fp32)', dir: fp32Dir, quantize: 'q4' },
  { name: 'GGUF Q8_0', dir: ggufFile('Q8_0', () => 'Q8_0') },
  { name: 'GGUF Q4_0 (head Q6_K)', dir: ggufFile('Q4_0', (n) => (n === 'output.weight' ? 'Q6_K' : 'Q4_0')) },
  { name: 'GGUF Q4_K_M-style (Q4_K, Q6_K for v, down and head)', dir: ggufFile('Q4_K_M', (n) => (/attn_v|ffn_down|output\.weight/.test(n) ? 'Q6_K' : 'Q4_K')) },
];
const rows = formats.map((f) => {
  const out = execFileSync(process.execPath, ['--expose-gc', import.meta.filename, '--child', f.dir, ...(f.quantize ? ['--quantize', f.quantize] : [])], { encoding: 'utf8' });
  return { ...f, ...(JSON.parse(out.trim().split('\n').pop()!) as { params: number; weightBytes: number; residentBytes: number; peakBytes: number }) };
});
const f = (n: number, d = 1) => n.toFixed(d);
console.log('| weights | weights MB | bytes/param | resident after load MB (bytes/param) | peak while loading MB | peak ÷ resident | peak ÷ weights |');
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) {
  const perParam = (b: number) => (r.params > 1e6 ? ` (${f(b / r.params, 2)})` : '');
  console.log(`| ${r.name} | ${f(r.weightBytes / MB)} | ${f(r.weightBytes / r.params, 2)} | ${f(r.residentBytes / MB)}${perParam(r.residentBytes)} | ${f(r.peakBytes / MB)} | ${f(r.peakBytes / r.residentBytes, 2)} | ${f(r.peakBytes / r.weightBytes, 2)} |`);
}
const dir = join(import.meta.dirname, 'results');
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, 'load-memory.json'), JSON.stringify({ date: new Date().toISOString(), model: fp32Dir, rows }, null, 2) + '\n');
