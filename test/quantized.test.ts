/**
 * Quantized weights (issue 16): 8- and 4-bit block-wise linear layers on
 * ONNX Runtime's MatMulNBits, quantized as a model loads or read from a
 * directory `pie model quantize` wrote. Quality against fp32 on stories260K
 * (greedy text, top-1 agreement and logit error over teacher-forced
 * positions, reported per format), exactness of a quantized directory, batch
 * invariance of rows, and every refusal.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { PortableDriver } from '../drivers/portable/driver.ts';
import { buildBatch } from '../src/engine/batch-builder.ts';
import { quantizationFor, type WeightQuantization } from '../src/model/config.ts';
import { loadModel } from '../src/model/load.ts';
import { quantizeModelDir } from '../src/model/quantize-dir.ts';
import { parseConfig } from '../src/config.ts';
import { engineFromConfig } from '../src/startup.ts';
import { readSafetensors, writeSafetensors, type ByteTensor, type Tensor } from '../src/model/safetensors.ts';
import { isQuantized, type Linear } from '../src/model/weights.ts';
import { quantizedBytes } from '../src/model/quantize.ts';
import { weightBytes } from '../bench/weight-bytes.ts';
import { greedy, haveStories, logitsAt, logSoftmax, randomModelDir, runPie, SKIP_STORIES, storiesModelDir, testEngine } from './helpers.ts';

const work = mkdtempSync(join(tmpdir(), 'pie-quantized-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const PUBLISHED = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park.';


const argmax = (row: Float32Array) => row.reduce((best, v, i) => (v > row[best]! ? i : best), 0);

/** Top-1 agreement, logit error and KL divergence of `got` against `want`, row by row. */
function compare(want: Float32Array[], got: Float32Array[]) {
  let agree = 0;
  let maxErr = 0;
  let sumErr = 0;
  let kl = 0;
  want.forEach((w, r) => {
    const g = got[r]!;
    if (argmax(w) === argmax(g)) agree++;
    const lw = logSoftmax(w);
    const lg = logSoftmax(g);
    for (let i = 0; i < w.length; i++) {
      const e = Math.abs(w[i]! - g[i]!);
      maxErr = Math.max(maxErr, e);
      sumErr += e;
      kl += Math.exp(lw[i]!) * (lw[i]! - lg[i]!);
    }
  });
  return { agreement: agree / want.length, maxErr, meanErr: sumErr / (want.length * want[0]!.length), kl: kl / want.length };
}

describe.skipIf(!haveStories)(`quantized stories260K against fp32 ${SKIP_STORIES}`, () => {
  it('8 bits reproduce the fp32 greedy text for 40 tokens', async () => {
    const fp32 = await testEngine(storiesModelDir(), { numPages: 32 });
    const q8 = await testEngine(storiesModelDir(), { numPages: 32, quantize: quantizationFor('q8') });
    expect(q8.model.weights.layers.every((l) => [l.q, l.k, l.v, l.o, l.gate, l.up, l.down].every(isQuantized))).toBe(true);
    const want = await greedy(fp32, [1], 40);
    const got = await greedy(q8, [1], 40);
    expect(got.tokens).toEqual(want.tokens);
    expect(q8.model.tokenizer.decode(got.tokens)).toMatch(new RegExp(`^${PUBLISHED.replace(/\./g, '\\.')}`));
  });

  it('over 200 teacher-forced positions: 4 bits agree with fp32 on the top token at ≥ 90%, 8 bits at ≥ 98%; logit error and KL reported per format', async () => {
    const fp32 = await testEngine(storiesModelDir(), { numPages: 32 });
    const text = [1, ...(await greedy(fp32, [1], 200)).tokens];
    const want = (await logitsAt(fp32, text)).slice(0, 200);
    const formats: [string, WeightQuantization][] = [
      ['q8', quantizationFor('q8')],
      ['q8, zero points', { ...quantizationFor('q8'), zeroPoints: true }],
      ['q4', quantizationFor('q4')],
      ['q4, zero points', { ...quantizationFor('q4'), zeroPoints: true }],
      ['q4, head 4-bit', { ...quantizationFor('q4'), headBits: 4 }],
    ];
    const lines = ['| weights | top-1 agreement | max abs logit error | mean abs logit error | mean KL(fp32 ‖ q) |', '|---|---|---|---|---|'];
    const results = new Map<string, ReturnType<typeof compare>>();
    for (const [name, quantize] of formats) {
      const engine = await testEngine(storiesModelDir(), { numPages: 32, quantize });
      const r = compare(want, (await logitsAt(engine, text)).slice(0, 200));
      results.set(name, r);
      lines.push(`| ${name} | ${(100 * r.agreement).toFixed(1)}% | ${r.maxErr.toFixed(3)} | ${r.meanErr.toFixed(4)} | ${r.kl.toExponential(2)} |`);
    }
    console.log(`stories260K, 200 teacher-forced positions of its fp32 greedy text:\n${lines.join('\n')}`);
    expect(results.get('q4')!.agreement).toBeGreaterThanOrEqual(0.9);
    expect(results.get('q8')!.agreement).toBeGreaterThanOrEqual(0.98);
    // More bits, less error.
    expect(results.get('q8')!.kl).toBeLessThan(results.get('q4')!.kl);
  });
});

describe('quantized directories (pie model quantize)', () => {
  it('load quantized, with exactly the weights quantizing at load gives, and the same greedy tokens; no float copy of a linear weight', async () => {
    const out = join(work, 'tiny-q4');
    const r = quantizeModelDir(randomModelDir(), out, quantizationFor('q4'));
    expect(r.files).toEqual(expect.arrayContaining(['config.json', 'model.safetensors', 'tokenizer.json']));
    expect(r.outBytes).toBeLessThan(r.inBytes / 3);
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).quantization_config).toEqual({ quant_method: 'pie-blockwise', bits: 4, head_bits: 8, block_size: 32, zero_points: false });
    const fromDir = loadModel(out);
    const atLoad = loadModel(randomModelDir(), { quantize: quantizationFor('q4') });
    expect(fromDir.config.quantization).toEqual(quantizationFor('q4'));
    const pairs: [Linear, Linear][] = [[fromDir.weights.embed, atLoad.weights.embed], [fromDir.weights.lmHead, atLoad.weights.lmHead]];
    fromDir.weights.layers.forEach((l, i) => {
      const a = atLoad.weights.layers[i]!;
      pairs.push([l.q, a.q], [l.k, a.k], [l.v, a.v], [l.o, a.o], [l.gate, a.gate], [l.up, a.up], [l.down, a.down]);
    });
    for (const [d, a] of pairs) {
      if (!isQuantized(d) || !isQuantized(a)) throw new Error('a linear weight was loaded as float');
      expect(d.quantized.bits).toBe(a.quantized.bits);
      expect(Buffer.from(d.quantized.data).equals(Buffer.from(a.quantized.data))).toBe(true);
      expect(d.quantized.scales).toEqual(a.quantized.scales);
    }
    expect((fromDir.weights.lmHead as { quantized: { bits: number } }).quantized.bits).toBe(8); // the head keeps 8 bits
    // No float copy of any linear weight: what stays float is the norms alone.
    const { bytes: quantizedBytesTotal } = weightBytes(fromDir.weights);
    const floatBytes = [fromDir.weights.norm, ...fromDir.weights.layers.flatMap((l) => [l.inputNorm, l.postNorm])].reduce((a, t) => a + t.data.byteLength, 0);
    const linearBytes = pairs.reduce((a, [d]) => a + (isQuantized(d) ? quantizedBytes(d.quantized) : Infinity), 0);
    expect(quantizedBytesTotal).toBe(linearBytes + floatBytes);
    const e1 = await testEngine(out, { numPages: 32 });
    const e2 = await testEngine(randomModelDir(), { numPages: 32, quantize: quantizationFor('q4') });
    const prompt = [1, 7, 9, 11];
    expect((await greedy(e1, prompt, 24)).tokens).toEqual((await greedy(e2, prompt, 24)).tokens);
  });

  it('round-trip zero points, a float head, a tied head, 8 bits in blocks of 64, and blocks wider than a row', async () => {
    const tied = randomModelDir({ ...(await import('../src/model/random.ts')).PRESETS.tiny, tieWordEmbeddings: true });
    const cases: [string, string, WeightQuantization][] = [
      ['zp', randomModelDir(), { bits: 4, headBits: 8, block: 32, zeroPoints: true }],
      ['float-head', randomModelDir(), { bits: 8, headBits: null, block: 64, zeroPoints: false }],
      ['tied', tied, { bits: 4, headBits: 4, block: 32, zeroPoints: false }],
      // Blocks wider than the rows (K = 64): the shape alone could read 4 bits in 128 as 8 bits in 64.
      ['wide-4', randomModelDir(), { bits: 4, headBits: 8, block: 128, zeroPoints: false }],
      ['wide-8', randomModelDir(), { bits: 8, headBits: 4, block: 256, zeroPoints: true }],
    ];
    for (const [name, src, q] of cases) {
      const out = join(work, name);
      quantizeModelDir(src, out, q);
      const m = loadModel(out);
      expect(m.config.quantization).toEqual(q);
      const lq = m.weights.layers[0]!.q;
      if (!isQuantized(lq)) throw new Error(`${name}: q loaded as float`);
      expect([lq.quantized.bits, lq.quantized.block], name).toEqual([q.bits, q.block]);
      expect(isQuantized(m.weights.lmHead)).toBe(q.headBits !== null);
      if (name === 'tied') expect(m.weights.lmHead).toBe(m.weights.embed);
      const fromDir = await testEngine(out, { numPages: 32 });
      const atLoad = await testEngine(src, { numPages: 32, quantize: q });
      expect((await greedy(fromDir, [1, 2, 3], 16)).tokens).toEqual((await greedy(atLoad, [1, 2, 3], 16)).tokens);
    }
  });

  it('loads a quantized directory as stored; refuses quantizing it again, other quantization methods, missing or misshapen quantized tensors, and a non-empty output folder', () => {
    const out = join(work, 'tiny-q8');
    quantizeModelDir(randomModelDir(), out, quantizationFor('q8'));
    // Stored quantized weights load as stored, whatever --quantize asks (it is for float weights).
    const asked = loadModel(out, { quantize: quantizationFor('q4') });
    expect(asked.config.quantization).toEqual(quantizationFor('q8'));
    expect((asked.weights.layers[0]!.q as { quantized: { bits: number } }).quantized.bits).toBe(8);
    expect(() => quantizeModelDir(out, join(work, 'again'), quantizationFor('q4'))).toThrow(/is already quantized/);
    expect(() => quantizeModelDir(randomModelDir(), out, quantizationFor('q4'))).toThrow(/exists and is not empty/);
    // A config that says quantized over float weights, and another method's config.
    const lying = join(work, 'lying');
    quantizeModelDir(randomModelDir(), lying, quantizationFor('q8'));
    const cfg = JSON.parse(readFileSync(join(randomModelDir(), 'config.json'), 'utf8'));
    writeFileSync(join(lying, 'config.json'), JSON.stringify({ ...cfg, quantization_config: { quant_method: 'pie-blockwise', bits: 8, head_bits: 8, block_size: 32 } }));
    rmSync(join(lying, 'model.safetensors'));
    writeFileSync(join(lying, 'model.safetensors'), readFileSync(join(randomModelDir(), 'model.safetensors')));
    expect(() => loadModel(lying)).toThrow(/missing quantized tensor model\.layers\.0\.self_attn\.q_proj\.qweight \(it holds a float model\.layers\.0\.self_attn\.q_proj\.weight/);
    writeFileSync(join(lying, 'config.json'), JSON.stringify({ ...cfg, quantization_config: { quant_method: 'gptq', bits: 4 } }));
    expect(() => loadModel(lying)).toThrow(/weights quantized with "gptq" are not supported/);
    writeFileSync(join(lying, 'config.json'), JSON.stringify({ ...cfg, quantization_config: { quant_method: 'pie-blockwise', bits: 3, block_size: 32 } }));
    expect(() => loadModel(lying)).toThrow(/bits must be 4 or 8/);
    // A quantized weight whose blocks do not cover its inputs.
    writeFileSync(join(lying, 'config.json'), readFileSync(join(out, 'config.json')));
    const bytes = new Map<string, ByteTensor>();
    const floats = readSafetensors(join(out, 'model.safetensors'), undefined, bytes);
    const q = bytes.get('model.layers.0.self_attn.q_proj.qweight')!;
    bytes.set('model.layers.0.self_attn.q_proj.qweight', { bytes: q.bytes.subarray(0, 64 * 32), shape: [64, 1, 32] });
    writeSafetensors(join(lying, 'model.safetensors'), new Map<string, Tensor | ByteTensor>([...floats, ...bytes]));
    expect(() => loadModel(lying)).toThrow(/tensor model\.layers\.0\.self_attn\.q_proj\.scales has shape \[64,2\], expected \[64,1\]/); // read as 4 bits in one block of 64
  });

  it('says so when model.quantize does not apply (a stored quantization)', async () => {
    const out = join(work, 'tiny-q4-config');
    quantizeModelDir(randomModelDir(), out, quantizationFor('q4'));
    const lines: string[] = [];
    const config = parseConfig('[model]\nquantize = "q8"\n[engine]\nkv_memory_mb = 8\nthreads = 1\n', 'test.toml', work);
    const engine = await engineFromConfig(config, out, (l) => lines.push(l));
    try {
      expect((engine.model.weights.layers[0]!.q as { quantized: { bits: number } }).quantized.bits).toBe(4);
      expect(lines.join('\n')).toMatch(/tiny-q4-config is stored quantized \(4-bit blocks of 32, head 8-bit\) and loads as stored; quantize = "q8" applies to float models/);
    } finally {
      await engine.close();
    }
  });

  it('pie model quantize and --quantize from the command line', async () => {
    const out = join(work, 'cli-q4');
    const q = await runPie(['model', 'quantize', randomModelDir(), out, '--bits', '4']);
    expect(q.stderr).toBe('');
    expect(q.code).toBe(0);
    expect(q.stdout).toMatch(/wrote .*cli-q4 \(4-bit blocks of 32, head 8-bit\): weights [\d.]+ MB as float32 → [\d.]+ MB/);
    const info = await runPie(['model', 'info', out]);
    expect(info.stdout).toMatch(/quantized: 4-bit blocks of 32, head 8-bit/);
    const gen = await runPie(['generate', '--model', out, '--max-tokens', '5']);
    expect(gen.code).toBe(0);
    expect(gen.stderr).toMatch(/5 tokens in/);
    const atLoad = await runPie(['generate', '--model', randomModelDir(), '--max-tokens', '5', '--quantize', 'q4']);
    expect(atLoad.stdout).toBe(gen.stdout);
    const bad = await runPie(['model', 'quantize', randomModelDir(), join(work, 'x'), '--bits', '3']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--bits must be 4 or 8, got "3"/);
    const badFlag = await runPie(['generate', '--model', randomModelDir(), '--quantize', 'q5']);
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr).toMatch(/--quantize must be q4 or q8, got "q5"/);
    const asStored = await runPie(['generate', '--model', out, '--max-tokens', '5', '--quantize', 'q8']);
    expect(asStored.code).toBe(0);
    expect(asStored.stdout).toBe(gen.stdout); // loaded as stored (4 bits)
    const bigBlock = await runPie(['model', 'quantize', randomModelDir(), join(work, 'y'), '--bits', '4', '--block', '512']);
    expect(bigBlock.code).toBe(2);
    expect(bigBlock.stderr).toMatch(/--block must be one of 16, 32, 64, 128, 256, got "512"/);
  });
});

describe('quantized rows in a batch', () => {
  it('each row gets bit for bit the logits it gets alone (4 and 8 bits)', async () => {
    for (const q of [quantizationFor('q4'), quantizationFor('q8')]) {
      const engine = await testEngine(randomModelDir(), { numPages: 64, quantize: q });
      const driver = engine.driver as PortableDriver;
      const V = engine.model.config.vocabSize;
      const seqs = Array.from({ length: 6 }, (_, i) => ({ pageTable: [i + 1], pastLen: 0, tokens: Array.from({ length: 3 + i }, (_, j) => 1 + ((j * 31 + i * 7) % (V - 1))), numSample: 1 }));
      const together = await driver.run({ ...buildBatch(seqs, 16, 64), needLogits: true });
      for (const [i, s] of seqs.entries()) {
        const alone = await driver.run({ ...buildBatch([s], 16, 64), needLogits: true });
        expect(Array.from(alone.logits!), `row ${i}`).toEqual(Array.from(together.logits!.subarray(i * V, (i + 1) * V)));
      }
    }
  });
});

describe('the quantized graph', () => {
  it('computes with the values the quantized weights stand for, K not a multiple of the block included (hidden 48: padded blocks in the embedding and every projection)', async () => {
    const { PRESETS } = await import('../src/model/random.ts');
    const dir = randomModelDir({ ...PRESETS.tiny, hiddenSize: 48, intermediateSize: 80, numHeads: 4, numKvHeads: 2 });
    const { referenceForward } = await import('../drivers/reference/forward.ts');
    const tokens = [1, 17, 33, 101, 250, 7, 9];
    for (const q of [quantizationFor('q8'), { ...quantizationFor('q4'), zeroPoints: true }, { bits: 4, headBits: 4, block: 16, zeroPoints: false } as const, { bits: 8, headBits: 4, block: 32, zeroPoints: true } as const]) {
      const engine = await testEngine(dir, { numPages: 16, quantize: q });
      const got = await logitsAt(engine, tokens);
      // The reference multiplies float activations by the dequantized weights; the kernel quantizes activations to int8 per block first.
      const want = referenceForward(engine.model.config, engine.model.weights, tokens);
      const scale = Math.max(...want.map((r) => Math.max(...r.map(Math.abs))));
      const err = Math.max(...want.map((r, i) => Math.max(...r.map((v, j) => Math.abs(v - got[i]![j]!)))));
      expect(err / scale, JSON.stringify(q)).toBeLessThan(0.02);
      expect(got.map(argmax)).toEqual(want.map(argmax));
    }
  });
});
