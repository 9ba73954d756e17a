/**
 * The ONNX graph against the reference forward pass, over configurations that
 * cover every architecture feature, run through the paged KV cache in two
 * chunks (so the second reads its past from the pool).
 */
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { randomModelDir, SMALL_SPEC } from '../../test/helpers.ts';
import { buildBatch } from '../../src/engine/batch-builder.ts';
import { loadModel } from '../../src/model/load.ts';
import type { RandomModelSpec } from '../../src/model/random.ts';
import { readSafetensors, writeSafetensors } from '../../src/model/safetensors.ts';
import { referenceForward } from '../reference/forward.ts';
import { PortableDriver } from './driver.ts';

const base = SMALL_SPEC;

const configs: [string, RandomModelSpec][] = [
  ['Llama with grouped-query attention and an untied head', base],
  ['Llama with multi-head attention and a tied head', { ...base, numKvHeads: 4, tieWordEmbeddings: true }],
  ['Qwen2 with attention biases', { ...base, architecture: 'Qwen2ForCausalLM', tieWordEmbeddings: true }],
  ['Qwen3 with q/k norm and an explicit head dimension', { ...base, architecture: 'Qwen3ForCausalLM', headDim: 16 }],
  ['Llama-3 rope scaling', { ...base, ropeTheta: 500000, ropeScaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 } }],
  ['linear rope scaling', { ...base, ropeScaling: { type: 'linear', factor: 2 } }],
  ['Mistral with a sliding window shorter than the sequence', { ...base, architecture: 'MistralForCausalLM', slidingWindow: 7 }],
  ['float16 weights', { ...base, dtype: 'F16' }],
  ['bfloat16 weights', { ...base, dtype: 'BF16', numKvHeads: 1 }],
];

const TOKENS = Array.from({ length: 21 }, (_, i) => (i * 53 + 7) % 320);

async function maxDiff(dir: string, externalData = false): Promise<number> {
  const model = loadModel(dir);
  const ref = referenceForward(model.config, model.weights, TOKENS);
  const pageSize = 4;
  const driver = await PortableDriver.create(model, { numPages: 16, pageSize, threads: 1, externalData });
  try {
    const pageTable = [5, 2, 9, 0, 11, 7];
    const window = model.config.slidingWindow;
    const first = await driver.run(buildBatch([{ pageTable, pastLen: 0, tokens: TOKENS.slice(0, 13), numSample: 13, window }], pageSize, 16));
    const second = await driver.run(buildBatch([{ pageTable, pastLen: 13, tokens: TOKENS.slice(13), numSample: 8, window }], pageSize, 16));
    const V = model.config.vocabSize;
    let worst = 0;
    TOKENS.forEach((_, t) => {
      const got = t < 13 ? first.logits!.subarray(t * V, (t + 1) * V) : second.logits!.subarray((t - 13) * V, (t - 12) * V);
      for (let v = 0; v < V; v++) worst = Math.max(worst, Math.abs(got[v]! - ref[t]![v]!));
    });
    return worst;
  } finally {
    await driver.close();
  }
}

describe('portable driver logits match the reference forward pass (max abs diff ≤ 1e-4)', () => {
  for (const [name, spec] of configs) {
    it(name, async () => {
      expect(await maxDiff(randomModelDir(spec, 3))).toBeLessThanOrEqual(1e-4);
    });
  }

  it('weights handed to ONNX Runtime as external data (the path for models over 2 GB)', async () => {
    expect(await maxDiff(randomModelDir({ ...base, hiddenSize: 128, intermediateSize: 256, numHeads: 8 }, 5), true)).toBeLessThanOrEqual(1e-4);
  });

  it('weights inline again after a save to external data: the encoded graph needs no side file', async () => {
    const { graphBuilder } = await import('./graph.ts');
    const ort = await import('onnxruntime-node');
    const model = loadModel(randomModelDir({ ...base, hiddenSize: 128, intermediateSize: 256, numHeads: 8 }, 5));
    const b = graphBuilder({ config: model.config, weights: model.weights, numSlots: 64 });
    expect(b.externalBytes).toBeGreaterThan(0);
    const dir = mkdtempSync(join(tmpdir(), 'pie-graph-test-'));
    b.save(join(dir, 'model.onnx'));
    rmSync(dir, { recursive: true });
    const session = await ort.InferenceSession.create(b.encode());
    expect(session.inputNames).toContain('token_ids');
    await session.release();
  });

  it('with no usable temporary folder: the weights go inline, unless external data was asked for', async () => {
    const model = loadModel(randomModelDir({ ...base, hiddenSize: 128, intermediateSize: 256, numHeads: 8 }, 5));
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = '/nonexistent-pie-tmp';
    try {
      const driver = await PortableDriver.create(model, { numPages: 16, pageSize: 16, threads: 1 });
      await driver.close();
      await expect(PortableDriver.create(model, { numPages: 16, pageSize: 16, threads: 1, externalData: true })).rejects.toThrow(/cannot write the model's graph to \/nonexistent-pie-tmp \(set TMPDIR/);
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    }
  });

  it('sharded safetensors with an index', async () => {
    const src = randomModelDir(base, 4);
    const dir = join(src, '..', `sharded-${process.pid}-${Date.now()}`);
    mkdirSync(dir);
    for (const f of readdirSync(src)) if (!f.endsWith('.safetensors')) copyFileSync(join(src, f), join(dir, f));
    const all = [...readSafetensors(join(src, 'model.safetensors'))];
    const half = Math.ceil(all.length / 2);
    const shards = [all.slice(0, half), all.slice(half)];
    const weightMap: Record<string, string> = {};
    shards.forEach((entries, i) => {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      writeSafetensors(join(dir, file), new Map(entries), 'BF16');
      for (const [name] of entries) weightMap[name] = file;
    });
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    expect(await maxDiff(dir)).toBeLessThanOrEqual(1e-4);
  });
});
