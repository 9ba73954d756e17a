/**
 * Engine throughput beside a bare ONNX Runtime loop over the same graph.
 *
 *   npm run bench:engine [-- --batches 1,8,32 --prompt 128 --decode 64 --model DIR]
 *
 * For each batch size B, in one process and one run:
 *   bare    session.run in a loop on this thread over precomputed batches of
 *           exactly the shapes the engine runs (no scheduling, no sampling, no
 *           KV writes): the limit on this machine.
 *   engine  B concurrent greedy generations through the engine (ONNX Runtime
 *           in its worker thread, scheduling, sampling at the full vocabulary,
 *           KV writes, detokenization, streaming).
 * Decode throughput is measured over the decode phase (every sequence past its
 * first token); prefill throughput over the B prompts. Host work per step is
 * everything the engine does in a decode step besides ONNX Runtime's own run.
 * Prints a table; writes bench/results/engine.json.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import type { Batch } from '../drivers/driver.ts';
import { PortableDriver } from '../drivers/portable/driver.ts';
import { buildGraph } from '../drivers/portable/graph.ts';
import { buildBatch, type BatchRow } from '../src/engine/batch-builder.ts';
import { Engine, loadModel, pagesForBudget, type LoadedModel, type SamplingParams, type StepStats } from '../src/engine/index.ts';
import { createRandomModel, PRESETS } from '../src/model/random.ts';

const { values: args } = parseArgs({
  options: {
    batches: { type: 'string', default: '1,8,32' },
    prompt: { type: 'string', default: '128' },
    decode: { type: 'string', default: '64' },
    model: { type: 'string' },
    threads: { type: 'string', default: '0' },
  },
});
const BATCHES = args.batches.split(',').map(Number);
const PROMPT = Number(args.prompt);
const DECODE = Number(args.decode);
const THREADS = Number(args.threads);
const PAGE_SIZE = 16;
const BUDGET = 512;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const p99 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.99))]!;

function modelDir(): string {
  if (args.model) return args.model;
  const dir = join(import.meta.dirname, '..', 'models', 'bench');
  if (!existsSync(dir)) {
    console.error(`creating the bench model in ${dir} ...`);
    createRandomModel(dir, PRESETS.bench, 0);
  }
  return dir;
}

function prompts(B: number, vocab: number): number[][] {
  return Array.from({ length: B }, (_, b) => Array.from({ length: PROMPT }, (_, i) => 3 + ((i * 7919 + b * 104729) % (vocab - 3))));
}

/** The batches the engine runs for B prompts: prefill chunks under the budget, then decode steps. */
function plannedBatches(model: LoadedModel, B: number, numPages: number): { prefill: Batch[]; decode: Batch[] } {
  const pagesPer = Math.ceil((PROMPT + DECODE) / PAGE_SIZE);
  const tables = Array.from({ length: B }, (_, b) => Array.from({ length: pagesPer }, (_, i) => b * pagesPer + i));
  const vocab = model.config.vocabSize;
  const ps = prompts(B, vocab);
  const prefill: Batch[] = [];
  let pending: BatchRow[] = [];
  let tokens = 0;
  for (let b = 0; b < B; b++) {
    if (tokens + PROMPT > BUDGET && pending.length) {
      prefill.push(buildBatch(pending, PAGE_SIZE, numPages, model.config));
      pending = [];
      tokens = 0;
    }
    pending.push({ pageTable: tables[b]!, pastLen: 0, tokens: ps[b]!, numSample: 1 });
    tokens += PROMPT;
  }
  if (pending.length) prefill.push(buildBatch(pending, PAGE_SIZE, numPages, model.config));
  const decode: Batch[] = [];
  for (let step = 0; step < DECODE - 1; step++) {
    decode.push(buildBatch(tables.map((pageTable, b) => ({ pageTable, pastLen: PROMPT + step, tokens: [(b + step) % vocab], numSample: 1 })), PAGE_SIZE, numPages, model.config));
  }
  return { prefill, decode };
}

async function bare(model: LoadedModel, session: ort.InferenceSession, pool: ort.Tensor, B: number, numPages: number) {
  const { prefill, decode } = plannedBatches(model, B, numPages);
  const feeds = (b: Batch) => {
    const i32 = (d: Int32Array, dims: number[]) => new ort.Tensor('int32', d, dims);
    return {
      token_ids: i32(b.tokenIds, [b.numTokens]),
      positions: i32(b.positions, [b.numTokens]),
      kv_pool: pool,
      kv_gather: i32(b.kvGather, [b.kvGather.length]),
      key_index: i32(b.keyIndex, [b.numRows, b.keyLen]),
      query_index: i32(b.queryIndex, [b.numRows, b.queryLen]),
      token_index: i32(b.tokenIndex, [b.numTokens]),
      attn_mask: new ort.Tensor('float32', b.mask, [b.numRows, b.queryLen, b.keyLen]),
      sample_index: i32(b.sampleIndex, [b.sampleIndex.length]),
    };
  };
  const prefillFeeds = prefill.map(feeds);
  const decodeFeeds = decode.map(feeds);
  await session.run(decodeFeeds[0]!); // warm-up
  let t = performance.now();
  for (const f of prefillFeeds) await session.run(f);
  const prefillMs = performance.now() - t;
  const stepMs: number[] = [];
  t = performance.now();
  for (const f of decodeFeeds) {
    const s = performance.now();
    await session.run(f);
    stepMs.push(performance.now() - s);
  }
  const decodeMs = performance.now() - t;
  return { prefillTps: (B * PROMPT) / (prefillMs / 1000), decodeTps: (B * decode.length) / (decodeMs / 1000), stepMs: median(stepMs) };
}

async function engineRun(engine: Engine, driver: PortableDriver, B: number, sampling: SamplingParams) {
  const ps = prompts(B, engine.model.config.vocabSize);
  const steps: (StepStats & { at: number; ortMs: number; writeMs: number })[] = [];
  engine.onStep = (s) => steps.push({ ...s, at: performance.now(), ortMs: driver.lastRunMs, writeMs: driver.lastWriteMs });
  const t0 = performance.now();
  const ctxs = ps.map((p) => {
    const c = engine.createContext();
    engine.append(c, p);
    return c;
  });
  const results = await Promise.all(ctxs.map((c) => engine.generate(c, { sampling, maxTokens: DECODE, ignoreEos: true }).result));
  for (const c of ctxs) engine.release(c);
  engine.onStep = null;
  if (results.some((r) => r.completionTokens !== DECODE)) throw new Error('a generation ended early');
  const firstDecode = steps.findIndex((s) => s.tokens === s.rows && s.rows === B);
  const prefillEnd = steps[firstDecode - 1]!.at;
  const decodeSteps = steps.slice(firstDecode);
  const decodeTokens = decodeSteps.reduce((a, s) => a + s.tokens, 0);
  const decodeMs = steps[steps.length - 1]!.at - prefillEnd;
  const host = decodeSteps.map((s) => s.scheduleMs + s.sampleMs + (s.driverMs - s.ortMs));
  return {
    prefillTps: (B * PROMPT) / ((prefillEnd - t0) / 1000),
    decodeTps: decodeTokens / (decodeMs / 1000),
    stepMs: median(decodeSteps.map((s, i) => s.at - (i === 0 ? prefillEnd : decodeSteps[i - 1]!.at))),
    hostMs: median(host),
    hostP99Ms: p99(host),
    scheduleMs: median(decodeSteps.map((s) => s.scheduleMs)),
    sampleMs: median(decodeSteps.map((s) => s.sampleMs)),
    kvWriteMs: median(decodeSteps.map((s) => s.writeMs)),
    messagingMs: median(decodeSteps.map((s) => s.driverMs - s.ortMs - s.writeMs)),
    ortMs: median(decodeSteps.map((s) => s.ortMs)),
  };
}

async function main() {
  const dir = modelDir();
  const model = loadModel(dir);
  const maxB = Math.max(...BATCHES);
  const numPages = Math.max(pagesForBudget(model, PAGE_SIZE, 256 * 1024 * 1024), maxB * Math.ceil((PROMPT + DECODE) / PAGE_SIZE) + 8);
  const threads = THREADS || undefined;
  console.error(`model ${model.name}: hidden ${model.config.hiddenSize}, ${model.config.numLayers} layers, vocabulary ${model.config.vocabSize}; ${numPages} pages of ${PAGE_SIZE}; ${cpus().length} cores`);
  const driver = await PortableDriver.create(model, { numPages, pageSize: PAGE_SIZE, threads });
  const engine = new Engine(model, driver, { maxTokensPerStep: BUDGET, prefixCaching: false });
  const numSlots = numPages * PAGE_SIZE;
  const kvPlanes = model.config.numLayers * 2 * model.config.numKvHeads;
  const session = await ort.InferenceSession.create(buildGraph({ config: model.config, weights: model.weights, numSlots }), {
    intraOpNumThreads: threads ?? 0,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const pool = new ort.Tensor('float32', new Float32Array(kvPlanes * numSlots * model.config.headDim), [kvPlanes * numSlots, model.config.headDim]);
  await engineRun(engine, driver, 1, { temperature: 0 }); // warm-up

  const rows = [];
  for (const B of BATCHES) {
    const b = await bare(model, session, pool, B, numPages);
    const e = await engineRun(engine, driver, B, { temperature: 0 });
    const s = await engineRun(engine, driver, B, { temperature: 0.8, topP: 0.95, seed: 1 });
    rows.push({ batch: B, bare: b, engine: e, sampled: s, decodeRatio: e.decodeTps / b.decodeTps, prefillRatio: e.prefillTps / b.prefillTps });
  }
  await engine.close();
  await session.release();

  const f = (n: number, d = 1) => n.toFixed(d);
  const lines = [
    `| batch | bare decode tok/s | engine decode tok/s | ratio | bare prefill tok/s | engine prefill tok/s | ratio | host ms/step (greedy) | host ms/step (T=0.8, top-p 0.95) |`,
    `|---|---|---|---|---|---|---|---|---|`,
    ...rows.map(
      (r) =>
        `| ${r.batch} | ${f(r.bare.decodeTps)} | ${f(r.engine.decodeTps)} | ${f(100 * r.decodeRatio)}% | ${f(r.bare.prefillTps)} | ${f(r.engine.prefillTps)} | ${f(100 * r.prefillRatio)}% | ${f(r.engine.hostMs, 3)} (p99 ${f(r.engine.hostP99Ms, 3)}) | ${f(r.sampled.hostMs, 3)} |`,
    ),
    '',
    `ms/step, median: ${rows.map((r) => `B=${r.batch}: bare ${f(r.bare.stepMs, 2)}, engine ${f(r.engine.stepMs, 2)} (ONNX Runtime in the worker ${f(r.engine.ortMs, 2)})`).join('; ')}`,
    `host ms/step (greedy), median: ${rows.map((r) => `B=${r.batch}: schedule ${f(r.engine.scheduleMs, 3)}, sample ${f(r.engine.sampleMs, 3)}, KV write ${f(r.engine.kvWriteMs, 3)}, messaging ${f(r.engine.messagingMs, 3)}`).join('; ')}`,
  ];
  console.log(lines.join('\n'));
  const out = join(import.meta.dirname, 'results');
  mkdirSync(out, { recursive: true });
  writeFileSync(
    join(out, 'engine.json'),
    JSON.stringify({ date: new Date().toISOString(), model: model.name, cores: cpus().length, prompt: PROMPT, decode: DECODE, pageSize: PAGE_SIZE, budget: BUDGET, rows }, null, 2) + '\n',
  );
}

await main();
