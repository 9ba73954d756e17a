/**
 * The gateway end to end, side by side with the engine alone in one run.
 *
 *   npm run bench:serve [-- --streams 1,8,32 --max-tokens 64 --rounds 3
 *                          --requests 50 --model DIR --warm-instances W --workers K
 *                          --layout thread|main]
 *
 * One process serves the bench model through the real gateway (`serve()`:
 * Express, auth, OpenAPI validation, the built-in chat-completions inferlet,
 * the host's stream relay, SSE) on a loopback port. `--layout thread` (the
 * default, what `pie serve` runs) gives the gateway its own engine on the
 * engine thread, with the inferlet host; `main` serves the engine-alone runs'
 * engine on the main thread beside HTTP. The HTTP client runs in a
 * worker thread of this process (its own event loop, so it does not take the
 * gateway's main thread), with Node's fetch, parsing the SSE `data:` lines
 * itself.
 *
 * Throughput, for each N, alternating rounds (the machine is noisy; medians):
 *   engine   N concurrent engine.generate calls on the same engine (in the
 *            thread layout, run on the engine thread: EngineThread.engineAlone), with the
 *            prompt tokens the gateway makes of the same chat request (the
 *            model's chat template, then the tokenizer), greedy, max_tokens
 *            each, ignoreEos.
 *   gateway  N concurrent streaming POST /v1/chat/completions with that
 *            request: temperature 0, max_tokens, stream_options.include_usage.
 *            The prompt is one for which greedy decoding meets no stop token
 *            within max_tokens (checked at start, through both); every stream
 *            must report exactly max_tokens completion tokens.
 *   tok/s is N × max_tokens over the wall time of the whole batch. TTFT is
 *   request sent → first content delta; ITL is between successive content
 *   deltas of one stream (client side; pooled over streams and rounds).
 * Per-request overhead: the same request with max_tokens 1, sequentially,
 *   through the gateway (streaming and not) and through the engine directly
 *   (append the prompt to a fresh context, generate 1 token, release),
 *   interleaved one by one.
 * Where the time goes (per N, medians over rounds): the engine's steps
 *   (a step listener), ONNX Runtime's own run time, the main thread's time between
 *   steps, its event-loop utilization and GC, the process's CPU time per
 *   token, CPU time per group of threads (Linux /proc: main, engine = the
 *   driver's worker and ONNX Runtime's threads, host = the guest workers,
 *   client, V8's and libuv's), and invocations that had to instantiate.
 *   For one request: timestamps along its way on the main thread (HTTP in,
 *   host.invoke, fill, generate, steps, result, response end) and the guest's
 *   calls to the host as they arrive; in the thread layout only what the main
 *   thread sees (HTTP in, host.invoke, the steps as reported, result, end), and
 *   the steps' ORT time is not known.
 * --warm-instances and --workers set the [inferlets] keys (default: the config's defaults).
 * Prints tables; writes bench/results/serve.json.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PerformanceObserver } from 'node:perf_hooks';
import { isMainThread, parentPort, Worker } from 'node:worker_threads';
import { median, p99 } from './stats.ts';
import type { Engine, StepStats } from '../src/engine/index.ts';
import type { Serving } from '../src/gateway/start.ts';
import type { EngineThread } from '../src/gateway/engine-link.ts';
import { engineAlone } from '../src/runtime/host/engine-alone.ts';

// ---------------------------------------------------------------- the client (worker thread)

interface StreamStat {
  /** Request sent → response headers. */
  headersMs: number;
  /** Request sent → first content delta. */
  ttftMs: number;
  /** Between successive content deltas. */
  itlMs: number[];
  deltas: number;
  completionTokens: number;
  promptTokens: number;
  finishReason: string | null;
  totalMs: number;
  text: string;
}

interface BatchReply {
  wallMs: number;
  streams: StreamStat[];
  /** The client thread's busy time (event-loop utilization × wall). */
  clientBusyMs: number;
}

interface OneReply {
  ms: number;
  completionTokens: number;
  promptTokens: number;
  text: string;
  finishReason: string | null;
}

type ClientCall = { body: string } & ({ kind: 'batch'; n: number } | { kind: 'stream' } | { kind: 'json' });
type ClientRequest = ClientCall & { id: number; url: string };

async function streamOne(url: string, body: string): Promise<StreamStat> {
  const t0 = performance.now();
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const headersMs = performance.now() - t0;
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const at: number[] = [];
  let buf = '';
  let text = '';
  let usage: { completion_tokens: number; prompt_tokens: number } | null = null;
  let finishReason: string | null = null;
  let done = false;
  for (;;) {
    const { value, done: end } = await reader.read();
    if (end) break;
    const now = performance.now();
    buf += decoder.decode(value, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let data = '';
      for (const line of block.split('\n')) if (line.startsWith('data: ')) data += line.slice(6);
      if (data === '') continue;
      if (data === '[DONE]') {
        done = true;
        continue;
      }
      const j = JSON.parse(data);
      if (j.error) throw new Error(`stream failed: ${JSON.stringify(j.error)}`);
      const c = j.choices?.[0];
      if (typeof c?.delta?.content === 'string' && c.delta.content !== '') {
        at.push(now);
        text += c.delta.content;
      }
      if (c?.finish_reason) finishReason = c.finish_reason;
      if (j.usage) usage = j.usage;
    }
  }
  const totalMs = performance.now() - t0;
  if (!done) throw new Error('the stream ended without [DONE]');
  if (!usage) throw new Error('the stream had no usage chunk');
  return {
    headersMs,
    ttftMs: at.length ? at[0]! - t0 : NaN,
    itlMs: at.slice(1).map((t, k) => t - at[k]!),
    deltas: at.length,
    completionTokens: usage.completion_tokens,
    promptTokens: usage.prompt_tokens,
    finishReason,
    totalMs,
    text,
  };
}

async function jsonOne(url: string, body: string): Promise<OneReply> {
  const t0 = performance.now();
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const j = (await res.json()) as { choices: Array<{ message: { content: string }; finish_reason: string }>; usage: { completion_tokens: number; prompt_tokens: number } };
  const ms = performance.now() - t0;
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${JSON.stringify(j)}`);
  const c = j.choices[0];
  return { ms, completionTokens: j.usage.completion_tokens, promptTokens: j.usage.prompt_tokens, text: c.message.content, finishReason: c.finish_reason };
}

async function handle(req: ClientRequest): Promise<BatchReply | OneReply> {
  if (req.kind === 'json') return jsonOne(req.url, req.body);
  if (req.kind === 'stream') {
    const s = await streamOne(req.url, req.body);
    return { ms: s.totalMs, completionTokens: s.completionTokens, promptTokens: s.promptTokens, text: s.text, finishReason: s.finishReason };
  }
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  const streams = await Promise.all(Array.from({ length: req.n }, () => streamOne(req.url, req.body)));
  const wallMs = performance.now() - t0;
  return { wallMs, streams, clientBusyMs: performance.eventLoopUtilization(elu0).active };
}

function clientThread(): void {
  let tid = 0;
  try {
    tid = Number(readFileSync('/proc/thread-self/stat', 'utf8').split(' ')[0]);
  } catch {
    // not Linux
  }
  parentPort!.postMessage({ tid });
  parentPort!.on('message', (req: ClientRequest) => {
    handle(req).then(
      (r) => parentPort!.postMessage({ id: req.id, ok: true, r }),
      (err) => parentPort!.postMessage({ id: req.id, ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
    );
  });
}

/** The main thread's handle on the client worker. */
class Client {
  private readonly worker: Worker;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (r: never) => void; reject: (e: Error) => void }>();
  readonly url: string;
  /** The client thread's id (Linux; 0 elsewhere). */
  readonly tid: Promise<number>;
  constructor(url: string) {
    this.url = url;
    this.worker = new Worker(new URL(import.meta.url));
    this.tid = new Promise((resolve) => this.worker.once('message', (m: { tid: number }) => resolve(m.tid)));
    this.worker.on('message', (m: { id: number; ok: boolean; r?: unknown; error?: string }) => {
      if (m.id === undefined) return;
      const w = this.waiting.get(m.id)!;
      this.waiting.delete(m.id);
      if (m.ok) w.resolve(m.r as never);
      else w.reject(new Error(`client: ${m.error}`));
    });
    this.worker.on('error', (err) => {
      for (const w of this.waiting.values()) w.reject(err);
      this.waiting.clear();
    });
  }
  private ask<T>(req: ClientCall): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (r: never) => void, reject });
      this.worker.postMessage({ ...req, id, url: this.url });
    });
  }
  batch(body: string, n: number): Promise<BatchReply> {
    return this.ask({ kind: 'batch', body, n });
  }
  one(body: string, stream: boolean): Promise<OneReply> {
    return this.ask({ kind: stream ? 'stream' : 'json', body });
  }
  close(): Promise<number> {
    return this.worker.terminate();
  }
}

// ---------------------------------------------------------------- the benchmark (main thread)

interface Step extends StepStats {
  /** When the step ended (the step listener). */
  at: number;
  /** ONNX Runtime's own run inside the driver's worker. */
  ortMs: number;
}

/** What the main thread and the engine did during one run. */
interface Profile {
  steps: number;
  /** Median rows per step over the steps that sampled all N sequences. */
  fullSteps: number;
  /** Run start → first step start, in ms (requests arriving, invocations starting). */
  leadInMs: number;
  /** Last step end → run end (final chunks, [DONE], response end). */
  tailMs: number;
  /** Sums over the steps. */
  ortMs: number;
  /** driver.run as the engine saw it minus ORT's own run: messaging, KV writes, waiting for the main thread to take the reply. */
  driverWaitMs: number;
  scheduleMs: number;
  sampleMs: number;
  /** Between one step's end and the next one's start: the main thread doing something else. */
  gapMs: number;
  /** Median per-step wall (end to end of successive steps) over the full decode steps. */
  stepMsP50: number;
  /** Main thread event-loop utilization over the run. */
  mainElu: number;
  /** Garbage collection on the main thread: pauses and their total ms. */
  gcCount: number;
  gcMs: number;
  /** Process CPU time (all threads) per generated token, ms. */
  cpuMsPerToken: number;
}

function profile(steps: Step[], t0: number, t1: number, n: number, elu: number, cpuMs: number, tokens: number, gc: { count: number; ms: number }): Profile {
  const starts = steps.map((s) => s.at - (s.scheduleMs + s.driverMs + s.sampleMs));
  let gap = 0;
  for (let i = 1; i < steps.length; i++) gap += Math.max(0, starts[i]! - steps[i - 1]!.at);
  const full = steps.map((s, i) => ({ s, i })).filter(({ s }) => s.sampled === n && s.rows === n);
  const walls = full.filter(({ i }) => i > 0).map(({ s, i }) => s.at - steps[i - 1]!.at);
  const sum = (f: (s: Step) => number) => steps.reduce((a, s) => a + f(s), 0);
  return {
    steps: steps.length,
    fullSteps: full.length,
    leadInMs: steps.length ? starts[0]! - t0 : NaN,
    tailMs: steps.length ? t1 - steps[steps.length - 1]!.at : NaN,
    ortMs: sum((s) => s.ortMs),
    driverWaitMs: sum((s) => s.driverMs - s.ortMs),
    scheduleMs: sum((s) => s.scheduleMs),
    sampleMs: sum((s) => s.sampleMs),
    gapMs: gap,
    stepMsP50: median(walls),
    mainElu: elu,
    gcCount: gc.count,
    gcMs: gc.ms,
    cpuMsPerToken: cpuMs / tokens,
  };
}


// ---------------------------------------------------------------- CPU time per thread (Linux /proc)

/** CPU ms (user + system) of each thread of this process, by thread id; empty where /proc is not there. */
function threadCpu(): Map<number, number> {
  const out = new Map<number, number>();
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(Number(tid), ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS);
    } catch {
      // the thread ended
    }
  }
  return out;
}
const CLOCK_TICKS = 100;

/** Which part of the process each thread belongs to: threads are labelled by when they appeared. */
class ThreadGroups {
  private readonly label = new Map<number, string>();
  /** Labels the threads that appeared since the last call. */
  mark(name: string): void {
    for (const tid of threadCpu().keys()) if (!this.label.has(tid)) this.label.set(tid, tid === process.pid ? 'main' : name);
  }
  set(tid: number, name: string): void {
    this.label.set(tid, name);
  }
  /** CPU ms per group between two snapshots. */
  diff(a: Map<number, number>, b: Map<number, number>): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [tid, ms] of b) {
      const name = this.label.get(tid) ?? 'other';
      out[name] = (out[name] ?? 0) + ms - (a.get(tid) ?? 0);
    }
    return out;
  }
}

async function main(): Promise<void> {
  const { values: args } = parseArgs({
    options: {
      streams: { type: 'string', default: '1,8,32' },
      'max-tokens': { type: 'string', default: '64' },
      rounds: { type: 'string', default: '3' },
      requests: { type: 'string', default: '50' },
      'warm-instances': { type: 'string' },
      workers: { type: 'string' },
      model: { type: 'string' },
      layout: { type: 'string', default: 'thread' },
    },
  });
  if (args.layout !== 'thread' && args.layout !== 'main') throw new Error(`--layout is thread or main, got ${args.layout}`);
  /** The gateway's engines and inferlet host on their own thread (what pie serve runs), or on the main thread beside HTTP. */
  const THREAD = args.layout === 'thread';
  const STREAMS = args.streams.split(',').filter(Boolean).map(Number);
  const MAX = Number(args['max-tokens']);
  const ROUNDS = Number(args.rounds);
  const REQUESTS = Number(args.requests);
  const here = import.meta.dirname;
  const root = join(here, '..');

  const { startEngine } = await import('../src/engine/index.ts');
  const { parseConfig } = await import('../src/config.ts');
  const { serve } = await import('../src/gateway/start.ts');

  const { benchModelDir } = await import('./bench-model.ts');
  const modelDir = benchModelDir(args.model);
  // As bench/inferlets.ts: page size 16, ONNX Runtime's own thread count, the default prefix caching.
  const groups = new ThreadGroups();
  groups.mark('v8+libuv'); // V8's platform threads (GC, compilers; shared by all isolates) and libuv's
  const engine: Engine = await startEngine(modelDir, { kvMemoryBytes: 1024 * 2 ** 20 });
  groups.mark('engine');
  const model = engine.model.name;
  const dataDir = mkdtempSync(join(tmpdir(), 'pie-bench-serve-'));
  // The thread layout starts its own engine on the same model with the same options (the engine-alone runs keep this one).
  const config = parseConfig(
    (THREAD ? `[model]\npath = ${JSON.stringify(modelDir)}\ncreate_if_missing = ""\n[engine]\nkv_memory_mb = 1024\nown_thread = true\n` : '') +
      `[server]\nport = 0\ndata_dir = ${JSON.stringify(dataDir)}\napi_key_env = ""\n` +
      `[inferlets]\ncache_dir = ${JSON.stringify(join(tmpdir(), 'pie-bench-components'))}\n` +
      (args['warm-instances'] ? `warm_instances = ${Number(args['warm-instances'])}\n` : '') +
      (args.workers ? `workers = ${Number(args.workers)}\n` : ''),
    'bench.toml',
    root,
  );
  console.error('starting the gateway (building the built-in inferlets if needed) ...');
  const serving: Serving = await serve({ config, ...(THREAD ? {} : { engines: [engine] }), log: () => {}, env: {} });
  await serving.loaded;
  groups.mark(THREAD ? 'engine thread (its engine, driver, guests)' : 'host');
  const host = serving.gateway.runtime().host;
  const served = serving.gateway.runtime().engines.get(model)!;
  const link = THREAD ? (host as EngineThread) : null;
  const url = `${serving.url}/v1/chat/completions`;
  const client = new Client(url);
  groups.set(await client.tid, 'client');
  groups.mark('client');
  const driver = engine.driver as { lastRunMs?: number };

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  /** Waits until nothing runs in the engine or the host, collects garbage, and lets the machine settle. */
  const idle = async () => {
    for (let waited = 0; ; waited += 5) {
      await link?.refresh();
      const e = engine.stats();
      const g = served.stats();
      if (e.running === 0 && e.waiting === 0 && g.running === 0 && g.waiting === 0 && host.stats().running === 0) break;
      if (waited > 60_000) throw new Error(`the engine is not idle: ${JSON.stringify(e)}, host ${JSON.stringify(host.stats())}`);
      await sleep(5);
    }
    globalThis.gc?.();
    await sleep(50);
  };

  // ---- the prompt: the gateway's rendering, and one that greedy decoding does not end early
  const messagesFor = (text: string) => [{ role: 'user' as const, content: text }];
  const tokensOf = (text: string) => engine.model.tokenizer.encodeChat(engine.model.chatTemplate.render(messagesFor(text), { addGenerationPrompt: true }));
  const greedy = async (tokens: number[], maxTokens: number, ignoreEos: boolean) => {
    const ctx = engine.createContext();
    engine.append(ctx, tokens);
    const r = await engine.generate(ctx, { sampling: { temperature: 0 }, maxTokens, ignoreEos }).result;
    engine.release(ctx);
    return r;
  };
  const base = 'Tell me a long story about a lighthouse keeper and the sea.';
  let promptText = '';
  const rejected: string[] = [];
  for (let k = 0; k < 50 && !promptText; k++) {
    const text = k === 0 ? base : `${base} (${k})`;
    const r = await greedy(tokensOf(text), MAX, false);
    if (r.finishReason === 'length' && r.completionTokens === MAX) promptText = text;
    else rejected.push(`${JSON.stringify(text)}: ${r.finishReason} after ${r.completionTokens} (stop ${JSON.stringify(r.stopReason)})`);
  }
  if (!promptText) throw new Error(`no prompt decodes ${MAX} tokens greedily without a stop token:\n${rejected.join('\n')}`);
  if (rejected.length) console.error(`prompts ending early under greedy decoding, skipped:\n  ${rejected.join('\n  ')}`);
  const promptTokens = tokensOf(promptText);
  const reference = await greedy(promptTokens, MAX, false);
  const request = (maxTokens: number, stream: boolean) =>
    JSON.stringify({
      model,
      messages: messagesFor(promptText),
      max_tokens: maxTokens,
      temperature: 0,
      ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
    });
  const streamBody = request(MAX, true);
  // The gateway must see the same prompt and produce the same tokens.
  const check = await client.one(request(MAX, false), false);
  if (check.promptTokens !== promptTokens.length) throw new Error(`the gateway's prompt has ${check.promptTokens} tokens, the engine's ${promptTokens.length}`);
  if (check.completionTokens !== MAX || check.finishReason !== 'length') throw new Error(`the gateway generated ${check.completionTokens} tokens (${check.finishReason})`);
  const sameText = check.text === reference.text;
  console.error(`prompt ${JSON.stringify(promptText)}: ${promptTokens.length} tokens; gateway output ${sameText ? 'equals' : 'DIFFERS FROM'} the engine's greedy output`);

  // ---- instrumented runs
  let steps: Step[] = [];
  let numSteps = 0;
  const unlistens = [engine.addStepListener((s) => (numSteps++, steps.push({ ...s, at: performance.now(), ortMs: driver.lastRunMs ?? 0 })))];
  // The engine thread's steps arrive as messages: `at` is when this thread heard of them, its ORT time is not seen here.
  if (THREAD) unlistens.push(served.addStepListener((s) => (numSteps++, steps.push({ ...s, at: performance.now(), ortMs: NaN }))));
  const gcEntries: Array<{ startTime: number; duration: number }> = [];
  const gcObserver = new PerformanceObserver((list) => gcEntries.push(...list.getEntries().map((e) => ({ startTime: e.startTime, duration: e.duration }))));
  gcObserver.observe({ entryTypes: ['gc'] });
  /** Instantiation ms of each invocation the gateway started (0: a warm instance). */
  const instantiations: number[] = [];
  const { invoke: hostInvoke } = host;
  host.invoke = (...a: Parameters<typeof hostInvoke>) => {
    const inv = hostInvoke.apply(host, a);
    inv.result.then(() => instantiations.push(inv.instantiateMs), () => {});
    return inv;
  };
  const measure = async <T>(n: number, f: () => Promise<T>) => {
    await idle();
    steps = [];
    const elu0 = performance.eventLoopUtilization();
    const cpu0 = process.cpuUsage();
    const threads0 = threadCpu();
    const t0 = performance.now();
    const r = await f();
    const t1 = performance.now();
    const cpu = process.cpuUsage(cpu0);
    const threads = groups.diff(threads0, threadCpu());
    const gc = { count: 0, ms: 0 };
    for (const e of gcEntries) if (e.startTime >= t0 && e.startTime < t1) (gc.count++, (gc.ms += e.duration));
    gcEntries.length = 0;
    const prof = profile(steps, t0, t1, n, performance.eventLoopUtilization(elu0).utilization, (cpu.user + cpu.system) / 1000, n * MAX, gc);
    return { r, wallMs: t1 - t0, prof, threads };
  };
  /** The engine alone: the gateway's own engine on its thread, driven there directly, or this thread's. */
  const alone = (n: number, maxTokens: number) => (link ? link.engineAlone({ model, tokens: promptTokens, n, maxTokens }) : engineAlone(engine, { tokens: promptTokens, n, maxTokens }));
  const engineBatch = (n: number) =>
    measure(n, async () => {
      const r = await alone(n, MAX);
      if (r.completionTokens.some((c) => c !== MAX)) throw new Error(`an engine generation ended early: ${r.completionTokens}`);
      return { ttft: r.ttftMs, itl: r.itlMs };
    });
  const gatewayBatch = (n: number) =>
    measure(n, async () => {
      instantiations.length = 0;
      const b = await client.batch(streamBody, n);
      const instantiated = instantiations.splice(0).filter((ms) => ms > 0);
      const bad = b.streams.filter((s) => s.completionTokens !== MAX || s.finishReason !== 'length' || s.promptTokens !== promptTokens.length);
      if (bad.length) throw new Error(`${bad.length} of ${n} streams did not produce ${MAX} tokens: ${JSON.stringify(bad.map(({ itlMs: _, text: __, ...s }) => s))}`);
      return { ...b, instantiated };
    });

  console.error('warming up ...');
  const maxN = Math.max(...STREAMS);
  await engineBatch(maxN);
  await gatewayBatch(maxN);

  const rows = [];
  for (const N of STREAMS) {
    const rounds: Array<{ engineTps: number; gatewayTps: number; ratio: number; clientBusyMs: number }> = [];
    const eProf: Profile[] = [];
    const gProf: Profile[] = [];
    const eThreads: Array<Record<string, number>> = [];
    const gThreads: Array<Record<string, number>> = [];
    const instantiatedCount: number[] = [];
    const instantiateMs: number[] = [];
    const ttft: number[] = [];
    const itl: number[] = [];
    const headers: number[] = [];
    const engineTtft: number[] = [];
    const engineItl: number[] = [];
    let deltasPerStream = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const runEngine = async () => {
        const e = await engineBatch(N);
        eProf.push(e.prof);
        eThreads.push(e.threads);
        engineTtft.push(...e.r.ttft);
        engineItl.push(...e.r.itl);
        return (N * MAX) / (e.wallMs / 1000);
      };
      const runGateway = async () => {
        const g = await gatewayBatch(N);
        gProf.push(g.prof);
        gThreads.push(g.threads);
        instantiatedCount.push(g.r.instantiated.length);
        instantiateMs.push(...g.r.instantiated);
        for (const s of g.r.streams) {
          ttft.push(s.ttftMs);
          itl.push(...s.itlMs);
          headers.push(s.headersMs);
          deltasPerStream = s.deltas;
        }
        // The client's own wall for the batch (request sent → last byte), in its thread.
        return { tps: (N * MAX) / (g.r.wallMs / 1000), clientBusyMs: g.r.clientBusyMs };
      };
      let engineTps: number;
      let gw: { tps: number; clientBusyMs: number };
      if (round % 2 === 0) {
        engineTps = await runEngine();
        gw = await runGateway();
      } else {
        gw = await runGateway();
        engineTps = await runEngine();
      }
      rounds.push({ engineTps, gatewayTps: gw.tps, ratio: gw.tps / engineTps, clientBusyMs: gw.clientBusyMs });
      console.error(`N=${N} round ${round + 1}: engine ${engineTps.toFixed(1)}, gateway ${gw.tps.toFixed(1)} tok/s (${((100 * gw.tps) / engineTps).toFixed(1)}%); steps ${eProf.at(-1)!.steps}/${gProf.at(-1)!.steps}`);
    }
    /** Median CPU ms per thread group over the rounds. */
    const mt = (ts: Array<Record<string, number>>) => Object.fromEntries([...new Set(ts.flatMap((t) => Object.keys(t)))].sort().map((k) => [k, median(ts.map((t) => t[k] ?? 0))]));
    const mp = (ps: Profile[]) => Object.fromEntries(Object.keys(ps[0]!).map((k) => [k, median(ps.map((p) => p[k as keyof Profile]))])) as unknown as Profile;
    rows.push({
      streams: N,
      engineTps: median(rounds.map((r) => r.engineTps)),
      gatewayTps: median(rounds.map((r) => r.gatewayTps)),
      ratio: median(rounds.map((r) => r.ratio)),
      ttftMsP50: median(ttft),
      ttftMsP99: p99(ttft),
      itlMsP50: median(itl),
      itlMsP99: p99(itl),
      headersMsP50: median(headers),
      engineTtftMsP50: median(engineTtft),
      engineTtftMsP99: p99(engineTtft),
      engineItlMsP50: median(engineItl),
      engineItlMsP99: p99(engineItl),
      contentDeltasPerStream: deltasPerStream,
      clientBusyMsP50: median(rounds.map((r) => r.clientBusyMs)),
      engineProfile: mp(eProf),
      gatewayProfile: mp(gProf),
      /** Invocations per batch that instantiated a component (no warm instance was left), and how long that took. */
      instantiatedPerBatch: median(instantiatedCount),
      instantiateMsP50: median(instantiateMs),
      engineThreadCpuMs: mt(eThreads),
      gatewayThreadCpuMs: mt(gThreads),
      rounds,
    });
  }

  // ---- per-request overhead: max_tokens 1, sequential, interleaved
  console.error(`per-request overhead: ${REQUESTS} requests each way ...`);
  const oneStream = request(1, true);
  const oneJson = request(1, false);
  const direct = async () => {
    const r = await alone(1, 1);
    if (r.completionTokens[0] !== 1) throw new Error('the direct request generated no token');
    return r.wallMs;
  };
  const gatewayOne = async (stream: boolean) => {
    const r = await client.one(stream ? oneStream : oneJson, stream);
    if (r.completionTokens !== 1) throw new Error(`the gateway generated ${r.completionTokens} tokens`);
    return r.ms;
  };
  await idle();
  for (let i = 0; i < 5; i++) {
    await direct();
    await gatewayOne(true);
    await gatewayOne(false);
  }
  const ov = { engine: [] as number[], streaming: [] as number[], json: [] as number[] };
  const steps1: number[] = [];
  for (let i = 0; i < REQUESTS; i++) {
    // Rotate the order so no variant always follows the same one.
    const order = [() => direct().then((ms) => ov.engine.push(ms)), () => gatewayOne(true).then((ms) => ov.streaming.push(ms)), () => gatewayOne(false).then((ms) => ov.json.push(ms))];
    for (let k = 0; k < 3; k++) {
      const before = numSteps;
      await order[(i + k) % 3]!();
      steps1.push(numSteps - before);
      await sleep(2);
    }
  }
  const overhead = {
    requests: REQUESTS,
    stepsPerRequest: median(steps1),
    engineMsP50: median(ov.engine),
    engineMsP99: p99(ov.engine),
    streamingMsP50: median(ov.streaming),
    streamingMsP99: p99(ov.streaming),
    jsonMsP50: median(ov.json),
    jsonMsP99: p99(ov.json),
    streamingAddedMsP50: median(ov.streaming) - median(ov.engine),
    jsonAddedMsP50: median(ov.json) - median(ov.engine),
    samples: ov,
  };

  // ---- where one request's time goes: the same requests again, timestamped along the way on the main thread
  console.error('per-request breakdown ...');
  const breakdown = await (async () => {
    const server = (serving.gateway as unknown as { server: import('node:http').Server }).server;
    let rec: Record<string, number> = {};
    /** The guest's calls to the host as they reach the main thread: [ms since host.invoke, op]. */
    let calls: Array<[number, string]> = [];
    // The guest workers' messages are seen here only when the host runs on this thread.
    const slots = THREAD ? [] : (host as unknown as { slots: Array<{ worker: Worker }> }).slots.map((s) => s.worker);
    const onGuestMessage = (m: { t: string; calls?: Array<[number, number, string, unknown]> }) => {
      const now = performance.now() - (rec.invoke ?? NaN);
      for (const c of m.calls ?? []) calls.push([now, c[2]]); // 'calls', and the last ones riding with 'done'
      if (m.t !== 'calls') calls.push([now, m.t]);
    };
    for (const w of slots) w.on('message', onGuestMessage);
    const timelines: Record<'streaming' | 'json', Array<[number, string]>> = { streaming: [], json: [] };
    const onRequest = (_req: unknown, res: import('node:http').ServerResponse) => {
      rec.request = performance.now();
      res.once('finish', () => (rec.finish = performance.now()));
    };
    server.prependListener('request', onRequest);
    const { invoke } = host;
    host.invoke = (...a: Parameters<typeof invoke>) => {
      rec.invoke = performance.now();
      const inv = invoke.apply(host, a);
      inv.result.then(
        () => ((rec.result = performance.now()), (rec.instantiate = inv.instantiateMs)),
        () => {},
      );
      return inv;
    };
    const { append, generate } = engine;
    engine.append = (...a: Parameters<typeof append>) => {
      rec.append ??= performance.now();
      return append.apply(engine, a);
    };
    engine.generate = (...a: Parameters<typeof generate>) => {
      rec.generate = performance.now();
      const g = generate.apply(engine, a);
      void g.result.then(() => (rec.generated = performance.now()));
      return g;
    };
    const segs: Record<'streaming' | 'json' | 'engine', Array<Record<string, number>>> = { streaming: [], json: [], engine: [] };
    const one = async (kind: 'streaming' | 'json' | 'engine') => {
      await sleep(2);
      rec = {};
      calls = [];
      steps = [];
      let total: number;
      if (kind === 'engine') total = await direct();
      else total = (await client.one(kind === 'streaming' ? oneStream : oneJson, kind === 'streaming')).ms;
      await sleep(1); // the response's 'finish' and the result's continuations
      if (THREAD) {
        // Seen from the main thread: the engine thread's part is the invocation, less its steps.
        const stepsMs = steps.reduce((a, st) => a + st.scheduleMs + st.driverMs + st.sampleMs, 0);
        if (kind === 'engine') return void segs.engine.push({ 'engine steps (schedule, ORT, sample)': stepsMs, total });
        timelines[kind] = [];
        segs[kind].push({
          'HTTP in, middleware, validation, route → host.invoke': rec.invoke! - rec.request!,
          'host.invoke → invocation result, less its steps (engine thread: guest start and finish, template, encode, calls; messages both ways)': rec.result! - rec.invoke! - stepsMs,
          '  of which instantiation': rec.instantiate!,
          'engine steps (schedule, ORT, sample)': stepsMs,
          'invocation result → response finished': rec.finish! - rec.result!,
          'client and loopback (client total − server time)': total - (rec.finish! - rec.request!),
          total,
        });
        return;
      }
      const first = steps[0]!;
      const last = steps[steps.length - 1]!;
      const stepStart = first.at - (first.scheduleMs + first.driverMs + first.sampleMs);
      const common = {
        'fill → generate call': rec.generate! - rec.append!,
        'generate call → first step starts': stepStart - rec.generate!,
        'engine steps (schedule, ORT, sample)': last.at - stepStart,
        'last step → generation result': rec.generated! - last.at,
      };
      if (kind === 'engine') {
        segs.engine.push({ ...common, total });
        return;
      }
      timelines[kind] = calls;
      segs[kind].push({
        'guest → host calls (count)': calls.filter(([, op]) => op !== 'done').length,
        'HTTP in, middleware, validation, route → host.invoke': rec.invoke! - rec.request!,
        'host.invoke → fill (guest start, template, encode, host call)': rec.append! - rec.invoke!,
        '  of which instantiation': rec.instantiate!,
        ...common,
        'generation result → invocation result (guest finishes)': rec.result! - rec.generated!,
        'invocation result → response finished': rec.finish! - rec.result!,
        'client and loopback (client total − server time)': total - (rec.finish! - rec.request!),
        total,
      });
    };
    for (let i = 0; i < 5; i++) for (const k of ['streaming', 'json', 'engine'] as const) await one(k);
    for (const k of Object.keys(segs) as Array<keyof typeof segs>) segs[k] = [];
    for (let i = 0; i < REQUESTS; i++) for (let k = 0; k < 3; k++) await one((['streaming', 'json', 'engine'] as const)[(i + k) % 3]!);
    server.off('request', onRequest);
    for (const w of slots) w.off('message', onGuestMessage);
    delete (host as { invoke?: unknown }).invoke;
    delete (engine as { append?: unknown }).append;
    delete (engine as { generate?: unknown }).generate;
    const med = (xs: Array<Record<string, number>>) => Object.fromEntries(Object.keys(xs[0]!).map((k) => [k, median(xs.map((x) => x[k]!))]));
    return { streaming: med(segs.streaming), json: med(segs.json), engine: med(segs.engine), lastTimeline: timelines };
  })();

  for (const unlisten of unlistens) unlisten();
  gcObserver.disconnect();
  await client.close();
  await serving.close();
  await engine.close();
  rmSync(dataDir, { recursive: true, force: true });

  // ---- report
  const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '–');
  const lines = [
    `machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}; node ${process.version}; model ${model}; gateway layout: ${THREAD ? "engine and inferlet host on the engine thread" : 'engine and inferlet host on the main thread'}; prompt ${promptTokens.length} tokens, ${MAX} completion tokens per stream (greedy, no stop token within them), median of ${ROUNDS} alternating rounds; client: a worker thread (fetch + own SSE parsing); inferlet host: ${config.inferlets.workers} workers, ${config.inferlets.warmInstances} warm instances per worker and component`,
    '',
    '| streams | engine tok/s | gateway tok/s | gateway vs engine | TTFT p50 / p99 ms | ITL p50 / p99 ms | engine alone: TTFT p50 / p99, ITL p50 / p99 ms |',
    '|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.streams} | ${f(r.engineTps)} | ${f(r.gatewayTps)} | ${f(100 * r.ratio)}% | ${f(r.ttftMsP50)} / ${f(r.ttftMsP99)} | ${f(r.itlMsP50, 2)} / ${f(r.itlMsP99, 2)} | ${f(r.engineTtftMsP50)} / ${f(r.engineTtftMsP99)}, ${f(r.engineItlMsP50, 2)} / ${f(r.engineItlMsP99, 2)} |`,
    ),
    '',
    `| per request, max_tokens 1, ${REQUESTS} sequential each, interleaved | p50 ms | p99 ms | added vs engine (difference of p50s) ms |`,
    '|---|---|---|---|',
    `| engine directly (append, generate 1, release) | ${f(overhead.engineMsP50, 2)} | ${f(overhead.engineMsP99, 2)} | – |`,
    `| gateway, streaming (to [DONE]) | ${f(overhead.streamingMsP50, 2)} | ${f(overhead.streamingMsP99, 2)} | ${f(overhead.streamingAddedMsP50, 2)} |`,
    `| gateway, non-streaming | ${f(overhead.jsonMsP50, 2)} | ${f(overhead.jsonMsP99, 2)} | ${f(overhead.jsonAddedMsP50, 2)} |`,
    '',
    `| one request (max_tokens 1), median ms of ${REQUESTS} | gateway streaming | gateway non-streaming | engine directly |`,
    '|---|---|---|---|',
    ...Object.keys(breakdown.streaming).map(
      (k) => `| ${k} | ${f(breakdown.streaming[k]!, 2)} | ${f(breakdown.json[k]!, 2)} | ${k in breakdown.engine ? f(breakdown.engine[k]!, 2) : '–'} |`,
    ),
    '',
    ...(['streaming', 'json'] as const).map((k) => `guest calls of the last ${k} request, ms after host.invoke: ${breakdown.lastTimeline[k].map(([t, op]) => `${op} ${f(t, 2)}`).join(', ')}`),
    '',
    '| streams | run | steps (full-batch steps) | step ms p50 | lead-in ms | ORT ms | driver wait ms | schedule ms | sample+stream ms | between steps ms | tail ms | main thread busy | main-thread GC ms (pauses) | CPU ms/token |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.flatMap((r) =>
      (['engine', 'gateway'] as const).map((k) => {
        const p = k === 'engine' ? r.engineProfile : r.gatewayProfile;
        return `| ${r.streams} | ${k} | ${f(p.steps, 0)} (${f(p.fullSteps, 0)}) | ${f(p.stepMsP50, 2)} | ${f(p.leadInMs)} | ${f(p.ortMs, 0)} | ${f(p.driverWaitMs, 0)} | ${f(p.scheduleMs, 1)} | ${f(p.sampleMs, 1)} | ${f(p.gapMs, 0)} | ${f(p.tailMs, 1)} | ${f(100 * p.mainElu, 0)}% | ${f(p.gcMs, 1)} (${f(p.gcCount, 0)}) | ${f(p.cpuMsPerToken, 2)} |`;
      }),
    ),
    '',
    '| streams | run | CPU ms by thread group (median per batch) |',
    '|---|---|---|',
    ...rows.flatMap((r) =>
      (['engine', 'gateway'] as const).map((k) => {
        const t = k === 'engine' ? r.engineThreadCpuMs : r.gatewayThreadCpuMs;
        return `| ${r.streams} | ${k} | ${Object.entries(t).map(([g, ms]) => `${g} ${f(ms, 0)}`).join(', ')} |`;
      }),
    ),
    '',
    `invocations per batch that had to instantiate the component (no warm instance left), median: ${rows.map((r) => `N=${r.streams}: ${r.instantiatedPerBatch} (${f(r.instantiateMsP50, 1)} ms each)`).join(', ')}`,
    `client thread busy per batch, median ms: ${rows.map((r) => `N=${r.streams}: ${f(r.clientBusyMsP50)}`).join(', ')}; content deltas per stream: ${rows.map((r) => r.contentDeltasPerStream).join(', ')}`,
  ];
  console.log(lines.join('\n'));
  const out = join(here, 'results');
  mkdirSync(out, { recursive: true });
  writeFileSync(
    join(out, 'serve.json'),
    JSON.stringify(
      {
        date: new Date().toISOString(),
        model,
        cores: cpus().length,
        client: 'worker_thread',
        layout: args.layout,
        host: { workers: config.inferlets.workers, warmInstances: config.inferlets.warmInstances },
        prompt: { text: promptText, tokens: promptTokens.length, rejected, gatewayEqualsEngine: sameText },
        maxTokens: MAX,
        rounds: ROUNDS,
        rows: rows.map(({ rounds, ...r }) => ({ ...r, rounds })),
        overhead,
        breakdown,
      },
      null,
      2,
    ) + '\n',
  );
}

if (isMainThread) await main();
else clientThread();
