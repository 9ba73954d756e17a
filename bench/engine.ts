/**
 * Engine throughput beside a bare ONNX Runtime loop over the same graph.
 *
 *   npm run bench:engine [-- --batches 1,8,32 --prompt 128 --decode 64 --rounds 3 --model DIR --threads N --no-spin-wait --weights fp32,q8,q4]
 *
 * For each batch size B, in one process, alternating for several rounds (the
 * machine is noisy; the table gives medians):
 *   engine  B concurrent greedy generations (prompt P, D new tokens each)
 *           through the engine: ONNX Runtime in its worker thread, scheduling,
 *           sampling at the full vocabulary, KV writes, detokenization,
 *           streaming. Every batch it runs is recorded.
 *   bare    the recorded batches replayed with session.run in a loop on this
 *           thread, over the same KV pool (same data, same page layout), with
 *           the same session options and the same fetched outputs, and nothing
 *           else: the limit on this machine.
 *   sampled B generations at T=0.8, top-p 0.95 through the engine, once: host
 *           work and ONNX Runtime time per step, and the share of rows the
 *           sampling head could not decide (drawn from their full distribution).
 * Decode throughput is over the steps where all B sequences decode; prefill
 * throughput over B prompts with one token generated. Host work per decode
 * step is everything besides ONNX Runtime's own run (scheduling, batch
 * building, messaging, KV writes, sampling, detokenizing).
 * With `--weights fp32,q8,q4`, all of it for each format in turn (q8 and q4 as
 * `--quantize` gives them, quantized as they load), then a table of the
 * formats side by side with their speed against fp32, the bytes their weights
 * take and the resident memory per parameter after loading (each format
 * loaded in a process of its own, as bench/load-memory.ts does).
 * Prints a table; writes bench/results/engine.json (engine-weights.json with
 * more than one format).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import type { Batch } from '../drivers/driver.ts';
import { PortableDriver, sessionOptions } from '../drivers/portable/driver.ts';
import { batchFeeds, batchFetches } from '../drivers/portable/feeds.ts';
import { buildGraph } from '../drivers/portable/graph.ts';
import { Engine, loadModel, pagesForBudget, type SamplingParams, type StepStats } from '../src/engine/index.ts';
import { quantizationFor } from '../src/model/config.ts';
import { weightBytes } from './weight-bytes.ts';
import { benchModelDir } from './bench-model.ts';
import { median, p99 } from './stats.ts';

const { values: args } = parseArgs({
  options: {
    batches: { type: 'string', default: '1,8,32' },
    prompt: { type: 'string', default: '128' },
    decode: { type: 'string', default: '64' },
    rounds: { type: 'string', default: '3' },
    model: { type: 'string' },
    threads: { type: 'string', default: '0' },
    'no-spin-wait': { type: 'boolean', default: false },
    weights: { type: 'string', default: 'fp32' },
  },
});
const FORMATS = args.weights.split(',').map((w) => {
  if (w !== 'fp32' && w !== 'q8' && w !== 'q4') throw new Error(`--weights takes fp32, q8 and q4, got "${w}"`);
  return w;
});
const BATCHES = args.batches.split(',').map(Number);
const PROMPT = Number(args.prompt);
const DECODE = Number(args.decode);
const ROUNDS = Number(args.rounds);
const THREADS = Number(args.threads);
/** ONNX Runtime's threads spin between runs unless --no-spin-wait (engine.spin_wait = false). */
const SPIN = !args['no-spin-wait'];
const PAGE_SIZE = 16;
const BUDGET = 512;



function prompts(B: number, vocab: number, round: number): number[][] {
  return Array.from({ length: B }, (_, b) => Array.from({ length: PROMPT }, (_, i) => 3 + ((i * 7919 + b * 104729 + round * 15485863) % (vocab - 3))));
}

interface Recorded {
  batch: Batch;
  stats: StepStats;
  at: number;
  ortMs: number;
  writeMs: number;
}

/** Runs B generations through the engine, recording every step and its batch. */
async function engineRun(engine: Engine, driver: PortableDriver, B: number, maxTokens: number, sampling: SamplingParams, round: number) {
  const steps: Recorded[] = [];
  const batches: Batch[] = [];
  const run = driver.run.bind(driver);
  driver.run = (b) => (batches.push(b), run(b));
  const unlisten = engine.addStepListener((stats) => steps.push({ batch: batches[batches.length - 1]!, stats, at: performance.now(), ortMs: driver.lastRunMs, writeMs: driver.lastWriteMs }));
  const t0 = performance.now();
  const ctxs = prompts(B, engine.model.config.vocabSize, round).map((p) => {
    const c = engine.createContext();
    engine.append(c, p);
    return c;
  });
  const results = await Promise.all(ctxs.map((c) => engine.generate(c, { sampling, maxTokens, ignoreEos: true }).result));
  const totalMs = performance.now() - t0;
  for (const c of ctxs) engine.release(c);
  unlisten();
  driver.run = run;
  if (results.some((r) => r.completionTokens !== maxTokens)) throw new Error('a generation ended early');
  return { steps, t0, totalMs };
}

function summarizeDecode(steps: Recorded[], B: number) {
  const first = steps.findIndex((s) => s.stats.tokens === B && s.stats.rows === B);
  const decode = steps.slice(first);
  const start = steps[first - 1]!.at;
  const tokens = decode.reduce((a, s) => a + s.stats.tokens, 0);
  const host = decode.map((s) => s.stats.scheduleMs + s.stats.sampleMs + (s.stats.driverMs - s.ortMs));
  return {
    batches: decode.map((s) => s.batch),
    tps: tokens / ((decode[decode.length - 1]!.at - start) / 1000),
    ortMs: median(decode.map((s) => s.ortMs)),
    hostMs: median(host),
    hostP99Ms: p99(host),
    scheduleMs: median(decode.map((s) => s.stats.scheduleMs)),
    sampleMs: median(decode.map((s) => s.stats.sampleMs)),
    kvWriteMs: median(decode.map((s) => s.writeMs)),
    messagingMs: median(decode.map((s) => s.stats.driverMs - s.ortMs - s.writeMs)),
    /** Sampled rows decided by the sampling head, and those run again with their full distribution. */
    headRows: decode.reduce((a, s) => a + s.stats.headRows, 0),
    undecided: decode.reduce((a, s) => a + s.stats.undecided, 0),
  };
}

/** Replays batches with session.run alone; returns the total milliseconds. */
async function replay(session: ort.InferenceSession, pool: ort.Tensor, maskWords: number, batches: Batch[]): Promise<number> {
  const feeds = batches.map((b) => batchFeeds(b, pool, maskWords));
  const t = performance.now();
  for (let i = 0; i < feeds.length; i++) {
    await session.run(feeds[i]!, batchFetches(batches[i]!));
  }
  return performance.now() - t;
}

interface Round {
  engineDecodeTps: number;
  bareDecodeTps: number;
  bareStepMs: number;
  enginePrefillTps: number;
  barePrefillTps: number;
  ortMs: number;
  hostMs: number;
  hostP99Ms: number;
  scheduleMs: number;
  sampleMs: number;
  kvWriteMs: number;
  messagingMs: number;
}

/**
 * Resident memory of the format once loaded, measured in a process of its own
 * (bench/load-memory.ts): this process's memory after another format is not
 * a measure of this one.
 */
function residentMb(dir: string, format: 'fp32' | 'q8' | 'q4'): { residentMb: number; peakMb: number } {
  const out = execFileSync(process.execPath, ['--expose-gc', join(import.meta.dirname, 'load-memory.ts'), '--child', dir, ...(format === 'fp32' ? [] : ['--quantize', format])], { encoding: 'utf8' });
  const r = JSON.parse(out.trim().split('\n').pop()!) as { residentBytes: number; peakBytes: number };
  return { residentMb: r.residentBytes / 2 ** 20, peakMb: r.peakBytes / 2 ** 20 };
}

async function benchFormat(format: 'fp32' | 'q8' | 'q4') {
  const model = loadModel(benchModelDir(args.model), { quantize: format === 'fp32' ? null : quantizationFor(format) });
  const maxB = Math.max(...BATCHES);
  const numPages = Math.max(pagesForBudget(model, PAGE_SIZE, 256 * 1024 * 1024), 2 * maxB * Math.ceil((PROMPT + DECODE) / PAGE_SIZE));
  console.error(`model ${model.name}: hidden ${model.config.hiddenSize}, ${model.config.numLayers} layers, vocabulary ${model.config.vocabSize}; ${numPages} pages of ${PAGE_SIZE}; ${cpus().length} cores`);
  const driver = await PortableDriver.create(model, { numPages, pageSize: PAGE_SIZE, threads: THREADS, spinWait: SPIN });
  const engine = new Engine(model, driver, { maxTokensPerStep: BUDGET, prefixCaching: false });
  const session = await ort.InferenceSession.create(buildGraph({ config: model.config, weights: model.weights, numSlots: numPages * PAGE_SIZE }), sessionOptions(THREADS, SPIN));
  const poolRows = driver.pool.byteLength / 4 / model.config.headDim;
  const pool = new ort.Tensor('float32', new Float32Array(driver.pool), [poolRows, model.config.headDim]);
  const maskWords = Math.ceil(model.config.vocabSize / 32);
  await engineRun(engine, driver, 1, 4, { temperature: 0 }, 99); // warm-up

  const rows = [];
  for (const B of BATCHES) {
    const rounds: Round[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const dec = await engineRun(engine, driver, B, DECODE, { temperature: 0 }, r);
      const e = summarizeDecode(dec.steps, B);
      const bareDecodeMs = await replay(session, pool, maskWords, e.batches);
      const pre = await engineRun(engine, driver, B, 1, { temperature: 0 }, r + ROUNDS);
      const barePrefillMs = await replay(session, pool, maskWords, pre.steps.map((s) => s.batch));
      const decodeTokens = e.batches.reduce((a, b) => a + b.numTokens, 0);
      rounds.push({
        engineDecodeTps: e.tps,
        bareDecodeTps: decodeTokens / (bareDecodeMs / 1000),
        bareStepMs: bareDecodeMs / e.batches.length,
        enginePrefillTps: (B * PROMPT) / (pre.totalMs / 1000),
        barePrefillTps: (B * PROMPT) / (barePrefillMs / 1000),
        ortMs: e.ortMs,
        hostMs: e.hostMs,
        hostP99Ms: e.hostP99Ms,
        scheduleMs: e.scheduleMs,
        sampleMs: e.sampleMs,
        kvWriteMs: e.kvWriteMs,
        messagingMs: e.messagingMs,
      });
    }
    const sampled = summarizeDecode((await engineRun(engine, driver, B, DECODE, { temperature: 0.8, topP: 0.95, seed: 1 }, 7)).steps, B);
    const m = (f: (x: Round) => number) => median(rounds.map(f));
    const row = {
      batch: B,
      bareDecodeTps: m((x) => x.bareDecodeTps),
      engineDecodeTps: m((x) => x.engineDecodeTps),
      decodeRatio: m((x) => x.engineDecodeTps / x.bareDecodeTps),
      barePrefillTps: m((x) => x.barePrefillTps),
      enginePrefillTps: m((x) => x.enginePrefillTps),
      prefillRatio: m((x) => x.enginePrefillTps / x.barePrefillTps),
      bareStepMs: m((x) => x.bareStepMs),
      engineOrtMs: m((x) => x.ortMs),
      hostMs: m((x) => x.hostMs),
      hostP99Ms: m((x) => x.hostP99Ms),
      scheduleMs: m((x) => x.scheduleMs),
      sampleMs: m((x) => x.sampleMs),
      kvWriteMs: m((x) => x.kvWriteMs),
      messagingMs: m((x) => x.messagingMs),
      sampledHostMs: sampled.hostMs,
      sampledHostP99Ms: sampled.hostP99Ms,
      sampledSampleMs: sampled.sampleMs,
      sampledOrtMs: sampled.ortMs,
      sampledDecodeTps: sampled.tps,
      sampledUndecided: sampled.undecided / Math.max(1, sampled.headRows + sampled.undecided),
      rounds,
    };
    rows.push(row);
    console.error(`B=${B}: engine/bare decode ${(100 * row.decodeRatio).toFixed(1)}%, prefill ${(100 * row.prefillRatio).toFixed(1)}%`);
  }
  await engine.close();
  await session.release();
  const { params, bytes } = weightBytes(model.weights);
  return { format, model: model.name, params, weightBytes: bytes, ...residentMb(model.dir, format), rows };
}

type FormatResult = Awaited<ReturnType<typeof benchFormat>>;

function printFormat(r: FormatResult) {
  const f = (n: number, d = 1) => n.toFixed(d);
  const rows = r.rows;
  const lines = [
    `${r.format}:`,
    `| batch | bare decode tok/s | engine decode tok/s | ratio | bare prefill tok/s | engine prefill tok/s | ratio | host ms/step, greedy (p99) | host ms/step, T=0.8 top-p 0.95 (p99) |`,
    `|---|---|---|---|---|---|---|---|---|`,
    ...rows.map(
      (r) =>
        `| ${r.batch} | ${f(r.bareDecodeTps)} | ${f(r.engineDecodeTps)} | ${f(100 * r.decodeRatio)}% | ${f(r.barePrefillTps)} | ${f(r.enginePrefillTps)} | ${f(100 * r.prefillRatio)}% | ${f(r.hostMs, 3)} (${f(r.hostP99Ms, 2)}) | ${f(r.sampledHostMs, 2)} (${f(r.sampledHostP99Ms, 2)}) |`,
    ),
    '',
    `sampled decode (T=0.8, top-p 0.95, one run): ${rows.map((r) => `B=${r.batch}: ${f(r.sampledDecodeTps)} tok/s, ONNX Runtime ${f(r.sampledOrtMs, 2)} ms/step, sampling+detokenize+stream ${f(r.sampledSampleMs, 3)} ms/step, rows left to their full distribution ${f(100 * r.sampledUndecided, 2)}%`).join('; ')}`,
    `decode step ms, median: ${rows.map((r) => `B=${r.batch}: bare ${f(r.bareStepMs, 2)}, ONNX Runtime inside the engine ${f(r.engineOrtMs, 2)}`).join('; ')}`,
    `host ms per greedy decode step, median: ${rows.map((r) => `B=${r.batch}: schedule+batch ${f(r.scheduleMs, 3)}, messaging ${f(r.messagingMs, 3)}, KV write ${f(r.kvWriteMs, 3)}, sample+detokenize+stream ${f(r.sampleMs, 3)}`).join('; ')}`,
    '',
  ];
  console.log(lines.join('\n'));
}

/** The formats side by side: engine tok/s and the ratio to fp32 at each batch size, weight bytes and resident memory per parameter. */
function printComparison(results: FormatResult[]) {
  const base = results.find((r) => r.format === 'fp32');
  const f = (n: number, d = 1) => n.toFixed(d);
  const cell = (r: FormatResult, B: number, key: 'engineDecodeTps' | 'enginePrefillTps') => {
    const v = r.rows.find((x) => x.batch === B)![key];
    const b = base?.rows.find((x) => x.batch === B)![key];
    return `${f(v)}${b && r !== base ? ` (${f(v / b, 2)}×)` : ''}`;
  };
  console.log(`| weights | ${BATCHES.map((B) => `decode tok/s B=${B}`).join(' | ')} | ${BATCHES.map((B) => `prefill tok/s B=${B}`).join(' | ')} | weights MB | bytes/param | resident after load MB | resident bytes/param |`);
  console.log(`|---|${BATCHES.map(() => '---|').join('')}${BATCHES.map(() => '---|').join('')}---|---|---|---|`);
  for (const r of results) {
    console.log(
      `| ${r.format} | ${BATCHES.map((B) => cell(r, B, 'engineDecodeTps')).join(' | ')} | ${BATCHES.map((B) => cell(r, B, 'enginePrefillTps')).join(' | ')} | ${f(r.weightBytes / 2 ** 20)} | ${f(r.weightBytes / r.params, 2)} | ${f(r.residentMb)} | ${f((r.residentMb * 2 ** 20) / r.params, 2)} |`,
    );
  }
}

async function main() {
  const results: FormatResult[] = [];
  for (const format of FORMATS) {
    const r = await benchFormat(format);
    printFormat(r);
    results.push(r);
  }
  if (results.length > 1) printComparison(results);
  const out = join(import.meta.dirname, 'results');
  mkdirSync(out, { recursive: true });
  const common = { date: new Date().toISOString(), model: results[0]!.model, cores: cpus().length, prompt: PROMPT, decode: DECODE, pageSize: PAGE_SIZE, budget: BUDGET, rounds: ROUNDS };
  if (results.length === 1) writeFileSync(join(out, 'engine.json'), JSON.stringify({ ...common, weights: results[0]!.format, rows: results[0]!.rows }, null, 2) + '\n');
  else writeFileSync(join(out, 'engine-weights.json'), JSON.stringify({ ...common, formats: results }, null, 2) + '\n');
}

await main();
