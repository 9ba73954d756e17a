/**
 * Structured outputs: grammar cost at a 32k vocabulary, and decode throughput
 * with and without a grammar, side by side in one run.
 *
 *   npm run bench:structured [-- --batches 1,8,32 --prompt 64 --decode 64 --rounds 3 --model DIR --threads N]
 *
 * 1. Masks: each schema of a spread (tool-sized objects, nested arrays, enums,
 *    anyOf, $ref, patterns, numeric bounds, long free strings) drives a
 *    matcher through a valid instance token by token; every `mask()` the
 *    engine would pay is timed. The 32k Llama tokenizer of ../shared/models
 *    when present, else the bench model's synthetic 32k vocabulary.
 * 2. Compiles: distinct tool-sized schemas (fresh property names, so no cache
 *    helps), timed on the engine thread (what a step waits for) and through
 *    `Grammars.compile` (the checker worker first, then the engine thread).
 * 3. Decode: B concurrent generations on the bench model (prompt P, D tokens,
 *    ignoring end tokens), unconstrained and constrained by a JSON schema that
 *    cannot end before D tokens, greedy and at T=0.8; alternating for several
 *    rounds; throughput over the steps where all B rows decode. Host work
 *    is scheduling, batch building and sampling (mask time apart); the masks
 *    of rows the driver masks are computed before the run, the others while
 *    it runs.
 * 4. Tool calls through the gateway (tool-requests.ts), on an engine with the
 *    server's defaults (prefix caching on): N concurrent streaming chat
 *    requests with tool_choice "required" beside plain chat, N = 1 and 32:
 *    throughput and time to the first delta.
 * Prints a table; writes bench/results/structured.json.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PortableDriver } from '../drivers/portable/driver.ts';
import { Engine, Grammars, loadModel, pagesForBudget, type SamplingParams, type StepStats } from '../src/engine/index.ts';
import { compactJson, compileSource, type GrammarSource } from '../src/engine/grammar/source.ts';
import { newCompiler } from '../src/engine/grammar/xgrammar.ts';
import { Tokenizer } from '../src/model/tokenizer.ts';
import { benchModelDir } from './bench-model.ts';
import { toolRequests } from './tool-requests.ts';
import { median, p99 } from './stats.ts';

const { values: args } = parseArgs({
  options: {
    batches: { type: 'string', default: '1,8,32' },
    prompt: { type: 'string', default: '64' },
    decode: { type: 'string', default: '64' },
    rounds: { type: 'string', default: '3' },
    compiles: { type: 'string', default: '40' },
    model: { type: 'string' },
    threads: { type: 'string', default: '0' },
    'tool-streams': { type: 'string', default: '1,32' },
  },
});
const BATCHES = args.batches.split(',').map(Number);
const PROMPT = Number(args.prompt);
const DECODE = Number(args.decode);
const ROUNDS = Number(args.rounds);
const COMPILES = Number(args.compiles);
const PAGE_SIZE = 16;
const SHARED_TOKENIZER = join(import.meta.dirname, '..', '..', 'shared', 'models', 'tiny-random-llama-onnx');


const SPREAD: Array<{ name: string; schema: object; instance: unknown }> = [
  {
    name: 'tool call (weather)',
    schema: { type: 'object', properties: { location: { type: 'string' }, unit: { enum: ['celsius', 'fahrenheit'] }, days: { type: 'integer', minimum: 1, maximum: 14 } }, required: ['location', 'unit', 'days'], additionalProperties: false },
    instance: { location: 'San Francisco, CA', unit: 'celsius', days: 3 },
  },
  {
    name: 'nested arrays',
    schema: { type: 'object', properties: { rows: { type: 'array', items: { type: 'array', items: { type: 'number' } } } }, required: ['rows'], additionalProperties: false },
    instance: { rows: [[1.5, 2, -3], [4, 5.25], [6]] },
  },
  {
    name: 'anyOf / nullable',
    schema: { type: 'object', properties: { id: { anyOf: [{ type: 'integer' }, { type: 'string' }] }, note: { type: ['string', 'null'] } }, required: ['id', 'note'], additionalProperties: false },
    instance: { id: 'abc-123', note: null },
  },
  {
    name: '$ref / $defs',
    schema: {
      $defs: { person: { type: 'object', properties: { name: { type: 'string' }, age: { type: 'integer' } }, required: ['name', 'age'], additionalProperties: false } },
      type: 'object',
      properties: { author: { $ref: '#/$defs/person' }, reviewers: { type: 'array', items: { $ref: '#/$defs/person' } } },
      required: ['author', 'reviewers'],
      additionalProperties: false,
    },
    instance: { author: { name: 'Ada Lovelace', age: 36 }, reviewers: [{ name: 'Charles', age: 79 }, { name: 'Mary', age: 50 }] },
  },
  {
    name: 'patterns and lengths',
    schema: { type: 'object', properties: { sku: { type: 'string', pattern: '^[A-Z]{3}-[0-9]{4}$' }, title: { type: 'string', minLength: 3, maxLength: 40 } }, required: ['sku', 'title'], additionalProperties: false },
    instance: { sku: 'ABC-1234', title: 'A reasonably short product title' },
  },
  {
    name: 'free text (long string)',
    schema: { type: 'object', properties: { summary: { type: 'string' } }, required: ['summary'], additionalProperties: false },
    instance: { summary: 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball.' },
  },
  {
    name: 'any JSON object',
    schema: {},
    instance: { a: [1, 2, { b: 'c' }], d: true, e: null, f: 'text with "quotes" and \\ slashes' },
  },
];

function toolSchema(i: number): object {
  return {
    type: 'object',
    properties: {
      [`query_${i}`]: { type: 'string', description: 'What to search for' },
      [`limit_${i}`]: { type: 'integer', minimum: 1, maximum: 100 },
      [`sort_${i}`]: { enum: ['relevance', 'date', `custom_${i}`] },
      [`filters_${i}`]: { type: 'array', items: { type: 'object', properties: { field: { type: 'string' }, value: { type: ['string', 'number'] } }, required: ['field', 'value'] } },
      [`verbose_${i}`]: { type: 'boolean' },
    },
    required: [`query_${i}`, `limit_${i}`],
    additionalProperties: false,
  };
}

/** Continuation token ids of `text` (after a newline, dropping what spells the newline: SentencePiece prepends "▁" at the start). */
function continuationIds(tok: Tokenizer, text: string): number[] {
  const ids = tok.encode('\n' + text, { addBos: false });
  let prefix = '';
  let k = 0;
  while (k < ids.length && prefix.replace(/^ /, '') !== '\n') prefix += new TextDecoder().decode(tok.tokenBytes(ids[k++]!));
  return ids.slice(k);
}

async function maskBench(tok: Tokenizer, vocabSize: number, eos: number) {
  const grammars = new Grammars(tok, vocabSize, [eos]);
  const perSchema = [];
  const all: number[] = [];
  for (const s of SPREAD) {
    const source: GrammarSource = Object.keys(s.schema).length === 0 ? { type: 'json_object' } : { type: 'json_schema', schema: JSON.stringify(s.schema) };
    const grammar = await grammars.compile(source);
    const times: number[] = [];
    for (let rep = 0; rep < 5; rep++) {
      const m = await grammars.matcher(grammar);
      for (const t of [...continuationIds(tok, compactJson(s.instance)), eos]) {
        const t0 = performance.now();
        const mask = await m.mask();
        times.push((performance.now() - t0) * 1000);
        if (!((mask[t >>> 5]! >>> (t & 31)) & 1) || !m.accept(t)) throw new Error(`${s.name}: the instance is not accepted at token ${t}`);
      }
      m.dispose();
    }
    all.push(...times);
    perSchema.push({ name: s.name, tokens: times.length / 5, p50Us: median(times), p99Us: p99(times) });
  }
  return { perSchema, p50Us: median(all), p99Us: p99(all), n: all.length };
}

async function compileBench(tok: Tokenizer, vocabSize: number, eos: number) {
  const compiler = await newCompiler({ ...tok.grammarVocabulary(vocabSize), stopTokenIds: [eos] });
  const engineThread: number[] = [];
  for (let i = 0; i < COMPILES; i++) {
    const t0 = performance.now();
    (await compileSource(compiler, { type: 'json_schema', schema: JSON.stringify(toolSchema(i)) })).dispose();
    engineThread.push(performance.now() - t0);
  }
  const grammars = new Grammars(tok, vocabSize, [eos]);
  await grammars.compile({ type: 'json_object' }); // starts the checker and builds both tokenizer infos
  const roundTrip: number[] = [];
  for (let i = 0; i < COMPILES; i++) {
    const t0 = performance.now();
    await grammars.compile({ type: 'json_schema', schema: JSON.stringify(toolSchema(1000 + i)) });
    roundTrip.push(performance.now() - t0);
  }
  const t0 = performance.now();
  await grammars.compile({ type: 'json_schema', schema: JSON.stringify(toolSchema(1000)) });
  const cachedMs = performance.now() - t0;
  return { engineThreadP50Ms: median(engineThread), engineThreadP99Ms: p99(engineThread), roundTripP50Ms: median(roundTrip), roundTripP99Ms: p99(roundTrip), cachedMs };
}

/** A schema that cannot be complete before `DECODE` tokens: a list of records with free strings. */
const DECODE_SCHEMA = JSON.stringify({
  type: 'array',
  items: { type: 'object', properties: { name: { type: 'string' }, age: { type: 'integer', minimum: 0, maximum: 120 }, tags: { type: 'array', items: { enum: ['red', 'green', 'blue'] } } }, required: ['name', 'age', 'tags'], additionalProperties: false },
  minItems: 100,
});

async function decodeRun(engine: Engine, B: number, sampling: SamplingParams, constrained: boolean, round: number) {
  const steps: Array<StepStats & { at: number }> = [];
  const unlisten = engine.addStepListener((s) => steps.push({ ...s, at: performance.now() }));
  const grammar = constrained ? await engine.grammars.compile({ type: 'json_schema', schema: DECODE_SCHEMA }) : undefined;
  const V = engine.model.config.vocabSize;
  const ctxs = Array.from({ length: B }, (_, b) => {
    const c = engine.createContext();
    engine.append(c, Array.from({ length: PROMPT }, (_, i) => 3 + ((i * 7919 + b * 104729 + round * 15485863) % (V - 3))));
    return c;
  });
  const results = await Promise.all(ctxs.map((c, b) => engine.generate(c, { sampling: { ...sampling, seed: b }, maxTokens: DECODE, ignoreEos: true, ...(grammar ? { grammar } : {}) }).result));
  for (const c of ctxs) engine.release(c);
  unlisten();
  if (results.some((r) => r.completionTokens !== DECODE)) throw new Error(`a generation ended early (${results.map((r) => r.finishReason).join(', ')})`);
  const first = steps.findIndex((s) => s.rows === B && s.tokens === B);
  const decode = steps.slice(first);
  const tokens = decode.reduce((a, s) => a + s.tokens, 0);
  return {
    tps: tokens / ((decode.at(-1)!.at - steps[first - 1]!.at) / 1000),
    hostMs: median(decode.map((s) => s.scheduleMs + s.sampleMs)),
    maskMs: median(decode.map((s) => s.maskMs)),
    maskWaitMs: median(decode.map((s) => s.maskWaitMs)),
    driverMs: median(decode.map((s) => s.driverMs)),
  };
}

async function main() {
  const model = loadModel(benchModelDir(args.model));
  const shared = existsSync(join(SHARED_TOKENIZER, 'tokenizer.json'));
  const tok = shared
    ? new Tokenizer(JSON.parse(readFileSync(join(SHARED_TOKENIZER, 'tokenizer.json'), 'utf8')), JSON.parse(readFileSync(join(SHARED_TOKENIZER, 'tokenizer_config.json'), 'utf8')))
    : model.tokenizer;
  const vocabName = shared ? 'the 32k Llama tokenizer' : "the bench model's synthetic 32k vocabulary";
  const vocabSize = shared ? 32000 : model.config.vocabSize;
  const eos = shared ? 2 : model.eosTokenIds[0]!;
  console.error(`masks and compiles on ${vocabName}; decode on ${model.name} (vocabulary ${model.config.vocabSize}); ${cpus().length} cores`);
  const masks = await maskBench(tok, vocabSize, eos);
  const compiles = await compileBench(tok, vocabSize, eos);

  const maxB = Math.max(...BATCHES);
  const numPages = Math.max(pagesForBudget(model, PAGE_SIZE, 256 * 1024 * 1024), 2 * maxB * Math.ceil((PROMPT + DECODE) / PAGE_SIZE));
  const driver = await PortableDriver.create(model, { numPages, pageSize: PAGE_SIZE, threads: Number(args.threads) });
  const engine = new Engine(model, driver, { maxTokensPerStep: 512, prefixCaching: false });
  await decodeRun(engine, 1, { temperature: 0 }, true, 99); // warm-up (and the grammar compiled once)
  const decode = [];
  for (const B of BATCHES) {
    for (const [label, sampling] of [['greedy', { temperature: 0 }], ['T=0.8', { temperature: 0.8 }]] as const) {
      const free: Awaited<ReturnType<typeof decodeRun>>[] = [];
      const cons: Awaited<ReturnType<typeof decodeRun>>[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        free.push(await decodeRun(engine, B, sampling, false, r));
        cons.push(await decodeRun(engine, B, sampling, true, r));
      }
      const m = (xs: typeof free, f: (x: (typeof free)[number]) => number) => median(xs.map(f));
      const row = {
        batch: B,
        sampling: label,
        freeTps: m(free, (x) => x.tps),
        constrainedTps: m(cons, (x) => x.tps),
        ratio: median(free.map((f, i) => cons[i]!.tps / f.tps)),
        freeHostMs: m(free, (x) => x.hostMs),
        constrainedHostMs: m(cons, (x) => x.hostMs),
        maskMs: m(cons, (x) => x.maskMs),
        maskWaitMs: m(cons, (x) => x.maskWaitMs),
        freeDriverMs: m(free, (x) => x.driverMs),
        constrainedDriverMs: m(cons, (x) => x.driverMs),
      };
      decode.push(row);
      console.error(`B=${B} ${label}: constrained/unconstrained ${(100 * row.ratio).toFixed(1)}%`);
    }
  }
  await engine.close();
  // Tool calls through the gateway as a server runs it: prefix caching on (the default), so the
  // tools' description, the same in every request, is computed once.
  const served = new Engine(model, await PortableDriver.create(model, { numPages, pageSize: PAGE_SIZE, threads: Number(args.threads) }), {});
  const toolRows = await toolRequests(served, args['tool-streams'].split(',').map(Number), DECODE, ROUNDS);
  await served.close();

  const f = (n: number, d = 1) => n.toFixed(d);
  const lines = [
    `Masks on ${vocabName} (${masks.n} masks over ${SPREAD.length} schemas): p50 ${f(masks.p50Us)} µs, p99 ${f(masks.p99Us)} µs`,
    '',
    `| schema | tokens | mask p50 µs | mask p99 µs |`,
    `|---|---|---|---|`,
    ...masks.perSchema.map((s) => `| ${s.name} | ${s.tokens} | ${f(s.p50Us)} | ${f(s.p99Us)} |`),
    '',
    `Compile of a tool-sized schema (${COMPILES} distinct): engine thread p50 ${f(compiles.engineThreadP50Ms, 2)} ms, p99 ${f(compiles.engineThreadP99Ms, 2)} ms; ` +
      `through Grammars.compile (checker worker, then engine thread) p50 ${f(compiles.roundTripP50Ms, 2)} ms, p99 ${f(compiles.roundTripP99Ms, 2)} ms; cached ${f(compiles.cachedMs, 3)} ms`,
    '',
    `| batch | sampling | unconstrained tok/s | constrained tok/s | ratio | host ms/step (free / constrained) | mask ms/step (of which before the run) | driver ms/step (free / constrained) |`,
    `|---|---|---|---|---|---|---|---|`,
    ...decode.map(
      (r) =>
        `| ${r.batch} | ${r.sampling} | ${f(r.freeTps)} | ${f(r.constrainedTps)} | ${f(100 * r.ratio)}% | ${f(r.freeHostMs, 2)} / ${f(r.constrainedHostMs, 2)} | ${f(r.maskMs, 2)} (${f(r.maskWaitMs, 2)}) | ${f(r.freeDriverMs, 2)} / ${f(r.constrainedDriverMs, 2)} |`,
    ),
    '',
    `| concurrent requests | plain chat tok/s | required tool calls tok/s | ratio | first delta ms (plain / tool call) |`,
    `|---|---|---|---|---|`,
    ...toolRows.map((r) => `| ${r.streams} | ${f(r.plainTps)} | ${f(r.toolsTps)} | ${f(100 * r.ratio)}% | ${f(r.plainFirstMs)} / ${f(r.toolsFirstMs)} |`),
  ];
  console.log(lines.join('\n'));
  const out = join(import.meta.dirname, 'results');
  mkdirSync(out, { recursive: true });
  writeFileSync(
    join(out, 'structured.json'),
    JSON.stringify({ date: new Date().toISOString(), vocabulary: vocabName, model: model.name, cores: cpus().length, prompt: PROMPT, decode: DECODE, rounds: ROUNDS, masks, compiles, rows: decode, toolRequests: toolRows }, null, 2) + '\n',
  );
  process.exit(0); // the grammar checker's worker is unref'd, but the xgrammar module keeps no handles either way
}

await main();
