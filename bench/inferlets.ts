/**
 * The inferlet runtime's costs, side by side with the baselines in one run.
 *
 *   npm run bench:inferlets [-- --engines qjs,sm --invocations 200 --idle 1000
 *                              --concurrency 32 --prompt 64 --decode 64 --rounds 3
 *                              --parts overhead,http,throughput]
 *
 * Overhead (mock driver, so no forward pass is in the numbers), per guest engine:
 *   component size; transpile once; load from the disk cache; an empty
 *   invocation end to end (host.invoke → result) with a warm instance pool and
 *   without one (then instantiation is inside); one host call answered inside
 *   the worker and one that goes to the engine's thread and back; memory per
 *   idle instance with many alive at once (each waits on a queue).
 * Over HTTP (mock driver, QuickJS, the gateway on this thread with the
 *   engine, a client on the same thread): upload to first event for a
 *   component the server has not transpiled and for one it has; a cached
 *   component's run end to end over HTTP (POST runs, SSE to run.ended), with
 *   the client on this thread and on one of its own (http-client.ts), against
 *   host.invoke → result on the same host, interleaved; L concurrent runs of
 *   an idle component launched over HTTP (time to 201, and memory per live
 *   run).
 * Throughput (portable driver, the bench model): C concurrent greedy
 *   generations of D tokens after a P-token prompt, three ways, alternating
 *   rounds: the engine's own generate loop; C invocations of an inferlet that
 *   calls the SDK's generate(); C invocations of a step-by-step forward() loop.
 * Prints a table; writes bench/results/inferlets.json.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { MockDriver } from '../drivers/mock/driver.ts';
import { benchModelDir } from './bench-model.ts';
import { median, p99 } from './stats.ts';
import { startEngine, type Engine } from '../src/engine/index.ts';
import { createRandomModel, PRESETS } from '../src/model/random.ts';
import { buildCached, type GuestEngine } from '../src/runtime/host/build.ts';
import { ComponentStore, type StoredComponent } from '../src/runtime/host/component-store.ts';
import { InferletHost } from '../src/runtime/host/host.ts';

const { values: args } = parseArgs({
  options: {
    engines: { type: 'string', default: 'qjs,sm' },
    invocations: { type: 'string', default: '200' },
    idle: { type: 'string', default: '1000' },
    'idle-sm': { type: 'string', default: '200' },
    concurrency: { type: 'string', default: '32' },
    prompt: { type: 'string', default: '64' },
    decode: { type: 'string', default: '64' },
    rounds: { type: 'string', default: '3' },
    calls: { type: 'string', default: '2000' },
    launches: { type: 'string', default: '1000' },
    model: { type: 'string' },
    parts: { type: 'string', default: 'overhead,http,throughput' },
  },
});
const PARTS = new Set(args.parts.split(','));
for (const p of PARTS) if (!['overhead', 'http', 'throughput'].includes(p)) throw new Error(`--parts takes overhead, http and throughput, got "${p}"`);
const ENGINES = args.engines.split(',').filter(Boolean) as GuestEngine[]; // --engines '' skips the overhead part
const N_INV = Number(args.invocations);
const C = Number(args.concurrency);
const PROMPT = Number(args.prompt);
const DECODE = Number(args.decode);
const ROUNDS = Number(args.rounds);
const CALLS = Number(args.calls);
const LAUNCHES = Number(args.launches);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const here = import.meta.dirname;

async function component(name: string, engine: GuestEngine): Promise<Uint8Array> {
  const path = await buildCached(join(here, 'inferlets', `${name}.ts`), join(tmpdir(), 'pie-bench-inferlets'), {
    engine,
    onBuild: () => console.error(`building ${name} (${engine}) ...`),
  });
  return readFileSync(path);
}

async function mockEngine(): Promise<Engine> {
  const dir = join(tmpdir(), 'pie-bench-tiny-model');
  if (!existsSync(dir)) createRandomModel(dir, PRESETS.tiny, 1);
  return startEngine(dir, { numPages: 4096, pageSize: 16, driver: async (m, numPages, pageSize) => new MockDriver({ vocabSize: m.config.vocabSize, numPages, pageSize }) });
}

async function result(host: InferletHost, c: StoredComponent, input: unknown) {
  const inv = host.invoke(c, { input });
  const r = await inv.result;
  return { data: JSON.parse(r.data!), inv };
}

async function latencies(host: InferletHost, c: StoredComponent, n: number) {
  const ms: number[] = [];
  const inst: number[] = [];
  for (let i = 0; i < 5; i++) await result(host, c, null); // warm caches
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const { inv } = await result(host, c, null);
    ms.push(performance.now() - t0);
    inst.push(inv.instantiateMs);
    await sleep(2); // let the pool refill between invocations, as between requests
  }
  return { p50: median(ms), p99: p99(ms), instantiateP50: median(inst) };
}

async function overhead(kind: GuestEngine) {
  const engine = await mockEngine();
  const cacheDir = mkdtempSync(join(tmpdir(), 'pie-bench-cache-'));
  const noopBytes = await component('noop', kind);
  let t0 = performance.now();
  await new ComponentStore(cacheDir).load(noopBytes);
  const transpileMs = performance.now() - t0;
  const loads: number[] = [];
  for (let i = 0; i < 20; i++) {
    t0 = performance.now();
    await new ComponentStore(cacheDir).load(noopBytes);
    loads.push(performance.now() - t0);
  }
  console.error("  warm pool ...");
  const warmHost = await InferletHost.start({ engines: [engine], cacheDir, warmInstances: 2, log: () => {} });
  const noop = await warmHost.load(noopBytes);
  const warm = await latencies(warmHost, noop, N_INV);
  const calls = await warmHost.load(await component('calls', kind));
  const local = (await result(warmHost, calls, { n: CALLS, kind: 'local' })).data.ms;
  const remote = (await result(warmHost, calls, { n: CALLS, kind: 'host' })).data.ms;
  await warmHost.close();
  console.error("  no pool, idle instances ...");
  const coldHost = await InferletHost.start({ engines: [engine], cacheDir, warmInstances: 0, log: () => {} });
  const cold = await latencies(coldHost, await coldHost.load(noopBytes), Math.min(N_INV, 100));
  // Idle instances: each waits on its own queue.
  const n = Number(kind === 'qjs' ? args.idle : args['idle-sm']);
  const idleBytes = await component('idle', kind);
  const idle = await coldHost.load(idleBytes);
  // Compile the component in both workers first: the figure is per instance, not per module.
  const warmups = [0, 1].map(() => coldHost.invoke(idle, { input: { queue: 'warmup' } }));
  while (coldHost.hub.numWaiting < 2) await sleep(20);
  for (let i = 0; i < 2; i++) coldHost.hub.push('default', 'warmup', 'x');
  await Promise.all(warmups.map((w) => w.result));
  global.gc?.();
  await sleep(500);
  const rssBefore = process.memoryUsage().rss;
  const alive = Array.from({ length: n }, (_, i) => coldHost.invoke(idle, { input: { queue: `q${i}` } }));
  for (let waited = 0; coldHost.hub.numWaiting < n; waited += 50) {
    const failed = alive.filter((a) => a.state !== 'running');
    if (failed.length > 0) await failed[0]!.result; // throws the reason
    if (waited > 120_000) throw new Error(`only ${coldHost.hub.numWaiting} of ${n} idle instances are waiting`);
    await sleep(50);
  }
  global.gc?.();
  await sleep(500);
  const perInstanceMb = (process.memoryUsage().rss - rssBefore) / n / 2 ** 20;
  for (let i = 0; i < n; i++) coldHost.hub.push('default', `q${i}`, 'done');
  await Promise.all(alive.map((a) => a.result));
  await coldHost.close();
  await engine.close();
  rmSync(cacheDir, { recursive: true, force: true });
  return {
    engine: kind,
    sizeMb: noopBytes.length / 1e6,
    transpileMs,
    loadFromCacheMsP50: median(loads),
    warm,
    cold,
    localCallUs: (local * 1000) / CALLS,
    hostCallUs: (remote * 1000) / CALLS,
    idleInstances: n,
    idleMbPerInstance: perInstanceMb,
  };
}


function prompts(vocab: number, salt: number): number[][] {
  return Array.from({ length: C }, (_, b) => Array.from({ length: PROMPT }, (_, i) => 3 + ((i * 7919 + b * 104729 + salt * 15485863) % (vocab - 3))));
}

async function throughput() {
  const engine = await startEngine(benchModelDir(args.model), { kvMemoryBytes: 1024 * 2 ** 20 });
  const host = await InferletHost.start({ engines: [engine], cacheDir: join(tmpdir(), 'pie-bench-components'), log: () => {} });
  const gen = await host.load(await component('generate', 'qjs'));
  const loop = await host.load(await component('forward-loop', 'qjs'));
  const V = engine.model.config.vocabSize;
  const rows: Record<'native' | 'sdk' | 'forward', number[]> = { native: [], sdk: [], forward: [] };
  /** Engine steps each run took: more steps for the same tokens means smaller batches. */
  const steps: Record<'native' | 'sdk' | 'forward', number[]> = { native: [], sdk: [], forward: [] };
  let stepsBefore = 0;
  let salt = 1;
  const time = async (f: () => Promise<number[]>) => {
    stepsBefore = engine.numSteps;
    const t0 = performance.now();
    const counts = await f();
    if (counts.some((c) => c !== DECODE)) throw new Error(`a generation ended early: ${counts}`);
    return (C * DECODE) / ((performance.now() - t0) / 1000);
  };
  for (let round = 0; round < ROUNDS; round++) {
    rows.native.push(
      await time(() =>
        Promise.all(
          prompts(V, salt++).map(async (p) => {
            const ctx = engine.createContext();
            engine.append(ctx, p);
            const r = await engine.generate(ctx, { sampling: { temperature: 0 }, maxTokens: DECODE, ignoreEos: true }).result;
            engine.release(ctx);
            return r.completionTokens;
          }),
        ),
      ),
    );
    steps.native.push(engine.numSteps - stepsBefore);
    rows.sdk.push(await time(() => Promise.all(prompts(V, salt++).map(async (p) => (await result(host, gen, { prompt: p, max_tokens: DECODE })).data.tokens))));
    steps.sdk.push(engine.numSteps - stepsBefore);
    rows.forward.push(await time(() => Promise.all(prompts(V, salt++).map(async (p) => (await result(host, loop, { prompt: p, max_tokens: DECODE })).data.tokens))));
    steps.forward.push(engine.numSteps - stepsBefore);
    console.error(`round ${round + 1} (steps ${steps.native.at(-1)}/${steps.sdk.at(-1)}/${steps.forward.at(-1)}): native ${rows.native.at(-1)!.toFixed(1)}, sdk ${rows.sdk.at(-1)!.toFixed(1)}, forward ${rows.forward.at(-1)!.toFixed(1)} tok/s`);
  }
  await host.close();
  await engine.close();
  return { native: median(rows.native), sdk: median(rows.sdk), forward: median(rows.forward), rounds: rows, steps };
}

/** A component's bytes with a custom section `salt` appended: the same program, bytes (and hash) of its own. */
function salted(bytes: Uint8Array, salt: number): Uint8Array {
  const name = new TextEncoder().encode('pie-bench-salt');
  const payload = new TextEncoder().encode(String(salt));
  const body = [name.length, ...name, ...payload];
  const out = new Uint8Array(bytes.length + 2 + body.length);
  out.set(bytes);
  out.set([0, body.length, ...body], bytes.length); // section id 0 (custom); sizes < 128 fit one LEB128 byte
  return out;
}

async function overHttp() {
  const { serve } = await import('../src/gateway/start.ts');
  const { parseConfig } = await import('../src/config.ts');
  const engine = await mockEngine();
  const dataDir = mkdtempSync(join(tmpdir(), 'pie-bench-http-'));
  const cacheDir = mkdtempSync(join(tmpdir(), 'pie-bench-http-cache-'));
  const config = parseConfig(
    `[server]\nport = 0\ndata_dir = ${JSON.stringify(dataDir)}\napi_key_env = ""\nruns_per_tenant = ${LAUNCHES + 10}\n[inferlets]\ncache_dir = ${JSON.stringify(cacheDir)}\n`,
    'bench.toml',
    join(here, '..'),
  );
  const serving = await serve({ config, engines: [engine], log: () => {}, env: {} });
  await serving.loaded;
  const url = serving.url;
  const host = serving.gateway.runtime().host as InferletHost;
  const hello = await component('hello', 'qjs');
  const upload = async (bytes: Uint8Array) => ((await (await fetch(`${url}/v1/inferlets`, { method: 'POST', headers: { 'content-type': 'application/wasm' }, body: bytes })).json()) as { id: string }).id;
  /** POST a run as SSE; ms to its first numbered event and to its end. */
  const streamRun = async (id: string, t0: number) => {
    const res = await fetch(`${url}/v1/inferlets/${id}/runs`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream' }, body: '{}' });
    const reader = res.body!.getReader();
    let text = '';
    let first = NaN;
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) break;
      text += new TextDecoder().decode(chunk.value);
      if (Number.isNaN(first) && /\nid: 1\n/.test(`\n${text}`)) first = performance.now() - t0;
    }
    if (!text.includes('event: run.ended')) throw new Error(`the run did not end: ${text}`);
    return { first, end: performance.now() - t0 };
  };
  console.error('  upload to first event ...');
  const uncached: number[] = [];
  const cached: number[] = [];
  for (let i = 0; i < 6; i++) {
    // Bytes the server has never seen: checked and transpiled on the loader's thread.
    const bytes = salted(hello, i);
    let t0 = performance.now();
    const fresh = await upload(bytes);
    uncached.push((await streamRun(fresh, t0)).first);
    // The same bytes again after deleting the upload: the transpiled code is in the cache.
    await fetch(`${url}/v1/inferlets/${fresh}`, { method: 'DELETE' });
    t0 = performance.now();
    const again = await upload(bytes);
    cached.push((await streamRun(again, t0)).first);
    await fetch(`${url}/v1/inferlets/${again}`, { method: 'DELETE' });
  }
  console.error('  a run over HTTP against host.invoke ...');
  const id = await upload(hello);
  const stored = await host.load(hello);
  const http: number[] = [];
  const httpOwnThread: number[] = [];
  const inProcess: number[] = [];
  // The client on the server's thread (its work adds to the server's), and on a thread of its own, as another process would be.
  const client = new Worker(new URL('./http-client.ts', import.meta.url));
  let failWaiting: (err: Error) => void = () => {};
  client.on('error', (err) => failWaiting(err));
  const onOwnThread = () =>
    new Promise<number>((resolve, reject) => {
      failWaiting = reject;
      client.once('message', resolve);
      client.postMessage({ url, id });
    });
  for (let i = 0; i < N_INV + 10; i++) {
    let t0 = performance.now();
    const r = await streamRun(id, t0);
    if (i >= 10) http.push(r.end);
    await sleep(2);
    const own = await onOwnThread();
    if (i >= 10) httpOwnThread.push(own);
    await sleep(2);
    t0 = performance.now();
    await host.invoke(stored, { input: null }).result;
    if (i >= 10) inProcess.push(performance.now() - t0);
    await sleep(2);
  }
  await client.terminate();
  console.error(`  ${LAUNCHES} concurrent runs of an idle component ...`);
  const idleId = await upload(await component('idle', 'qjs'));
  global.gc?.();
  await sleep(500);
  const rssBefore = process.memoryUsage().rss;
  const launch = await Promise.all(
    Array.from({ length: LAUNCHES }, async (_, i) => {
      const t0 = performance.now();
      const res = await fetch(`${url}/v1/inferlets/${idleId}/runs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ input: { queue: `q${i}` } }) });
      if (res.status !== 201) throw new Error(`launch ${i}: ${res.status} ${await res.text()}`);
      await res.json();
      return performance.now() - t0;
    }),
  );
  for (let waited = 0; host.hub.numWaiting < LAUNCHES; waited += 50) {
    if (waited > 180_000) throw new Error(`only ${host.hub.numWaiting} of ${LAUNCHES} runs are waiting`);
    await sleep(50);
  }
  global.gc?.();
  await sleep(500);
  const mbPerRun = (process.memoryUsage().rss - rssBefore) / LAUNCHES / 2 ** 20;
  for (let i = 0; i < LAUNCHES; i++) host.hub.push('default', `q${i}`, 'done');
  while (host.stats().running > 0) await sleep(50);
  await serving.close();
  await engine.close();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(cacheDir, { recursive: true, force: true });
  return {
    uploadToFirstEventMs: { uncachedP50: median(uncached), cachedP50: median(cached), uncached, cached },
    runEndToEndMs: {
      httpP50: median(http),
      httpP99: p99(http),
      httpClientThreadP50: median(httpOwnThread),
      httpClientThreadP99: p99(httpOwnThread),
      inProcessP50: median(inProcess),
      inProcessP99: p99(inProcess),
      addedP50: median(http) - median(inProcess),
      addedClientThreadP50: median(httpOwnThread) - median(inProcess),
    },
    launches: { n: LAUNCHES, p50: median(launch), p99: p99(launch), mbPerLiveRun: mbPerRun },
  };
}

const overheads = [];
for (const kind of PARTS.has('overhead') ? ENGINES : []) {
  console.error(`overhead: ${kind} ...`);
  overheads.push(await overhead(kind));
}
console.error('over HTTP ...');
const http = PARTS.has('http') ? await overHttp() : null;
console.error('throughput ...');
const tp = PARTS.has('throughput') ? await throughput() : null;

const f = (x: number, d = 1) => x.toFixed(d);
const lines = [`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}; node ${process.version}`];
if (overheads.length > 0) {
  lines.push(
    '',
    '| guest engine | component MB | transpile ms | load from cache ms p50 | empty invocation, warm pool ms p50 (p99) | empty invocation, no pool ms p50 (p99) | instantiate ms p50 | call answered in worker µs | call to engine thread µs | MB per idle instance |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...overheads.map(
      (o) =>
        `| ${o.engine} | ${f(o.sizeMb)} | ${f(o.transpileMs, 0)} | ${f(o.loadFromCacheMsP50, 2)} | ${f(o.warm.p50, 2)} (${f(o.warm.p99, 2)}) | ${f(o.cold.p50, 2)} (${f(o.cold.p99, 2)}) | ${f(o.cold.instantiateP50, 2)} | ${f(o.localCallUs, 2)} | ${f(o.hostCallUs, 1)} | ${f(o.idleMbPerInstance, 2)} (${o.idleInstances} alive) |`,
    ),
  );
}
if (http) {
  lines.push(
    '',
    `| over HTTP (mock driver, QuickJS) | p50 ms | p99 ms |`,
    '|---|---|---|',
    `| upload → first event, a component not yet transpiled (${http.uploadToFirstEventMs.uncached.length} uploads) | ${f(http.uploadToFirstEventMs.uncachedP50)} | – |`,
    `| upload → first event, its transpiled code cached | ${f(http.uploadToFirstEventMs.cachedP50)} | – |`,
    `| a cached component's run over HTTP (POST runs, SSE to run.ended), client on the server's thread | ${f(http.runEndToEndMs.httpP50, 2)} | ${f(http.runEndToEndMs.httpP99, 2)} |`,
    `| the same, client on a thread of its own | ${f(http.runEndToEndMs.httpClientThreadP50, 2)} | ${f(http.runEndToEndMs.httpClientThreadP99, 2)} |`,
    `| the same in process (host.invoke → result) | ${f(http.runEndToEndMs.inProcessP50, 2)} | ${f(http.runEndToEndMs.inProcessP99, 2)} |`,
    `| added by HTTP (difference of p50s), client on the server's thread / its own | ${f(http.runEndToEndMs.addedP50, 2)} / ${f(http.runEndToEndMs.addedClientThreadP50, 2)} | – |`,
    `| ${http.launches.n} concurrent launches (POST runs → 201) | ${f(http.launches.p50)} | ${f(http.launches.p99)} |`,
    `| memory per live run (${http.launches.n} waiting at once) | ${f(http.launches.mbPerLiveRun, 2)} MB | – |`,
  );
}
if (tp) {
  lines.push(
    '',
    `| ${C} concurrent greedy generations, prompt ${PROMPT}, ${DECODE} tokens | tok/s (median of ${ROUNDS}) | vs engine |`,
    '|---|---|---|',
    `| engine's own generate loop | ${f(tp.native)} | 100% |`,
    `| inferlets, SDK generate() | ${f(tp.sdk)} | ${f((100 * tp.sdk) / tp.native)}% |`,
    `| inferlets, step-by-step forward() | ${f(tp.forward)} | ${f((100 * tp.forward) / tp.native)}% |`,
  );
}
console.log(lines.join('\n'));
const out = join(here, 'results');
mkdirSync(out, { recursive: true });
// A partial run (--parts) prints its tables but leaves the recorded results as they are.
if (PARTS.size === 3) writeFileSync(join(out, 'inferlets.json'), JSON.stringify({ date: new Date().toISOString(), args, overheads, overHttp: http, throughput: tp }, null, 2) + '\n');
