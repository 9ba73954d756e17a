/**
 * A guest worker: hosts many inferlet instances on one thread. Each guest's
 * code is synchronous; when it calls a suspending import, JSPI parks its
 * stack and the thread runs the others, so their calls leave together in one
 * message per event-loop turn and meet in the same engine step.
 *
 *   start ─► take a warm instance (or instantiate) ─► bind it to the invocation ─► run()
 *   guest import ─► local answer (tokenizer, chat, output flags)
 *                └► call: queued, posted in this turn's batch ─► reply resumes the guest
 *   cancel ─► fail the instance's waiting calls (the guest traps out of them)
 *
 * A beat counter in shared memory, bumped by this thread's event loop and at
 * every start and host call, lets the host see a guest that never yields
 * (see InferletHost's watchdog).
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parentPort, workerData } from 'node:worker_threads';
import { loadModelText, type ModelText } from '../../model/load.ts';
import { INTERFACES, interfaceKey, WASI_GRANTED } from '../abi.ts';
import { GuestResultError, type GuestEnv } from './env.ts';
import { MAX_TIMER_MS } from '../host/limits.ts';
import { guestImports } from './imports.ts';
import { GuestExit, guestWasi } from './wasi.ts';
import type { ArgsOf, CallOp, ReplyOf, SendOp } from '../ops.ts';
import { HEARTBEAT, type Call, type HostToWorker, type ModelDescriptor, type Reply, type StartMessage, type WorkerToHost } from '../protocol.ts';
import { onHostWork } from './host-work.ts';

const port = parentPort!;
const heartbeat = new Int32Array(workerData.heartbeat as SharedArrayBuffer);
const BEAT_MS = 20;
/** Progress: the event loop turned, an instance was started, or a guest called the host. */
const beat = () => Atomics.add(heartbeat, HEARTBEAT.beat, 1);
onHostWork((busy) => {
  Atomics.store(heartbeat, HEARTBEAT.hostWork, busy ? 1 : 0);
  beat();
});
setInterval(beat, BEAT_MS);

const post = (m: WorkerToHost) => port.postMessage(m);

/** What one invocation may write to its log (runtime.log, stdout, stderr), in characters, and the longest line. */
const LOG_BUDGET = 1 << 20;
const MAX_LOG_LINE = 8192;

// ---- calls to the host, batched per event-loop turn ----

let nextCallId = 1;
const pending = new Map<number, { inv: number; resolve: (v: unknown) => void; reject: (e: Error) => void }>();
let outbox: Call[] = [];
let flushInMicrotask = false;
let flushInImmediate = false;
/**
 * A call (the guest waits for it) is flushed in a microtask: guests resumed by
 * one batch of replies run one after another before it, so their calls still
 * leave together, and a burst of instantiations on this thread does not hold
 * them back (a setImmediate flush waited for the whole burst). One-way calls
 * wait for the next call, the guest's end, or at the latest the next turn of
 * the event loop: a guest that creates, fills, generates and waits for the
 * result sends it all in one message (a microtask flush per one-way call
 * could send them one by one: jco's glue may run a suspending import some
 * microtasks after the guest called it).
 */
function enqueue(call: Call, waits: boolean): void {
  outbox.push(call);
  if (waits && !flushInMicrotask) {
    flushInMicrotask = true;
    queueMicrotask(() => {
      flushInMicrotask = false;
      flush();
    });
  } else if (!waits && !flushInImmediate) {
    flushInImmediate = true;
    setImmediate(() => {
      flushInImmediate = false;
      flush();
    });
  }
}
function flush(): void {
  const calls = outbox;
  outbox = [];
  if (calls.length > 0) post({ t: 'calls', calls });
}

function onReplies(replies: Reply[]): void {
  beat();
  for (const [id, ok, value] of replies) {
    const p = pending.get(id);
    if (!p) continue;
    pending.delete(id);
    if (ok) p.resolve(value);
    else if (value.kind === 'abi') p.reject(new GuestResultError(value.code, value.message));
    else p.reject(new Error(value.message));
  }
}

// ---- models: tokenizers and templates, loaded once per worker ----

const modelTexts = new Map<string, ModelText>();
function modelText(desc: ModelDescriptor): ModelText {
  const key = `${desc.name}\0${desc.dir}`;
  let text = modelTexts.get(key);
  if (!text) modelTexts.set(key, (text = loadModelText(desc.dir, { name: desc.name, fallbackChatTemplate: desc.chatTemplate })));
  return text;
}

// ---- instances ----

class InstanceEnv implements GuestEnv {
  inv = 0;
  instanceId = '';
  tenant = '';
  input = 'null';
  models = new Map<string, ModelDescriptor>();
  cancelled = false;
  memoryLimit = Infinity;
  /** Set when the instance broke a limit: the host reports it as such. */
  limitError: string | null = null;
  readonly memories: WebAssembly.Memory[] = [];
  private nextHandle = 1;
  /** Characters logged by this invocation so far. */
  logged = 0;
  /** Sleeps under way: a cancel ends them. */
  readonly sleepers = new Set<(err: Error) => void>();

  modelText(name: string): ModelText {
    return modelText(this.models.get(name)!);
  }
  call<K extends CallOp>(op: K, args: ArgsOf<K>): Promise<ReplyOf<K>> {
    if (this.cancelled) return Promise.reject(new Error('the invocation was cancelled'));
    const id = nextCallId++;
    enqueue([this.inv, id, op, args], true);
    return new Promise((resolve, reject) => pending.set(id, { inv: this.inv, resolve: resolve as (v: unknown) => void, reject }));
  }
  send<K extends SendOp>(op: K, args: ArgsOf<K>): void {
    if (!this.cancelled) enqueue([this.inv, 0, op, args], false);
  }
  handle(): number {
    return this.nextHandle++;
  }
  /** A wait longer than a timer can take is a wait until the invocation is stopped (its wall time ends it at the latest). */
  sleep(ms: number): Promise<void> {
    if (this.cancelled) return Promise.reject(new Error('the invocation was cancelled'));
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const stop = (err: Error) => {
        clearTimeout(timer);
        this.sleepers.delete(stop);
        reject(err);
      };
      if (ms <= MAX_TIMER_MS) {
        timer = setTimeout(() => {
          this.sleepers.delete(stop);
          resolve();
        }, Math.max(0, Math.ceil(ms)));
      }
      this.sleepers.add(stop);
    });
  }
  /** Cut to a line's length, and dropped past the budget (one line says so): the log is for people. */
  output(level: string, line: string): void {
    if (this.inv === 0 || this.logged > LOG_BUDGET) return; // output while the instance is made has no invocation to go to
    const text = line.length > MAX_LOG_LINE ? line.slice(0, MAX_LOG_LINE) : line;
    this.logged += text.length;
    const over = this.logged > LOG_BUDGET;
    this.send('runtime.log', over ? ['warn', `the invocation's log passed ${LOG_BUDGET} characters; what it writes from here on is dropped`] : [level, text]);
  }
  private readonly endHooks: Array<() => void> = [];
  atEnd(hook: () => void): void {
    this.endHooks.push(hook);
  }
  /** The invocation ended: what the hooks still have to say goes with its last calls (a hook's failure loses only what it had). */
  ended(): void {
    for (const hook of this.endHooks) {
      try {
        hook();
      } catch {
        // nothing to report it to: the invocation is over
      }
    }
  }
  /** The invocation was stopped: its waits end. */
  stop(reason: string): void {
    this.cancelled = true;
    for (const s of [...this.sleepers]) s(new Error(reason));
  }
  memoryBytes(): number {
    let n = 0;
    for (const m of this.memories) n += m.buffer.byteLength;
    return n;
  }
  /**
   * Runs at every entry into the host and every resumption of the guest.
   * WASI functions (`unbound`: they answer in the worker) may also run while
   * an instance is being made, before it has an invocation (a start
   * function reading the clock).
   */
  enter(unbound = false): void {
    if (this.inv === 0) {
      if (unbound) return;
      throw new Error('this instance is not bound to an invocation');
    }
    beat();
    Atomics.store(heartbeat, HEARTBEAT.running, this.inv);
    if (this.memoryBytes() > this.memoryLimit) {
      this.limitError = `the inferlet's linear memory (${this.memoryBytes()} bytes) exceeds its limit of ${this.memoryLimit} bytes`;
      throw new Error(this.limitError);
    }
  }
}

/** Every import function (and resource method) runs `env.enter()` before it and on resuming (`unbound`: see enter). */
function guard<T extends object>(env: InstanceEnv, obj: T, unbound = false): T {
  const wrap = (fn: (...a: unknown[]) => unknown) =>
    function (this: unknown, ...args: unknown[]) {
      env.enter(unbound);
      const r = fn.apply(this, args);
      if (!(r instanceof Promise)) return r;
      return r.then(
        (v) => (env.enter(unbound), v),
        (e) => {
          env.enter(unbound);
          throw e;
        },
      );
    };
  for (const [key, value] of Object.entries(obj)) {
    if (typeof value !== 'function') continue;
    if (/^[A-Z]/.test(key)) {
      const cls = value as unknown as Record<string, unknown> & { prototype: Record<string, unknown> };
      for (const name of Object.getOwnPropertyNames(cls)) if (typeof cls[name] === 'function' && name !== 'prototype') cls[name] = wrap(cls[name] as never);
      for (const name of Object.getOwnPropertyNames(cls.prototype)) if (name !== 'constructor') cls.prototype[name] = wrap(cls.prototype[name] as never);
    } else {
      (obj as Record<string, unknown>)[key] = wrap(value as never);
    }
  }
  return obj;
}

function importsFor(env: InstanceEnv): Record<string, object> {
  const parts = guestImports(env);
  const imports: Record<string, object> = Object.fromEntries(INTERFACES.map((name) => [interfaceKey(name), guard(env, parts[name])]));
  // The WASI subset, made on first use: components built for this ABI (the built-ins) import none of it.
  let wasi: Record<string, object> | undefined;
  const guarded = new Map<string, object>();
  for (const name of Object.keys(WASI_GRANTED)) {
    const get = () => {
      let part = guarded.get(name);
      if (!part) guarded.set(name, (part = guard(env, (wasi ??= guestWasi(env))[name]!, true)));
      return part;
    };
    Object.defineProperty(imports, name, { enumerable: true, get });
  }
  return imports;
}

type InstantiateCore = (module: WebAssembly.Module, imports?: WebAssembly.Imports) => Promise<WebAssembly.Instance>;
interface Compiled {
  /** jco's entry point (instantiation: async). */
  instantiate: (getCoreModule: (path: string) => WebAssembly.Module, imports: object, instantiateCore: InstantiateCore) => Promise<{ run(): Promise<void> }>;
  modules: Map<string, WebAssembly.Module>;
}

const compiled = new Map<string, Promise<Compiled>>();
/** Components the host said will not run again: an instantiation already on its way compiles without keeping the result. */
const forgotten = new Set<string>();
function compile(dir: string): Promise<Compiled> {
  let c = compiled.get(dir);
  if (!c) {
    c = (async () => {
      const modules = new Map<string, WebAssembly.Module>();
      const { readFile } = await import('node:fs/promises');
      for (const f of readdirSync(dir)) if (f.endsWith('.wasm')) modules.set(f, await WebAssembly.compile(await readFile(join(dir, f))));
      const mod = (await import(pathToFileURL(join(dir, 'component.js')).href)) as Pick<Compiled, 'instantiate'>;
      return { instantiate: mod.instantiate, modules };
    })();
    if (!forgotten.has(dir)) compiled.set(dir, c);
    c.catch(() => compiled.delete(dir));
  }
  return c;
}

interface Prepared {
  env: InstanceEnv;
  instance: { run(): Promise<void> };
  /** Invocations it has run (reused instances only). */
  uses: number;
}

/** A reused instance is retired after this many invocations, or once its memory grew past this. */
const MAX_USES = 1000;
const MAX_REUSED_MEMORY = 64 << 20;
/** Used instances kept per component beyond the warm target (a burst's worth). */
const MAX_KEPT = 64;

/** Hands a used instance back to the pool, unbound, if it ended cleanly and is still small. */
function recycle(dir: string, prepared: Prepared): void {
  const env = prepared.env;
  // Memory never shrinks: an instance that grew past its limit after its last host call would fail the next run.
  const memory = env.memoryBytes();
  if (env.cancelled || env.limitError !== null || forgotten.has(dir) || ++prepared.uses >= MAX_USES || memory > MAX_REUSED_MEMORY || memory > env.memoryLimit) return;
  const pool = warm.get(dir) ?? [];
  warm.set(dir, pool);
  if (pool.length >= Math.max(MAX_KEPT, warmTarget.get(dir) ?? 0)) return;
  Object.assign(env, { inv: 0, instanceId: '', tenant: '', input: 'null', cancelled: false, memoryLimit: Infinity, limitError: null, logged: 0 });
  env.models.clear();
  pool.unshift(prepared);
}

/**
 * Instantiations run one at a time, each in its own turn of the event loop:
 * a burst of starts then begins in order, and guests already running (and
 * their calls to the host) go between two instantiations instead of after all.
 */
let instantiating: Promise<unknown> = Promise.resolve();
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));
function prepare(dir: string): Promise<Prepared> {
  const next = instantiating.then(nextTurn).then(() => instantiate(dir));
  instantiating = next.catch(() => {});
  return next;
}

async function instantiate(dir: string): Promise<Prepared> {
  const c = await compile(dir);
  const env = new InstanceEnv();
  const instance = await c.instantiate((p) => c.modules.get(p)!, importsFor(env), async (module, imports) => {
    const inst = await WebAssembly.instantiate(module, imports);
    for (const v of Object.values(inst.exports)) if (v instanceof WebAssembly.Memory) env.memories.push(v);
    return inst;
  });
  beat();
  return { env, instance, uses: 0 };
}

/** Instances instantiated ahead of need, per component. */
const warm = new Map<string, Prepared[]>();
const warmTarget = new Map<string, number>();
/** Components being refilled: one refill at a time each, or a burst of starts would each top the pool up. */
const refilling = new Set<string>();
async function refill(dir: string): Promise<void> {
  if (refilling.has(dir)) return;
  refilling.add(dir);
  try {
    const pool = warm.get(dir) ?? [];
    warm.set(dir, pool);
    while (pool.length < (warmTarget.get(dir) ?? 0)) pool.push(await prepare(dir));
  } finally {
    refilling.delete(dir);
  }
}

const running = new Map<number, InstanceEnv>();
/** Invocations waiting for an instance, and those of them cancelled meanwhile. */
const starting = new Set<number>();
const cancelledEarly = new Map<number, string>();

async function start(msg: StartMessage): Promise<void> {
  let env: InstanceEnv | undefined;
  let instantiateMs = 0;
  starting.add(msg.inv);
  try {
    // A fresh instance for an isolated run: used ones (at the front) go only to runs that reuse.
    const pool = warm.get(msg.componentDir);
    const at = msg.reuse ? 0 : (pool?.findIndex((p) => p.uses === 0) ?? -1);
    let prepared = pool && at >= 0 ? pool.splice(at, 1)[0] : undefined;
    if (!prepared) {
      const t0 = performance.now();
      prepared = await prepare(msg.componentDir);
      instantiateMs = performance.now() - t0;
    }
    if ((warmTarget.get(msg.componentDir) ?? 0) > 0) setImmediate(() => void refill(msg.componentDir).catch(() => {}));
    beat(); // a burst of starts keeps the thread busy, but not stuck
    starting.delete(msg.inv);
    const early = cancelledEarly.get(msg.inv);
    if (early !== undefined) {
      cancelledEarly.delete(msg.inv);
      warm.get(msg.componentDir)?.unshift(prepared); // never bound: still fresh
      return finish(msg.inv, undefined, early, instantiateMs);
    }
    env = prepared.env;
    Object.assign(env, { inv: msg.inv, instanceId: msg.instanceId, tenant: msg.tenant, input: msg.input, memoryLimit: msg.limits.memoryBytes });
    for (const m of msg.models) env.models.set(m.name, m);
    running.set(msg.inv, env);
    Atomics.store(heartbeat, HEARTBEAT.running, msg.inv);
    await prepared.instance.run();
    finish(msg.inv, env, null, instantiateMs);
    if (msg.reuse) recycle(msg.componentDir, prepared);
  } catch (err) {
    starting.delete(msg.inv);
    cancelledEarly.delete(msg.inv);
    // WASI exit: status 0 ends the invocation as a return would (the instance is not reused: it stopped mid-call).
    finish(msg.inv, env, err instanceof GuestExit && err.status === 0 && env && !env.cancelled ? null : describe(err), instantiateMs);
  }
}

function describe(err: unknown): string {
  const e = err as { payload?: unknown; message?: string };
  if (e && typeof e.payload === 'string') return e.payload;
  return e?.message ?? String(err);
}

function finish(inv: number, env: InstanceEnv | undefined, error: string | null, instantiateMs: number): void {
  running.delete(inv);
  env?.ended(); // never throws
  // The guest's last one-way calls (set-result, emit) ride in the same message, ahead of its end.
  const calls = outbox;
  outbox = [];
  // Memory grown past the limit after the last host call is caught here.
  if (env && env.limitError === null && env.memoryBytes() > env.memoryLimit) {
    env.limitError = `the inferlet's linear memory (${env.memoryBytes()} bytes) exceeds its limit of ${env.memoryLimit} bytes`;
  }
  const limit = env?.limitError ?? null;
  post({ t: 'done', inv, error: limit ?? error, limit: limit !== null, peakMemoryBytes: env?.memoryBytes() ?? 0, instantiateMs, calls });
  if (Atomics.load(heartbeat, HEARTBEAT.running) === inv) Atomics.store(heartbeat, HEARTBEAT.running, 0);
}

port.on('message', (msg: HostToWorker) => {
  switch (msg.t) {
    case 'replies':
      return onReplies(msg.replies);
    case 'start':
      return void start(msg);
    case 'cancel': {
      const env = running.get(msg.inv);
      if (!env) {
        if (starting.has(msg.inv)) cancelledEarly.set(msg.inv, msg.reason);
        return;
      }
      env.stop(msg.reason);
      for (const [id, p] of pending) {
        if (p.inv !== msg.inv) continue;
        pending.delete(id);
        p.reject(new Error(msg.reason));
      }
      return;
    }
    case 'forget':
      // Instances running it go on; those kept for later, and its compiled modules, go (and are not kept again).
      forgotten.add(msg.componentDir);
      warm.delete(msg.componentDir);
      warmTarget.delete(msg.componentDir);
      compiled.delete(msg.componentDir);
      return;
    case 'warm':
      forgotten.delete(msg.componentDir); // wanted again
      warmTarget.set(msg.componentDir, msg.count);
      return void refill(msg.componentDir).catch((err) => post({ t: 'log', level: 'error', message: `warming ${msg.componentDir}: ${describe(err)}` }));
  }
});
post({ t: 'ready' });
